"""Dynamic batching: requests that arrive together run as one batch, each row at its own preference and settings.

One worker thread owns the model. Requests wait in a bounded queue (a full queue is the caller's 429); the worker
takes the oldest, gathers whatever else arrives within a short window (up to the batch size), decodes them in one
batched loop, and hands each request its text as it grows (for streaming) and when it ends. A request past its
deadline, or whose client went away, is dropped from the batch at its next token.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from moalign.models.decoding import decode
from moalign.models.generation import left_pad
from moalign.serve.metrics import ServerMetrics
from moalign.serve.model import ServedModel

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The request queue is at its bound; retry later."""


@dataclass
class Job:
    """One row of a batch: a request's prompt, preference and sampling settings, and where its text goes."""

    prompt_ids: list[int]
    preference: np.ndarray | None
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: list[str]
    strip: bool
    stream: bool
    deadline: float
    emit: Callable[[tuple], None]
    """Receives ``("delta", text)`` as the answer grows, then ``("done", text, finish_reason, tokens)`` or
    ``("error", status, message)``; called from the worker thread."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    emitted: str = ""

    def send_visible(self, text: str) -> None:
        """Stream the part of ``text`` not yet sent (text already sent is never taken back)."""
        if self.stream and len(text) > len(self.emitted) and text.startswith(self.emitted):
            self.emit(("delta", text[len(self.emitted):]))
            self.emitted = text

    def expired(self, now: float) -> bool:
        return self.cancelled.is_set() or now > self.deadline


def visible_text(text: str, stop: list[str], strip: bool, final: bool) -> tuple[str, bool]:
    """``(the text a client may see so far, whether a stop string ended it)``: cut before the first stop string,
    and while the answer is still growing, hold back a tail that could be the start of a stop string, and (when
    answers are stripped, as the library's ``generate`` strips them) trailing whitespace."""
    cuts = [text.find(s) for s in stop if s in text]
    stopped = bool(cuts)
    if stopped:
        text = text[:min(cuts)]
    elif not final:
        text = text.rstrip("\ufffd")  # an unfinished multi-byte character
        hold = max((n for s in stop for n in range(len(s) - 1, 0, -1) if text.endswith(s[:n])), default=0)
        text = text[:len(text) - hold]
    return (text.strip() if strip else text), stopped


class Batcher:
    """The worker thread and its bounded queue (see the module docstring)."""

    def __init__(self, served: ServedModel, metrics: ServerMetrics, *, max_batch_size: int = 16,
                 batch_window_s: float = 0.01, max_queue: int = 256):
        self.served, self.metrics = served, metrics
        self.max_batch_size, self.batch_window_s = max_batch_size, batch_window_s
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="moalign-batcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises :class:`QueueFull` when the queue is at its bound."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        self.metrics.queue_depth = self._queue.qsize()

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            window_end = time.monotonic() + self.batch_window_s
            while len(batch) < self.max_batch_size:
                remaining = window_end - time.monotonic()
                try:
                    batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            self.metrics.queue_depth = self._queue.qsize()
            now = time.monotonic()
            live = []
            for job in batch:
                if job.expired(now):
                    job.emit(("error", 504, "the request timed out while queued"))
                else:
                    live.append(job)
            if live:
                try:
                    self._decode(live)
                except Exception as error:  # a bug or an out-of-memory must not take the server down
                    logger.exception("batch of %d failed", len(live))
                    for job in live:
                        job.emit(("error", 500, f"generation failed: {type(error).__name__}: {error}"))

    def _decode(self, jobs: list[Job]) -> None:
        served, tokenizer = self.served, self.served.tokenizer
        started = time.monotonic()
        input_ids, attention_mask = left_pad([j.prompt_ids for j in jobs], served.pad_token_id)
        preferences = [j.preference for j in jobs]
        distinct = {tuple(np.round(p, 12)) for p in preferences if p is not None}
        self.metrics.record_batch(len(jobs), mixed=len(distinct) > 1)

        def on_token(row: int, tokens: list[int]) -> bool:
            job = jobs[row]
            if job.expired(time.monotonic()):
                return True
            if not job.stream and not job.stop:
                return False  # nothing to watch for until the answer is complete
            text, stopped = visible_text(tokenizer.decode(tokens, skip_special_tokens=True), job.stop, job.strip,
                                         final=False)
            job.send_visible(text)
            return stopped

        device = served.device
        budgets = [j.max_tokens for j in jobs]
        tokens = decode(served.step(preferences, max(budgets)), input_ids.to(device), attention_mask.to(device),
                        max_new_tokens=budgets, eos_token_ids=served.eos_token_ids,
                        pad_token_id=served.pad_token_id, temperature=[j.temperature for j in jobs],
                        top_p=[j.top_p for j in jobs], top_k=served.top_k, seeds=[j.seed for j in jobs],
                        on_token=on_token)
        generated = sum(len(t) for t in tokens)
        self.metrics.record_tokens(generated, time.monotonic() - started)
        now = time.monotonic()
        for job, ids in zip(jobs, tokens):
            if job.cancelled.is_set():
                continue
            if now > job.deadline:
                job.emit(("error", 504, "the request timed out while generating"))
                continue
            text, stopped = visible_text(tokenizer.decode(ids, skip_special_tokens=True), job.stop, job.strip,
                                         final=True)
            job.send_visible(text)
            reason = "stop" if stopped or len(ids) < job.max_tokens else "length"
            job.emit(("done", text, reason, len(ids)))


def async_emitter(loop: asyncio.AbstractEventLoop, events: asyncio.Queue, index: int = 0) -> Callable[[tuple], None]:
    """A :attr:`Job.emit` that hands ``(index, event)`` from the worker thread to a request's coroutine (a request
    with several prompts has one job per prompt, all feeding one queue)."""

    def emit(event: tuple) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, (index, event))
        except RuntimeError:  # the event loop has closed: the server is gone, nobody is waiting
            pass

    return emit

