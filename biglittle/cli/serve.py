"""`biglittle serve`: load a pair once and serve it over HTTP (the OpenAI API, /metrics, a page at /)."""

from __future__ import annotations

import argparse
import socket
import sys

from ..config import AUTO, generation_defaults
from ..errors import BigLittleError
from .options import add_model_options, check_measurements_writable, load_models, resolve

DESCRIPTION = """\
Serve a model pair over HTTP with the OpenAI API, so that the `openai` client and other tools can call it:
  GET  /v1/models              the one model served (--model-name)
  POST /v1/completions         text completion; "stream": true sends server-sent events
  POST /v1/chat/completions    chat completion (the tokenizer's chat template); streams likewise
  GET  /health, GET /metrics   liveness; Prometheus metrics (requests, tokens, passes, acceptance, queue)
  GET  /                       a page: type a prompt, watch each token coloured by which model wrote it
Request fields: max_tokens, temperature, top_p, seed, stop, n (1), stream, stream_options; biglittle's own
settings go in a "biglittle" object (method, gamma, drafter, max_ngram, tree, tree_depth, tree_width, top_k,
fallback_threshold, rollback_threshold, max_little_steps, bild_thresholds; and sources: per-token sources in the
stream, compare_ar: the speedup over the big model alone).
Requests are served one at a time, in order; at most --max-queue wait (HTTP 503 past that).
Without --target the built-in pair is served (`biglittle models fetch` installs it)."""


def add_commands(commands) -> None:
    p = commands.add_parser(
        "serve",
        help="serve a pair over HTTP: the OpenAI API, streaming, metrics and a page",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(p.add_argument_group("models"))
    server = p.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    server.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    server.add_argument(
        "--max-queue",
        type=int,
        default=32,
        metavar="N",
        help="requests that may wait while one is generated; more get HTTP 503 (default %(default)s)",
    )
    server.add_argument(
        "--model-name", default="biglittle", help="the model id clients send and /v1/models lists (default %(default)s)"
    )
    p.set_defaults(handler=_run_serve)


def _run_serve(args) -> int:
    import uvicorn

    from ..serve import create_app

    if args.max_queue < 1:
        raise BigLittleError(f"--max-queue must be at least 1, got {args.max_queue}")
    listener = _listen(args.host, args.port)  # before the slow loading: a port in use is a one-line error
    spec, precision = resolve(args)
    measures = generation_defaults(spec.builtin).gamma == AUTO  # --gamma auto needs this machine's cost profile
    if measures:
        check_measurements_writable(args)
    pair = load_models(args, spec, precision)
    if measures:  # now (once per machine, then kept), not in the first request
        pair.cost_profile_with_bar("measuring costs for --gamma auto")
    app = create_app(pair, model_name=args.model_name, max_queue=args.max_queue)
    host, port = listener.getsockname()[:2]
    print(f"biglittle: serving {args.model_name} on http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listener])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except (OSError, OverflowError) as error:
        raise BigLittleError(f"cannot listen on {host}:{port}: {error}") from None
    return listener
