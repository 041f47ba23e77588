"""Incremental detokenization for streaming: as tokens arrive, the text that no later token can change.

Each call decodes the whole output so far and emits only the new suffix that is stable: it holds back a trailing
U+FFFD (a multi-byte character whose bytes have not all arrived, as byte-level BPE tokens often split one),
trailing whitespace (a tokenizer's clean-up may still remove a space before punctuation) and a tail that could still
grow into a stop string. The emitted pieces therefore join to exactly the final text, provided decoding more tokens
never changes the text of fewer beyond that held-back tail (true of byte-level BPE, SentencePiece and WordPiece).
"""

from __future__ import annotations

from collections.abc import Callable

REPLACEMENT_CHARACTER = "\ufffd"


class IncrementalDetokenizer:
    """Feed it token ids with `add` as they become final; it returns the text they release. `finish` flushes.

    With stop strings the text ends at the first one written: included (like `ModelPair.generate`'s text) or,
    with `include_stop=False`, left out (like the OpenAI API).
    """

    def __init__(self, decode: Callable[[list[int]], str], stops: tuple[str, ...] = (), include_stop: bool = True):
        self._decode = decode
        self._stops = stops
        self._include_stop = include_stop
        self._token_ids: list[int] = []
        self.text = ""  # emitted so far
        self.finished = False
        self.stopped = False  # a stop string was written

    def add(self, token_ids: list[int]) -> str:
        """The new stable text once `token_ids` follow the tokens added so far ('' while it is held back)."""
        if self.finished:
            return ""
        self._token_ids.extend(token_ids)
        full = self._decode(self._token_ids)
        end = self._stop_end(full)
        if end is not None:
            self.finished = self.stopped = True
            return self._emit(full[:end])
        return self._emit(full[: self._stable_length(full)])

    def finish(self) -> str:
        """The held-back rest, once no more tokens will come."""
        if self.finished:
            return ""
        self.finished = True
        return self._emit(self._decode(self._token_ids))

    def _emit(self, stable: str) -> str:
        if not stable.startswith(self.text):  # only a tokenizer that rewrites earlier text gets here
            return ""
        new = stable[len(self.text) :]
        self.text = stable
        return new

    def _stop_end(self, text: str) -> int | None:
        """Where the text ends because of a stop string, or None when none is written."""
        starts = {stop: text.find(stop) for stop in self._stops if stop in text}
        if not starts:
            return None
        if self._include_stop:
            return min(start + len(stop) for stop, start in starts.items())
        return min(starts.values())

    def _stable_length(self, text: str) -> int:
        stable = text.rstrip(REPLACEMENT_CHARACTER).rstrip()
        held_back = max((_overlap(stable, stop) for stop in self._stops), default=0)
        return len(stable) - held_back


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of `text` that begins `stop` (and could become it)."""
    for length in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:length]):
            return length
    return 0
