"""Small files on disk: written so that an interruption leaves the old file or the new one, never half of
one; JSON read back with a one-line error when it is damaged."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import BigLittleError


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
