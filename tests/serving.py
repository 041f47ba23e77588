"""Helpers for the server's tests: a uvicorn server on 127.0.0.1 in a thread, and a pair made slow and endless."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import uvicorn

# The tiny models have no chat template: the tests give their tokenizer this one (the messages' text, in order).
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }} {% endfor %}"


@contextmanager
def running_server(app):
    """Serve `app` on a free loopback port; yields its base URL; stops it afterwards."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)


class PacedPair:
    """A model pair whose generations pause after every round and wait for `gate` before starting; counts rounds.

    Wrapped around a pair whose end-of-sequence token is switched off, a generation runs to max_tokens, slowly:
    long enough to disconnect in the middle of it, or to fill the queue behind it.
    """

    def __init__(self, pair, pause_s: float):
        self._pair, self.pause_s = pair, pause_s
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()  # a generation has begun (and waits at the gate if it is closed)
        self.rounds: list[int] = []  # rounds of each generation, in order

    def __getattr__(self, name):
        return getattr(self._pair, name)

    def generate(self, prompt, config=None, *, on_commit=None, **settings):
        self.rounds.append(0)
        self.started.set()
        assert self.gate.wait(30)

        def paced(commit):
            self.rounds[-1] += 1
            time.sleep(self.pause_s)
            if on_commit is not None:
                on_commit(commit)

        return self._pair.generate(prompt, config, on_commit=paced, **settings)
