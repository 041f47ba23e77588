"""One generation at a time: a worker thread in front of the model pair, and a bounded queue in front of it.

Each request becomes a Job. The worker runs it with the pair's own generate() (which starts the models' caches afresh
on the job's prompt, so no request sees another's state) and hands what each round commits to the job's `deliver`
(the request handler's queue). A job whose client went away (`cancelled`) stops after its current round, or is
skipped if it has not started.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..api import GenerationResult
from ..config import GenerationConfig
from ..cost.prediction import compare_with_ar
from ..decoding.stats import GenerationStats
from ..errors import BigLittleError
from ..streaming import ChunkMaker, GenerationCancelled, StreamChunk

log = logging.getLogger("biglittle.serve")


@dataclass(frozen=True)
class Finished:
    """The last event of a job: the end of its text, why it ended, and (if asked) the comparison with ar."""

    chunk: StreamChunk  # the last one, carrying the result
    finish_reason: str  # "stop" (end of text or a stop string) or "length"
    compare_ar: dict | None = None

    @property
    def result(self) -> GenerationResult:
        assert self.chunk.result is not None
        return self.chunk.result


@dataclass(frozen=True)
class Failed:
    status: int  # 400: the request's fault; 500: ours
    message: str


@dataclass
class Job:
    prompt_ids: list[int]
    config: GenerationConfig
    deliver: Callable[[StreamChunk | Finished | Failed], None]  # called on the worker thread
    compare_ar: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)


class QueueFull(Exception):
    pass


class Worker:
    def __init__(self, pair, max_queue: int, on_generation: Callable[[GenerationStats], None]):
        self.pair = pair
        self.on_generation = on_generation  # told the statistics of every finished generation
        self.running = 0  # jobs being generated: 0 or 1
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._current: Job | None = None

    @property
    def depth(self) -> int:
        """Jobs waiting."""
        return self._jobs.qsize()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="biglittle-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Cancel the job in hand (it stops after its current round) and the waiting ones; end the thread."""
        if self._current is not None:
            self._current.cancelled.set()
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancelled.set()
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join()

    def submit(self, job: Job) -> None:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull from None

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if not job.cancelled.is_set():
                self._current, self.running = job, 1
                try:
                    self._serve(job)
                finally:
                    self._current, self.running = None, 0

    def _serve(self, job: Job) -> None:
        chunks = ChunkMaker(self.pair.decode, job.config.stop, include_stop=False)  # OpenAI leaves the stop string out

        def on_commit(commit) -> None:
            if job.cancelled.is_set():
                raise GenerationCancelled
            job.deliver(chunks.chunk(commit))

        try:
            result = self.pair.generate(job.prompt_ids, job.config, on_commit=on_commit)
            self.on_generation(result.stats)
            comparison = compare_with_ar(self.pair, job.prompt_ids, job.config, result) if job.compare_ar else None
            ended = chunks.stopped or bool(result.token_ids and result.token_ids[-1] in self.pair.target.eos_token_ids)
            job.deliver(Finished(chunks.last(result), "stop" if ended else "length", comparison))
        except GenerationCancelled:
            pass
        except BigLittleError as error:
            job.deliver(Failed(400, str(error)))
        except Exception as error:  # a bug of ours: the server keeps serving
            log.exception("generation failed")
            job.deliver(Failed(500, f"internal error: {type(error).__name__}: {error}"))
