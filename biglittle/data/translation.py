"""German→English sentence pairs from the Ding dictionary (Debian package `trans-de-en`, GPL-2+).

Each dictionary line is ``German pieces :: English pieces``; both sides hold pieces separated by
`` | `` that correspond by position (headword, inflected forms, phrases, example sentences).
Only the real example sentences are kept: pieces of at least 5 words on both sides that end in
``.``, ``!`` or ``?``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from .types import Example

MIN_WORDS = 5
_ENDINGS = (".", "!", "?")
# dictionary annotations that are not part of the sentence: {m} [ugs.] [Br.] <alternative spelling>
_ANNOTATION = re.compile(r"\s*(?:\{[^{}]*\}|\[[^\[\]]*\]|<[^<>]*>)")
# alternative sentences in one piece: "Satz eins.; Satz zwei." -> keep the first
_ALTERNATIVES = re.compile(r"(?<=[.!?])\s*;\s+")
# a piece that ends in a dictionary abbreviation is a phrase, not a sentence ("… von etw.")
_ABBREVIATION_END = re.compile(r"\b(?:etw|jdm|jdn|jds|jd|sth|sb|usw|bzw|etc)\.$")


def clean_sentence(piece: str) -> str:
    first = _ALTERNATIVES.split(piece.strip())[0]
    return " ".join(_ANNOTATION.sub("", first).split())


def _is_sentence(text: str) -> bool:
    return (
        len(text.split()) >= MIN_WORDS
        and text.endswith(_ENDINGS)
        and not text.startswith(("…", "..."))
        and not _ABBREVIATION_END.search(text)
    )


def example_id(source: str) -> str:
    return "de-en-" + hashlib.sha1(source.encode("utf-8")).hexdigest()[:12]


def parse_ding(lines: Iterable[str]) -> list[Example]:
    """Example sentence pairs from Ding lines, in file order, duplicates (same German) dropped."""
    seen: set[str] = set()
    examples = []
    for line in lines:
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        sides = line.split(" :: ")
        if len(sides) != 2:
            continue
        german, english = sides[0].split(" | "), sides[1].split(" | ")
        if len(german) != len(english):
            continue  # cannot pair the pieces by position
        for de, en in zip(german, english):
            de, en = clean_sentence(de), clean_sentence(en)
            if not (_is_sentence(de) and _is_sentence(en)) or de in seen:
                continue
            seen.add(de)
            examples.append(Example(id=example_id(de), source=de, reference=en))
    return examples
