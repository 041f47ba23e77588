"""Where the raw task data lives, and `fetch_data`, which puts it into <cache>/data/ without root.

- translation: the Ding dictionary file ``de-en`` of Debian's ``trans-de-en`` package, obtained
  with ``apt-get download`` and unpacked into ``<cache>/data/trans-de-en/`` (fallback: an
  installed ``/usr/share/trans/de-en``);
- summarization: Debian's ``Translation-en`` index of package descriptions, obtained with an
  ``apt-get update`` into a private lists folder and copied into
  ``<cache>/data/debian-descriptions/`` (fallback: the system's apt lists, when they hold one).
"""

from __future__ import annotations

import io
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import BigLittleError
from ..files import cache_dir, cache_lock, os_error
from ..progress import Spinner

TRANS_PACKAGE = "trans-de-en"
TRANS_MEMBER = "usr/share/trans/de-en"
COPYRIGHT_MEMBER = "usr/share/doc/trans-de-en/copyright"
SYSTEM_DING = Path("/usr/share/trans/de-en")
SYSTEM_LISTS = Path("/var/lib/apt/lists")
TRANS_SUBDIR = "trans-de-en"
DESC_SUBDIR = "debian-descriptions"
_DESC_GLOB = "*i18n_Translation-en*"
FETCH_HINT = "run `biglittle data fetch`"


def data_dir(cache: str | os.PathLike | None = None) -> Path:
    return cache_dir(cache) / "data"


def _is_index(p: Path) -> bool:
    return p.is_file() and not p.name.endswith((".tmp", ".partial", ".FAILED"))


# --------------------------------------------------------------------------- locating


def translation_file(path: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> Path:
    """The Ding ``de-en`` file: `path` (the file, or a folder holding it), else the cache, else
    an installed /usr/share/trans/de-en."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        if p.is_dir():
            for candidate in (p / "de-en", p / TRANS_MEMBER, p / "trans" / "de-en", p / TRANS_SUBDIR / "de-en"):
                if candidate.is_file():
                    return candidate
            raise BigLittleError(f"no Ding dictionary file `de-en` in {p}; give the path of the file itself")
        raise BigLittleError(f"{p} does not exist; give the path of a copy of /usr/share/trans/de-en")
    cached = data_dir(cache) / TRANS_SUBDIR / "de-en"
    if cached.is_file():
        return cached
    if SYSTEM_DING.is_file():
        return SYSTEM_DING
    raise BigLittleError(
        f"the translation data (Debian package trans-de-en) is missing; {FETCH_HINT}, or give the "
        "path of a copy of /usr/share/trans/de-en"
    )


def description_files(path: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> list[Path]:
    """The ``Translation-en`` index file(s): `path` (a file or a folder of them), else the cache,
    else the system's apt lists."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return [p]
        if p.is_dir():
            found = sorted(f for f in p.glob("*Translation-en*") if _is_index(f))
            if found:
                return found
            raise BigLittleError(f"no Debian Translation-en index in {p}; give the path of the file itself")
        raise BigLittleError(f"{p} does not exist; give the path of a Debian *_i18n_Translation-en file")
    cached = sorted(f for f in (data_dir(cache) / DESC_SUBDIR).glob("*Translation-en*") if _is_index(f))
    if cached:
        return cached
    system = _largest(SYSTEM_LISTS.glob(_DESC_GLOB)) if SYSTEM_LISTS.is_dir() else None
    if system is not None:
        return [system]
    raise BigLittleError(
        f"the summarization data (Debian package descriptions) is missing; {FETCH_HINT}, or give the "
        "path of a Debian *_i18n_Translation-en file"
    )


def _largest(paths) -> Path | None:
    files = [p for p in paths if _is_index(p)]
    return max(files, key=lambda p: (p.stat().st_size, p.name)) if files else None


def data_status(cache: str | os.PathLike | None = None) -> list[dict]:
    """One row per task: task, path (None when missing), present, size in bytes."""
    rows = []
    for task, locate in (("translation", translation_file), ("summarization", description_files)):
        try:
            found = locate(cache=cache)
            paths = found if isinstance(found, list) else [found]
            rows.append({"task": task, "path": paths[0], "present": True, "size": sum(p.stat().st_size for p in paths)})
        except BigLittleError:
            rows.append({"task": task, "path": None, "present": False, "size": 0})
    return rows


# --------------------------------------------------------------------------- apt without root


def _apt_options(work: Path) -> list[str]:
    lists, apt_cache = work / "lists", work / "cache"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (apt_cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    options = {
        "Dir::State::Lists": str(lists),
        "Dir::Cache": str(apt_cache),
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        "Acquire::Languages": "en",  # Docker images often set "none"
        "APT::Get::List-Cleanup": "false",
    }
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options["APT::Sandbox::User"] = "root"  # the _apt user cannot enter a private cache
    return [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]


def _apt_available() -> bool:
    return shutil.which("apt-get") is not None


def _run_apt(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run apt-get (a seam for tests)."""
    return subprocess.run(
        ["apt-get", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
    )


def _apt_error(what: str, proc: subprocess.CompletedProcess) -> BigLittleError:
    out = (proc.stderr or "") + "\n" + (proc.stdout or "")
    lines = [ln.strip() for ln in out.splitlines() if ln.startswith(("E:", "W:", "Err:"))]
    errors = [ln for ln in lines if ln.startswith("E:")] or lines
    detail = errors[-1] if errors else (out.strip().splitlines() or ["no output"])[-1]
    return BigLittleError(f"{what} failed ({detail}); check the network connection to Debian's archive")


def _apt_update(work: Path) -> Path:
    proc = _run_apt(["update", *_apt_options(work)])
    lists = work / "lists"
    if proc.returncode != 0 and _largest(lists.glob(_DESC_GLOB)) is None:
        raise _apt_error("apt-get update", proc)
    return lists


def _apt_download(package: str, work: Path) -> Path:
    out = work / "debs"
    out.mkdir(parents=True, exist_ok=True)
    proc = _run_apt(["download", *_apt_options(work), package], cwd=out)
    debs = sorted(out.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not debs:
        raise _apt_error(f"apt-get download {package}", proc)
    return debs[-1]


# --------------------------------------------------------------------------- .deb unpacking


def _deb_tar_bytes(deb: Path) -> bytes:
    """The uncompressed data tarball of a .deb: via dpkg-deb when present, else read in Python."""
    if shutil.which("dpkg-deb"):
        proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True)
        if proc.returncode == 0:
            return proc.stdout
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise BigLittleError(f"{deb.name} is not a Debian package; delete it and run `biglittle data fetch` again")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                raise BigLittleError(f"{deb.name} is zstd-compressed; install dpkg (dpkg-deb) to unpack it")
            if name.endswith((".xz", ".lzma")):
                return lzma.decompress(body)
            if name.endswith(".gz"):
                import gzip

                return gzip.decompress(body)
            if name.endswith(".bz2"):
                import bz2

                return bz2.decompress(body)
            return body
    raise BigLittleError(f"{deb.name} has no data archive; delete it and run `biglittle data fetch` again")


def extract_from_deb(deb: Path, members: dict[str, Path]) -> None:
    """Write the named files (paths inside the package, no leading ./) of `deb` to the given
    destinations, each via a temp name and an atomic rename; a missing member raises."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(_deb_tar_bytes(deb)), mode="r:")  # noqa: SIM115 (closed by `with tar` below)
    except (tarfile.TarError, lzma.LZMAError, OSError, EOFError, ValueError) as exc:
        raise BigLittleError(f"cannot unpack {deb.name} ({exc}); run `biglittle data fetch` again") from exc
    with tar:
        by_name = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        for member, dest in members.items():
            info = by_name.get(member)
            if info is None:
                raise BigLittleError(f"{deb.name} has no {member}")
            src = tar.extractfile(info)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(src, fh)
            os.replace(tmp, dest)


def _copy_atomic(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


# --------------------------------------------------------------------------- fetch_data


def fetch_data(
    cache: str | os.PathLike | None = None, progress: bool = True, *, force: bool = False
) -> dict[str, Path]:
    """Put both task sources into <cache>/data/; returns {'translation': file, 'summarization': file}.

    Idempotent: what is already there is kept (unless `force`), and a second run touches
    nothing. Needs apt-get and network access to Debian's archive, but not root.
    """
    root = data_dir(cache)
    trans_dir, desc_dir = root / TRANS_SUBDIR, root / DESC_SUBDIR
    trans_final = trans_dir / "de-en"

    def have_descriptions() -> list[Path]:
        return sorted(f for f in desc_dir.glob("*Translation-en*") if _is_index(f)) if desc_dir.is_dir() else []

    if not force and trans_final.is_file() and have_descriptions():
        return {"translation": trans_final, "summarization": have_descriptions()[0]}
    try:
        with cache_lock(root, "biglittle data fetch"):
            return _fetch_locked(root, trans_dir, desc_dir, trans_final, have_descriptions, progress, force)
    except OSError as exc:
        raise os_error(exc, root) from exc


def _fetch_locked(root, trans_dir, desc_dir, trans_final, have_descriptions, progress, force) -> dict[str, Path]:
    need_trans = force or not trans_final.is_file()
    need_desc = force or not have_descriptions()
    for stale in root.glob(".apt-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=".apt-", dir=root))
    apt_problem: BigLittleError | None = None
    lists: Path | None = None
    try:
        if _apt_available():
            with Spinner("data: apt-get update (Debian package lists, ~30 MB)", progress):
                try:
                    lists = _apt_update(work)
                except BigLittleError as exc:
                    apt_problem = exc
        else:
            apt_problem = BigLittleError("apt-get is not available on this system")

        if need_trans:
            done = False
            if lists is not None:
                try:
                    with Spinner(f"data: apt-get download {TRANS_PACKAGE} (~6 MB)", progress):
                        deb = _apt_download(TRANS_PACKAGE, work)
                        extract_from_deb(deb, {COPYRIGHT_MEMBER: trans_dir / "copyright", TRANS_MEMBER: trans_final})
                        (trans_dir / "SOURCE").write_text(f"{deb.name} (Debian; licence in ./copyright: GPL-2+)\n")
                    done = True
                except BigLittleError as exc:
                    apt_problem = exc
            if not done and SYSTEM_DING.is_file():
                _copy_atomic(SYSTEM_DING, trans_final)
                (trans_dir / "SOURCE").write_text(f"copied from {SYSTEM_DING}\n")
                done = True
            if not done:
                raise BigLittleError(
                    f"could not get the translation data: {apt_problem}; or install it with "
                    "`sudo apt-get install trans-de-en`, or give the path of a copy of /usr/share/trans/de-en"
                )
            if progress:
                tqdm.write(f"translation data: {trans_final}")

        if need_desc:
            source = _largest(lists.glob(_DESC_GLOB)) if lists is not None else None
            if source is None and SYSTEM_LISTS.is_dir():
                source = _largest(SYSTEM_LISTS.glob(_DESC_GLOB))
            if source is None:
                why = apt_problem or BigLittleError("apt-get update fetched no Translation-en index")
                raise BigLittleError(
                    f"could not get the summarization data: {why}; or give the path of a Debian "
                    "*_i18n_Translation-en file"
                )
            for old in have_descriptions():
                old.unlink()
            _copy_atomic(source, desc_dir / source.name)
            if progress:
                tqdm.write(f"summarization data: {desc_dir / source.name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"translation": trans_final, "summarization": have_descriptions()[0]}
