"""One request's reply, from its admission to its last byte: a JSON response, or OpenAI's chunks as server-sent
events. The worker hands the job's events over (thread-safely) to an asyncio queue read here; a client that
leaves before the end cancels the job."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, format_sse_event

from ..api import GenerationResult
from ..streaming import StreamChunk
from .protocol import ResponseShape, error_body, usage
from .worker import Failed, Finished, Job

DISCONNECT_POLL_S = 0.25  # how often a request waiting for its turn checks that its client is still there
Event = StreamChunk | Finished | Failed


class Reply:
    def __init__(self, request: Request, record: Callable[[str, float], None]):
        self.request = request
        self._record, self._started = record, time.perf_counter()
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self.job: Job | None = None

    def deliver(self, event: Event) -> None:
        """Called on the worker thread."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the event loop is gone: the server is shutting down
            if self.job is not None:
                self.job.cancelled.set()

    def record(self, outcome: str) -> None:
        self._record(outcome, time.perf_counter() - self._started)

    def error(self, status: int, message: str, **fields) -> JSONResponse:
        self.record("bad_request" if status == 400 else "rejected" if status == 503 else "error")
        return error_response(status, message, **fields)

    async def respond(self, job: Job, shape: ResponseShape, sources: bool, stream: bool, include_usage: bool):
        """Once the job's first event is in (an error, or the first round): a 400 or 500, the stream, or the JSON."""
        self.job = job
        event = await self._next_event()
        if event is None or isinstance(event, Failed):
            return self._failure(event)
        if stream:
            events = self._stream(event, shape, sources, include_usage)
            return EventSourceResponse(events, headers={"Cache-Control": "no-cache"})
        pieces = []
        while isinstance(event, StreamChunk):
            pieces.append(event)
            event = await self._next_event()
        if not isinstance(event, Finished):
            return self._failure(event)
        self.record("ok")
        text = "".join(piece.text for piece in pieces) + event.chunk.text
        extra = final_extra(event)
        if sources:
            extra["tokens"] = [token for piece in pieces for token in piece.to_dict()["tokens"]]
        return JSONResponse(shape.response(text, event.finish_reason, usage_of(event.result), extra))

    async def _next_event(self) -> Event | None:
        """The job's next event, or None if the client went away first (the job is then cancelled)."""
        assert self.job is not None
        getter = asyncio.ensure_future(self._events.get())
        while True:
            done, _ = await asyncio.wait({getter}, timeout=DISCONNECT_POLL_S)
            if done:
                return getter.result()
            if await self.request.is_disconnected():
                getter.cancel()
                self.job.cancelled.set()
                return None

    async def _stream(
        self, event: Event, shape: ResponseShape, sources: bool, include_usage: bool
    ) -> AsyncIterator[bytes]:
        """OpenAI's chunks as server-sent events, then [DONE]. Starlette ends this generator when the client
        disconnects; `finally` then cancels the job."""
        assert self.job is not None
        outcome = "cancelled"
        try:
            if shape.chat:
                yield _sse(shape.chunk(None))
            while isinstance(event, StreamChunk):
                if event.text or sources:
                    yield _sse(shape.chunk(event.text, extra=event.to_dict() if sources else None))
                event = await self._events.get()
            if isinstance(event, Failed):
                outcome = "bad_request" if event.status == 400 else "error"
                yield _sse(error_body(event.message, error_kind(event.status)))
                return
            if event.chunk.text:  # the text held back until the end
                yield _sse(shape.chunk(event.chunk.text))
            yield _sse(shape.chunk(None, event.finish_reason, final_extra(event)))
            if include_usage:
                yield _sse(shape.usage_chunk(usage_of(event.result)))
            yield format_sse_event(data_str="[DONE]")
            outcome = "ok"
        finally:
            self.job.cancelled.set()  # stops the generation if the client left; no effect once it has finished
            self.record(outcome)

    def _failure(self, event: Failed | None) -> Response:
        if event is None:  # nobody is listening any more
            self.record("cancelled")
            return error_response(499, "the client closed the request", kind="client_closed_request")
        return self.error(event.status, event.message, kind=error_kind(event.status))


def final_extra(finished: Finished) -> dict:
    """biglittle's own field of a response: the generation's statistics (and the comparison with ar, if asked)."""
    extra = {"stats": finished.result.stats.to_dict()}
    if finished.compare_ar is not None:
        extra["compare_ar"] = finished.compare_ar
    return extra


def usage_of(result: GenerationResult) -> dict:
    return usage(result.stats.prompt_tokens, len(result.token_ids))


def _sse(payload: dict) -> bytes:
    return format_sse_event(data_str=json.dumps(payload))


def error_kind(status: int) -> str:
    return "invalid_request_error" if status < 500 else "server_error"


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None, kind: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(message, kind or error_kind(status), param, code), status_code=status)
