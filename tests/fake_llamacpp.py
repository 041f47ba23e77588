"""Stand-ins for a llama.cpp build: a llama-server that answers like the real one, and one that dies by a signal.

The answering one is a small Python HTTP server taking llama-server's command line. Its greedy "generation" is
the prompt's last tokens in reverse; the speculative mode (`--spec-type draft-simple`) changes the last of them,
so it disagrees with plain decoding, and each mode reports its own fixed generation time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from biglittle.peers.llamacpp_build import LlamaCppBuild

PREDICTED_MS = {"none": 400.0, "draft-simple": 200.0, "ngram-simple": 100.0}
PROMPT_MS = 50.0

SERVER = f"""#!{sys.executable}
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
mode = args[args.index("--spec-type") + 1] if "--spec-type" in args else "none"
predicted_ms = {PREDICTED_MS!r}[mode]

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send({{"status": "ok"}})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open(sys.argv[0] + ".requests", "a") as log:
            log.write(json.dumps(request) + "\\n")
        tokens = request["prompt"][::-1][: request["n_predict"]]
        if mode == "draft-simple":
            tokens = tokens[:-1] + [tokens[-1] + 1]
        timings = {{"prompt_n": len(request["prompt"]), "prompt_ms": {PROMPT_MS}, "predicted_n": len(tokens),
                   "predicted_ms": predicted_ms}}
        if mode != "none":
            timings.update(draft_n=4, draft_n_accepted=3)
        self.send({{"content": "", "tokens": tokens, "stop_type": "limit", "timings": timings}})

HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

CRASHING_SERVER = "#!/bin/sh\nkill -ILL $$\n"  # what a build with instructions this CPU lacks does


def fake_build(
    folder: Path, server_script: str = SERVER, isa: tuple[str, ...] = ("GGML_AVX2",), write_info: bool = True
) -> LlamaCppBuild:
    """A finished build (every tool, and build.json unless not `write_info`) whose llama-server is `server_script`."""
    bin_dir = folder / "build" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("llama-server", "llama-tokenize", "llama-bench", "llama-speculative-simple"):
        path = bin_dir / tool
        path.write_text(server_script if tool == "llama-server" else "#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    info = {"version": "llama.cpp version: 0 (fake)", "isa": list(isa), "tools": ["llama-server"]}
    if write_info:
        (folder / "build.json").write_text(json.dumps(info))
    return LlamaCppBuild(bin_dir, info)


def requests_seen(build: LlamaCppBuild) -> list[dict]:
    log = build.tool("llama-server").with_name("llama-server.requests")
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
