"""Progress shown while something long runs."""

from __future__ import annotations

import threading

from tqdm.auto import tqdm


class Spinner:
    """A bar without a total that shows the elapsed time while something long runs."""

    def __init__(self, desc: str, enabled: bool):
        self.bar = tqdm(total=None, desc=desc, bar_format="{desc} [{elapsed}]", disable=not enabled, leave=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.bar.refresh()

    def set(self, desc: str) -> None:
        self.bar.set_description_str(desc)

    def __enter__(self) -> Spinner:
        if not self.bar.disable:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.bar.close()
