"""llama.cpp's decoding modes, each served by one persistent llama-server, asked for greedy completions of token ids.

Why a server and not one tool run per generation: a process start and a model load (about a second) would be
charged to every generation, and the command-line tools print text, not token ids. A server loads its models
once, takes the prompt as token ids (the exact ids biglittle feeds its own methods, no template of its own
added), returns the new token ids and reports its own timings (prompt processing and generation, in ms).
Prompt caching is off, so every request processes its whole prompt, as every biglittle generation does.

The modes: plain decoding; speculative decoding with the 0.5B as its draft (`draft-simple`, at most
DRAFT_MAX tokens a round, its greedy draft-and-match); n-gram lookup (`ngram-simple`: the last NGRAM_SIZE
tokens looked up earlier in the text, at most DRAFT_MAX tokens proposed), biglittle's prompt lookup's nearest kin.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .llamacpp_build import LlamaCppBuild, PeerUnavailable, describe_exit

MODES = ("plain", "draft", "ngram")
DRAFT_MAX = 4  # tokens proposed per round at most (llama.cpp's default is 3)
NGRAM_SIZE = 3  # tokens looked up (biglittle's --max-ngram default); llama.cpp's default, 12, is meant for code edits
CONTEXT = 8192  # tokens of KV cache per server: the bench's longest prompt plus its budget, with room
START_TIMEOUT_S = 300  # loading both models on a busy 2-core machine
REQUEST_TIMEOUT_S = 900  # one generation

# Greedy, and no sampler that could change a greedy choice (repetition penalties, DRY, XTC, min-p) is active.
GREEDY = {
    "temperature": 0.0,
    "top_k": 1,
    "top_p": 1.0,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "dry_multiplier": 0.0,
    "xtc_probability": 0.0,
    "seed": 0,
}


def mode_args(mode: str, draft_gguf: Path) -> list[str]:
    """The llama-server options that make one decoding mode."""
    if mode == "plain":
        return []
    if mode == "draft":
        return [
            "--spec-type",
            "draft-simple",
            "--spec-draft-model",
            str(draft_gguf),
            "--spec-draft-n-max",
            str(DRAFT_MAX),
        ]
    if mode == "ngram":
        return [
            "--spec-type",
            "ngram-simple",
            "--spec-ngram-simple-size-n",
            str(NGRAM_SIZE),
            "--spec-ngram-simple-size-m",
            str(DRAFT_MAX),
        ]
    raise ValueError(f"unknown llama.cpp mode {mode!r}; choose from {', '.join(MODES)}")


def server_command(server: Path, mode: str, target_gguf: Path, draft_gguf: Path, threads: int) -> list[str]:
    """The llama-server command line of one mode (LlamaServer adds where to listen): one slot, no prompt cache."""
    return [
        str(server),
        "--model",
        str(target_gguf),
        "--threads",
        str(threads),
        "--threads-batch",
        str(threads),
        "--ctx-size",
        str(CONTEXT),
        "--parallel",
        "1",
        "--no-cache-prompt",
        "--cache-ram",
        "0",
        "--no-webui",
        *mode_args(mode, draft_gguf),
    ]


def completion_request(prompt_ids: list[int], max_new_tokens: int) -> dict:
    """The body of a /completion request: the prompt as token ids, greedy, the new token ids returned."""
    return {
        "prompt": list(prompt_ids),
        "n_predict": max_new_tokens,
        "cache_prompt": False,
        "return_tokens": True,
        "stream": False,
        **GREEDY,
    }


@dataclass(frozen=True)
class Completion:
    token_ids: list[int]  # the new tokens, the end-of-generation token included when it ended there
    text: str
    stop_type: str  # eos | limit | word | none
    timings: dict = field(default_factory=dict)  # llama-server's own: prompt_n, prompt_ms, predicted_n, predicted_ms,
    # and with a drafter draft_n (tokens proposed) and draft_n_accepted

    @property
    def reported_s(self) -> float:
        """Prompt processing plus generation, as the server measured them (no HTTP, no tokenization)."""
        return (self.timings.get("prompt_ms", 0.0) + self.timings.get("predicted_ms", 0.0)) / 1000


def parse_completion(body: dict) -> Completion:
    """A /completion response (non-streamed) as a Completion; ValueError when it is not one."""
    if "tokens" not in body or "timings" not in body:
        raise ValueError(f"not a completion response (keys: {', '.join(sorted(body))})")
    timings = {key: value for key, value in body["timings"].items() if isinstance(value, (int, float))}
    return Completion([int(t) for t in body["tokens"]], body.get("content", ""), body.get("stop_type", ""), timings)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LlamaServer:
    """One llama-server process: started, asked, stopped. Whatever goes wrong is a PeerUnavailable with the reason."""

    def __init__(self, command: list[str], log: Path, name: str):
        self.command, self.log, self.name = command, log, name
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Starts the server on a free local port and waits until its models are loaded."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command = [*self.command, "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "ab") as log:
            try:
                self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            except OSError as error:
                raise PeerUnavailable(f"{self.name}: llama-server did not start ({error})") from error
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(self._url("/health"), timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # still loading (503) or not listening yet
            time.sleep(0.2)
        self.stop()
        raise PeerUnavailable(f"{self.name}: llama-server was not ready after {timeout_s:.0f} s; see {self.log}")

    def complete(self, prompt_ids: list[int], max_new_tokens: int) -> Completion:
        if self.process is None:
            self.start()
        body = json.dumps(completion_request(prompt_ids, max_new_tokens)).encode()
        request = urllib.request.Request(
            self._url("/completion"), data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                return parse_completion(json.loads(response.read()))
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            raise PeerUnavailable(f"{self.name}: llama-server answered {error.code} ({detail})") from error
        except (urllib.error.URLError, OSError, ValueError) as error:
            self._check_alive()
            raise PeerUnavailable(f"{self.name}: no answer from llama-server ({error}); see {self.log}") from error

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            returncode = self.process.returncode
            self.process = None
            raise PeerUnavailable(f"{self.name}: llama-server {describe_exit(returncode)}; see {self.log}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def mode_servers(
    build: LlamaCppBuild, target_gguf: Path, draft_gguf: Path, threads: int, log_dir: Path, names: dict[str, str]
) -> dict[str, LlamaServer]:
    """One (not yet started) server per mode, keyed by mode; `names` labels each mode in messages."""
    return {
        mode: LlamaServer(
            server_command(build.tool("llama-server"), mode, target_gguf, draft_gguf, threads),
            log_dir / f"llama-server-{mode}.log",
            names.get(mode, mode),
        )
        for mode in MODES
    }
