"""The record every task dataset yields."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    id: str  # stable across runs: derived from the content, not from the position in a file
    source: str  # the text given to the model (German sentence / package description)
    reference: str  # the human answer (English sentence / package synopsis)
