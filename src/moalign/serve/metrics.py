"""The server's counters, exposed in Prometheus' text format at ``/metrics``."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

#: Upper bounds of the batch-size histogram's buckets.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

#: Seconds of recent decoding that ``moalign_tokens_per_second`` averages over.
RATE_WINDOW_S = 60.0


class ServerMetrics:
    """Queue depth, batch sizes, generated tokens and their rate, requests and errors by status code.
    Updated from the event loop and the worker thread, so every update takes a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.queue_depth = 0
        self.in_flight = 0
        self.batches = 0
        self.batch_rows = 0
        self.batch_size_max = 0
        self.mixed_batches = 0
        self.batch_histogram = Counter()
        self.generated_tokens = 0
        self.prompt_tokens = 0
        self.decode_seconds = 0.0
        self.responses = Counter()
        self._recent: deque[tuple[float, int, float]] = deque()

    def record_batch(self, size: int, *, mixed: bool) -> None:
        with self._lock:
            self.batches += 1
            self.batch_rows += size
            self.batch_size_max = max(self.batch_size_max, size)
            self.mixed_batches += int(mixed)
            self.batch_histogram[next((b for b in BATCH_BUCKETS if size <= b), float("inf"))] += 1

    def record_tokens(self, tokens: int, seconds: float) -> None:
        with self._lock:
            now = time.monotonic()
            self.generated_tokens += tokens
            self.decode_seconds += seconds
            self._recent.append((now, tokens, seconds))
            while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
                self._recent.popleft()

    def record_response(self, endpoint: str, status: int, prompt_tokens: int = 0) -> None:
        with self._lock:
            self.responses[(endpoint, status)] += 1
            self.prompt_tokens += prompt_tokens

    def tokens_per_second(self) -> float:
        with self._lock:
            tokens = sum(t for _, t, _ in self._recent)
            seconds = sum(s for _, _, s in self._recent)
        return tokens / seconds if seconds > 0 else 0.0

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        rate = self.tokens_per_second()
        with self._lock:
            lines = [
                *_metric("moalign_queue_depth", "gauge", "requests waiting for a batch", self.queue_depth),
                *_metric("moalign_requests_in_flight", "gauge", "requests accepted and not yet answered", self.in_flight),
                *_metric("moalign_batches_total", "counter", "batches decoded", self.batches),
                *_metric("moalign_mixed_preference_batches_total", "counter",
                         "batches whose rows had more than one distinct preference", self.mixed_batches),
                *_metric("moalign_batch_size_max", "gauge", "largest batch decoded so far", self.batch_size_max),
                "# HELP moalign_batch_size rows per decoded batch",
                "# TYPE moalign_batch_size histogram",
            ]
            cumulative = 0
            for bound in BATCH_BUCKETS:
                cumulative += self.batch_histogram[bound]
                lines.append(f'moalign_batch_size_bucket{{le="{bound}"}} {cumulative}')
            lines += [f'moalign_batch_size_bucket{{le="+Inf"}} {self.batches}',
                      f"moalign_batch_size_sum {self.batch_rows}", f"moalign_batch_size_count {self.batches}"]
            lines += [
                *_metric("moalign_generated_tokens_total", "counter", "tokens generated", self.generated_tokens),
                *_metric("moalign_prompt_tokens_total", "counter", "prompt tokens of answered requests",
                         self.prompt_tokens),
                *_metric("moalign_decode_seconds_total", "counter", "seconds spent decoding batches",
                         round(self.decode_seconds, 6)),
                *_metric("moalign_tokens_per_second", "gauge",
                         f"generated tokens per decoding second over the last {RATE_WINDOW_S:.0f} s", round(rate, 3)),
                "# HELP moalign_responses_total responses by endpoint and HTTP status",
                "# TYPE moalign_responses_total counter",
                *(f'moalign_responses_total{{endpoint="{e}",code="{c}"}} {n}' for (e, c), n in sorted(self.responses.items())),
                "# HELP moalign_errors_total error responses by HTTP status",
                "# TYPE moalign_errors_total counter",
                *(f'moalign_errors_total{{code="{c}"}} {n}' for c, n in sorted(self._errors().items())),
            ]
        return "\n".join(lines) + "\n"

    def _errors(self) -> Counter:
        errors: Counter = Counter()
        for (_, code), n in self.responses.items():
            if code >= 400:
                errors[code] += n
        return errors


def _metric(name: str, kind: str, help_text: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]


def parse_metrics(text: str) -> dict[str, float]:
    """``{"name{labels}": value}`` from Prometheus text (for tests, benchmarks and scripts reading ``/metrics``)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values
