"""Files on disk: the cache root and its lock, small files written so that an interruption leaves the old file
or the new one (never half of one), JSON read back with a one-line error when it is damaged, output folders
checked before long work, and OS errors turned into one-line messages."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import BigLittleError

CACHE_ENV = "BIGLITTLE_CACHE"
CACHE_REMEDY = f"give --cache-dir (or ${CACHE_ENV}) a directory you can write to"
WRITE_REMEDY = "choose another directory"


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` (UTF-8) under a temporary name beside `path`, then rename it over `path`."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise os_error(exc, path.parent, WRITE_REMEDY) from exc


def read_json(path: Path, remedy: str = "") -> dict | None:
    """The JSON object in `path`, None when there is no such file; a damaged file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BigLittleError(f"cannot read {path} ({error})" + (f"; {remedy}" if remedy else "")) from error


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache root: `override` > $BIGLITTLE_CACHE > ~/.cache/biglittle (not created here)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "biglittle"


def profiles_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where the cache keeps this machine's measurements: cost profiles and tuned BiLD thresholds."""
    return cache_dir(cache) / "profiles"


@contextlib.contextmanager
def cache_lock(root: Path, command: str = "biglittle models fetch") -> Iterator[None]:
    """Exclusive lock so two fetches never write the same cache at once."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".fetch.lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BigLittleError(f"another `{command}` is already writing {root}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def check_writable(directory: str | os.PathLike, remedy: str) -> Path:
    """`directory`, if it is one this process can create or write in; else a one-line error ending with `remedy`.

    For the start of long work (a benchmark, a measurement, training), so that a bad output location is said
    before the work, not after it. Nothing is created: the nearest existing folder on the way gets a nameless
    probe file, which the OS deletes on closing.
    """
    directory = Path(directory).expanduser()
    existing = _nearest_existing(directory)
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise os_error(exc, directory, remedy) from exc
    return directory


def _nearest_existing(path: Path) -> Path:
    """`path` or the closest of its parents that exists (a broken link counts: it blocks a folder there too)."""
    while not (path.exists() or path.is_symlink()):
        path = path.parent
    return path


def os_error(exc: OSError, where: Path, remedy: str = CACHE_REMEDY) -> BigLittleError:
    """An OS error met while writing under `where`, as one line: what is wrong, then `remedy`."""
    if exc.errno == errno.ENOSPC:
        return BigLittleError(
            f"disk full while writing under {where}; free some space or {remedy}, then run the command again"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BigLittleError(f"cannot write under {where} ({exc.strerror}); {remedy}")
    blocker = _nearest_existing(Path(exc.filename or where))
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and not blocker.is_dir():
        return BigLittleError(f"cannot write under {where}: {blocker} is not a directory; {remedy}")
    return BigLittleError(f"file error under {where}: {exc}; check the disk and run again")


def read_jsonl(path: Path, required: tuple[str, ...] = (), remedy: str = "") -> list[dict]:
    """The records of a JSONL file that grows by appended lines; [] when there is no such file.

    A last line without its newline was cut short by an interruption: it is dropped from the file, silently.
    A complete line that is not a JSON object holding the `required` keys is damage that dropping would hide:
    a one-line error counts such lines and names the first.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(len(complete))
    records, bad = [], []
    for number, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and all(key in record for key in required):
            records.append(record)
        else:
            bad.append(number)
    if bad:
        what = "is not JSON" if len(bad) == 1 else "are not JSON"
        raise BigLittleError(
            f"{path}: {len(bad)} line(s) {what} records of this file (first: line {bad[0]})"
            + (f"; {remedy}" if remedy else "")
        )
    return records


def append_jsonl(path: Path, record: dict) -> None:
    """Append one record as a line, flushed, so that an interruption loses at most the line being written."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
    except OSError as exc:
        raise os_error(exc, Path(path).parent, WRITE_REMEDY) from exc
