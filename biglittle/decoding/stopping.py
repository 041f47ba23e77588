"""Stop strings: the shortest prefix of the new tokens whose text contains one, and the text cut after it."""

from __future__ import annotations

from collections.abc import Callable


def stop_check(decode: Callable[[list[int]], str], stops: tuple[str, ...]) -> Callable[[list[int]], int | None]:
    """tokens_to_keep(new_ids): how many new tokens to keep once a stop string is written, else None."""

    def tokens_to_keep(new_ids: list[int]) -> int | None:
        if not any(stop in decode(new_ids) for stop in stops):
            return None
        for length in range(1, len(new_ids) + 1):  # the shortest prefix that already contains a stop string
            if any(stop in decode(new_ids[:length]) for stop in stops):
                return length
        return len(new_ids)

    return tokens_to_keep


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """The text up to and including the earliest stop string."""
    ends = [text.find(stop) + len(stop) for stop in stops if stop in text]
    return text[: min(ends)] if ends else text
