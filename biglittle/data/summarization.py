"""One-sentence summaries from Debian's package descriptions (the ``Translation-en`` index).

Each stanza holds ``Package:``, ``Description-md5:`` and ``Description-en: <synopsis>``
followed by the long description, one space-indented line each (`` .`` marks a paragraph
break, lines indented further are verbatim, e.g. list items). The long description is the
document and the synopsis its summary.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import BigLittleError
from .types import Example

MIN_WORDS = 40
MAX_WORDS = 300


def read_index(path: Path) -> str:
    """Text of a (possibly compressed) apt index file: .lz4, .gz, .xz, .bz2 or plain."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".lz4":
            return _read_lz4(path)
        if suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        elif suffix in (".xz", ".lzma"):
            with lzma.open(path, "rb") as fh:
                data = fh.read()
        elif suffix == ".bz2":
            with bz2.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise BigLittleError(f"cannot read {path} ({exc}); run `biglittle data fetch` again") from exc
    return data.decode("utf-8", errors="replace")


def _read_lz4(path: Path) -> str:
    try:
        import lz4.frame
    except ImportError:
        lz4cat = shutil.which("lz4cat") or shutil.which("lz4")
        if lz4cat is None:
            raise BigLittleError(
                f"{path} is lz4-compressed: `pip install lz4` (or install the lz4 tool) and run again"
            ) from None
        proc = subprocess.run([lz4cat, "-dc", str(path)], capture_output=True)
        if proc.returncode != 0:
            raise BigLittleError(f"cannot decompress {path}: {proc.stderr.decode(errors='replace').strip()}") from None
        return proc.stdout.decode("utf-8", errors="replace")
    try:
        with lz4.frame.open(path, "rb") as fh:
            return fh.read().decode("utf-8", errors="replace")
    except (OSError, RuntimeError, EOFError) as exc:
        raise BigLittleError(f"cannot decompress {path} ({exc}); run `biglittle data fetch` again") from exc


def _stanzas(text: str) -> Iterator[list[str]]:
    block: list[str] = []
    for line in text.splitlines():
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


_ITEM = re.compile(r"(?:[*+\-o\u2022]|\d+[.)]|\([a-z0-9]\))\s")


def description_document(lines: list[str]) -> str:
    """The long description as text: paragraphs on their own lines, list items too.

    Flowed lines are joined with spaces; a verbatim line (indented further) that starts a list
    item begins a new line, other verbatim lines continue the current one.
    """
    paragraphs: list[list[str]] = [[]]
    previous_verbatim = False
    for raw in lines:
        body = raw[1:] if raw.startswith(" ") else raw
        if body.strip() == ".":
            if paragraphs[-1]:
                paragraphs.append([])
            previous_verbatim = False
            continue
        text = " ".join(body.split())
        if not text:
            continue
        verbatim = body.startswith((" ", "\t"))
        current = paragraphs[-1]
        # a flowed line after a list ends the list, unless it merely wraps the item ("…,\n graphical)")
        ends_list = previous_verbatim and not verbatim and not text[0].islower()
        new_line = not current or (verbatim and _ITEM.match(text)) or ends_list
        if new_line:
            current.append(text)
        else:
            current[-1] += " " + text
        previous_verbatim = verbatim
    return "\n".join("\n".join(p) for p in paragraphs if p)


def parse_descriptions(texts: Iterable[str]) -> list[Example]:
    """(document, synopsis) pairs, in file order; documents of MIN_WORDS..MAX_WORDS words.

    Duplicates are dropped: a package seen before, or a document seen before (many packages
    share one description).
    """
    seen_packages: set[str] = set()
    seen_documents: set[str] = set()
    examples = []
    for text in texts:
        for block in _stanzas(text):
            package, synopsis, body, in_description = None, None, [], False
            for line in block:
                if line.startswith((" ", "\t")):
                    if in_description:
                        body.append(line)
                    continue
                in_description = False
                key, _, value = line.partition(":")
                if key == "Package":
                    package = value.strip()
                elif key == "Description-en":
                    synopsis, in_description = " ".join(value.split()), True
            if not package or not synopsis or package in seen_packages:
                continue
            seen_packages.add(package)
            document = description_document(body)
            if not MIN_WORDS <= len(document.split()) <= MAX_WORDS or document in seen_documents:
                continue
            seen_documents.add(document)
            examples.append(Example(id=f"deb-{package}", source=document, reference=synopsis))
    return examples
