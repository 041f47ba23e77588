"""Files on disk: the cache root and its lock, small files written so that an interruption leaves the old file
or the new one (never half of one), JSON read back with a one-line error when it is damaged, and OS errors
turned into one-line messages."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from pathlib import Path
from typing import Iterator

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
            raise BigLittleError(
                f"another `{command}` is already writing {root}; wait for it to finish"
            ) from None
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
            f"cannot write under {where} ({exc.strerror}); set {CACHE_ENV} or --cache to a "
            "writable directory"
        )
    return BigLittleError(f"file error under {where}: {exc}; check the disk and run again")
