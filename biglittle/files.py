"""Files on disk: the cache root and its lock, small files written so that an interruption leaves the old file
or the new one (never half of one), JSON read back with a one-line error when it is damaged, and OS errors
turned into one-line messages."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import BigLittleError

CACHE_ENV = "BIGLITTLE_CACHE"


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` (UTF-8) under a temporary name beside `path`, then rename it over `path`."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)


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


def os_error(exc: OSError, where: Path) -> BigLittleError:
    if exc.errno == errno.ENOSPC:
        return BigLittleError(
            f"disk full while writing under {where}; free some space or set {CACHE_ENV} "
            "to a directory on a larger disk, then run the command again (it resumes)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BigLittleError(
            f"cannot write under {where} ({exc.strerror}); set {CACHE_ENV} or --cache to a writable directory"
        )
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
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
