"""llama.cpp as a peer of the bench: its plain decoding, its speculative decoding with the 0.5B and its n-gram
lookup, on the same prompt ids, greedy, each mode in its own persistent llama-server.

It runs only with the default pair's GGUF files kept (`biglittle models fetch --keep-gguf`) and a build that
suits this CPU (`biglittle peers build`; `make peers` does both). Otherwise, or when a server dies (an illegal
instruction, a crash), its settings are left out and the report says why: the peer never takes the bench down.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BigLittleError
from ..peers.llamacpp_build import PeerUnavailable, find_build
from ..peers.llamacpp_server import DRAFT_MAX, NGRAM_SIZE, Completion, LlamaServer, mode_servers
from ..runtime.fetch import gguf_path
from .settings import LLAMACPP_ENGINES as ENGINES


class LlamaCppPeer:
    """The bench's llama.cpp servers, one per mode, each started on its first request and stopped by close().

    `unavailable` says why none can run (not installed, no GGUF files, a build for another CPU), None when they
    can; `failures` maps an engine whose server failed to the reason, and that engine is not asked again.
    """

    def __init__(self, servers: dict[str, LlamaServer], build_info: dict, threads: int):
        self.servers, self.build_info, self.threads = servers, build_info, threads
        self.unavailable: str | None = None
        self.failures: dict[str, str] = {}

    @classmethod
    def absent(cls, reason: str) -> LlamaCppPeer:
        peer = cls({}, {}, 0)
        peer.unavailable = reason
        return peer

    @classmethod
    def find(cls, cache: str | os.PathLike | None, threads: int, log_dir: Path) -> LlamaCppPeer:
        """The installed build with the default pair's kept GGUF files, or an absent peer saying what is missing."""
        try:
            build = find_build(cache)
            target, draft = gguf_path("target", cache), gguf_path("draft", cache)
        except PeerUnavailable as error:
            return cls.absent(str(error))
        except BigLittleError as error:  # a GGUF file not kept
            return cls.absent(f"llama.cpp: {error}")
        names = {mode: label for label, mode in ENGINES.values()}
        return cls(mode_servers(build, target, draft, threads, log_dir, names), build.info, threads)

    def generate(self, engine: str, prompt_ids: list[int], max_new_tokens: int) -> Completion:
        """Greedy new tokens of one llama.cpp mode; PeerUnavailable when it cannot run (then, and ever after)."""
        if self.unavailable:
            raise PeerUnavailable(self.unavailable)
        if engine in self.failures:
            raise PeerUnavailable(self.failures[engine])
        server = self.servers[ENGINES[engine][1]]
        try:
            return server.complete(prompt_ids, max_new_tokens)
        except PeerUnavailable as error:
            self.failures[engine] = str(error)
            server.stop()
            raise

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()

    def report(self) -> dict:
        """What results.json keeps: a status line, the build, the servers' command lines, the failures."""
        if self.unavailable:
            return {"status": self.unavailable}
        isa = ", ".join(self.build_info.get("isa", [])) or "no x86 options"
        return {
            "status": f"llama.cpp: {self.build_info.get('version', '?')} built with {isa}; {self.threads} threads; "
            f"speculative drafts at most {DRAFT_MAX} tokens a round (the 0.5B), n-gram lookup of {NGRAM_SIZE} tokens",
            "build": self.build_info,
            "servers": {mode: server.command for mode, server in self.servers.items()},
            "failures": self.failures,
        }
