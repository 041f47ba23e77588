"""The server's Prometheus metrics (GET /metrics), named biglittle_*, in a registry of the server's own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..decoding.stats import GenerationStats

OUTCOMES = ("ok", "bad_request", "rejected", "cancelled", "error")  # rejected: the queue was full (503)


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self._tokens = self._seconds = self._proposed = self._accepted = 0.0
        r = self.registry
        self.requests = Counter(
            "biglittle_requests", "Requests by endpoint and outcome", ["endpoint", "outcome"], registry=r
        )
        self.latency = Histogram(
            "biglittle_request_duration_seconds", "Time from a request's arrival to its last byte", registry=r
        )
        self.prompt_tokens = Counter("biglittle_prompt_tokens", "Prompt tokens of finished generations", registry=r)
        self.completion_tokens = Counter(
            "biglittle_completion_tokens", "Tokens written by finished generations", registry=r
        )
        self.target_passes = Counter("biglittle_target_passes", "Big (target) model forward passes", registry=r)
        self.draft_passes = Counter("biglittle_draft_passes", "Little (draft) model forward passes", registry=r)
        self.proposed = Counter("biglittle_draft_tokens_proposed", "Drafted tokens the big model scored", registry=r)
        self.accepted = Counter("biglittle_draft_tokens_accepted", "Drafted tokens the big model kept", registry=r)
        self.generation_seconds = Counter(
            "biglittle_generation_seconds", "Wall time spent generating (finished generations)", registry=r
        )
        Gauge(
            "biglittle_acceptance_rate", "Accepted over proposed drafted tokens, all generations so far", registry=r
        ).set_function(lambda: self._ratio(self._accepted, self._proposed))
        Gauge(
            "biglittle_tokens_per_second", "Tokens written per second of generation, all generations so far", registry=r
        ).set_function(lambda: self._ratio(self._tokens, self._seconds))

    def watch_worker(self, queue_depth: Callable[[], float], running: Callable[[], float]) -> None:
        Gauge("biglittle_queue_depth", "Requests waiting for the worker", registry=self.registry).set_function(
            queue_depth
        )
        Gauge("biglittle_requests_running", "Requests being generated (0 or 1)", registry=self.registry).set_function(
            running
        )

    def record_request(self, endpoint: str, outcome: str, seconds: float) -> None:
        self.requests.labels(endpoint, outcome).inc()
        self.latency.observe(seconds)

    def record_generation(self, stats: GenerationStats) -> None:
        self.prompt_tokens.inc(stats.prompt_tokens)
        self.completion_tokens.inc(stats.new_tokens)
        self.target_passes.inc(stats.target_calls)
        self.draft_passes.inc(stats.draft_calls)
        self.proposed.inc(stats.proposed)
        self.accepted.inc(stats.accepted)
        self.generation_seconds.inc(stats.wall_time_s)
        # The worker thread alone writes these; the rates below read them.
        self._tokens += stats.new_tokens
        self._seconds += stats.wall_time_s
        self._proposed += stats.proposed
        self._accepted += stats.accepted

    @staticmethod
    def _ratio(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator else 0.0

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
