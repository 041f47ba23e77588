"""`biglittle bench`: every method on the same pair and examples, interleaved, resumable, with a report.

options.py    options and their defaults (no torch)  settings.py   the grid of settings
run.py        the interleaved loop                   store.py      records on disk (resume)
peers.py      transformers' own methods              aggregate.py  quality, speed, mechanism per setting
report.py, plots.py  Markdown and PNGs               harness.py    run_benchmark: all of it, end to end
threshold_search.py  `biglittle tune-bild`: BiLD's thresholds chosen on dev examples with the same loop
"""

from importlib import import_module

# Imported on first use, so that the command line can read the options without loading torch.
_EXPORTS = {
    "BenchOptions": "options",
    "resolve_options": "options",
    "run_benchmark": "harness",
    "TuneOptions": "options",
    "tune_options": "options",
    "tune_bild": "threshold_search",
    "format_tuning": "threshold_search",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'biglittle.bench' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
