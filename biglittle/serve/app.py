"""`biglittle serve`'s web application: the OpenAI API's models, completions and chat completions (streamed as
server-sent events or not), /health, /metrics (Prometheus) and the page at /.

One model pair per process, one generation at a time (worker.py); each request waits in a bounded queue (503 past
it), and its client's disconnection cancels it (replies.py). Bad requests get HTTP 400 in OpenAI's error shape.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BigLittleError
from .metrics import ServerMetrics
from .protocol import ChatCompletionRequest, CompletionRequest, GenerationRequest, RequestError, ResponseShape
from .replies import Reply, error_response
from .worker import Job, QueueFull, Worker

ENDPOINTS = {"/v1/completions": "completions", "/v1/chat/completions": "chat_completions"}  # metric labels


def create_app(pair, *, model_name: str = "biglittle", max_queue: int = 32) -> FastAPI:
    """The application serving `pair` under the model id `model_name`, with at most `max_queue` requests waiting."""
    metrics = ServerMetrics()
    worker = Worker(pair, max_queue, metrics.record_generation)
    metrics.watch_worker(lambda: worker.depth, lambda: worker.running)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker.start()
        yield
        await run_in_threadpool(worker.stop)

    app = FastAPI(
        title="biglittle", summary="an OpenAI-compatible server for a big and a little model", lifespan=lifespan
    )
    _add_error_handlers(app, metrics)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "queue_depth": worker.depth, "running": worker.running}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict:
        names = {"target": pair.target.name, "draft": pair.draft.name if pair.draft is not None else None}
        card = {"id": model_name, "object": "model", "created": 0, "owned_by": "biglittle", "biglittle": names}
        return {"object": "list", "data": [card]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await serve(request, body, body.prompt_input)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return await serve(request, body, lambda: pair.encode_messages(body.chat_messages()))

    async def serve(request: Request, body: GenerationRequest, prompt: Callable[[], str | list[int]]) -> Response:
        endpoint = ENDPOINTS[request.url.path]
        reply = Reply(request, lambda outcome, seconds: metrics.record_request(endpoint, outcome, seconds))
        try:
            if body.model != model_name:
                raise RequestError(
                    f"unknown model {body.model!r}; this server has {model_name!r}", "model", "model_not_found"
                )
            body.check_supported()
            # Checked here, before queueing: a bad request is told at once.
            prompt_ids, config = pair.prepare(
                prompt(), body.config(pair.defaults, pair.draft is not None, pair.builtin_draft), chat=False
            )
            job = Job(prompt_ids, config, reply.deliver, compare_ar=body.biglittle.compare_ar)
            worker.submit(job)
        except BigLittleError as error:
            return reply.error(400, str(error), param=getattr(error, "param", None), code=getattr(error, "code", None))
        except QueueFull:
            message = f"the server is busy ({max_queue} requests waiting); try again later"
            return reply.error(503, message, code="queue_full")
        shape = ResponseShape(endpoint == "chat_completions", model_name)
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return await reply.respond(job, shape, body.biglittle.sources, body.stream, include_usage)

    return app


def _add_error_handlers(app: FastAPI, metrics: ServerMetrics) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        if request.url.path in ENDPOINTS:
            metrics.record_request(ENDPOINTS[request.url.path], "bad_request", 0.0)
        first = error.errors()[0]
        if first.get("type") == "json_invalid":
            return error_response(400, f"the request body is not valid JSON: {first.get('msg')}", code="json_invalid")
        param = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
        return error_response(400, f"{param or 'the request body'}: {first.get('msg')}", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if error.status_code == 404 else None
        return error_response(error.status_code, str(error.detail), kind=kind)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:  # a bug of ours
        return error_response(500, f"internal error: {type(error).__name__}: {error}")
