"""Dynamic batching: concurrent requests are merged into one model call, then split back.

A request waits at most ``window_ms`` after the oldest waiting request for others to join; a merged
batch is capped by texts and by padded tokens, counted the way the length-sorted inference batcher
(``tuneproof.train.features.inference_batches``, used by every task's ``predict``) will pad it. While
the model is busy, new requests pile up and the next batch takes them all at once, which is what makes
throughput grow with load instead of serialising requests.

The model runs on one worker thread (``ModelWorker``) shared with chat generation, so requests never
contend for the cores. A request whose client went away, or whose queue deadline passed, is dropped
before its batch is formed: its work never runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from tuneproof.errors import DataValidationError, PersonalDataFound
from tuneproof.serve.metrics import ServeMetrics
from tuneproof.serve.settings import Batching
from tuneproof.train.features import inference_batches

log = logging.getLogger("tuneproof.serve")
T = TypeVar("T")


class QueueDeadlineExceeded(Exception):
    """The request was still waiting for the model when its queue deadline passed."""


class ModelWorker:
    """One thread that runs every model call, in submission order."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tuneproof-model"
        )

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        return self._pool.submit(fn)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# Errors about one request's own inputs (a `fail` PII policy, an image corrupt past its header):
# when a merged batch raises one, each request is run alone so the others are still answered.
PER_REQUEST_ERRORS = (PersonalDataFound, DataValidationError)


@dataclass
class Pending:
    texts: list[Any]  # the inputs: texts, or ImageInput for image models
    lengths: list[int]
    deadline: float  # monotonic time by which the model must have started on it
    future: asyncio.Future[list[dict[str, Any]]]
    enqueued: float = field(default_factory=time.monotonic)
    started: bool = False
    request_id: str = ""

    def cancel(self) -> None:
        if not self.future.done():
            self.future.cancel()


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    arr = np.asarray(lengths)
    return int(sum(len(idx) * int(arr[idx].max()) for idx in inference_batches(arr, batch_size)))


class DynamicBatcher:
    def __init__(
        self,
        predict: Callable[[list[Any]], list[dict[str, Any]]],
        worker: ModelWorker,
        spec: Batching,
        metrics: ServeMetrics,
        on_result: Callable[[Pending, list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.predict, self.worker, self.spec, self.metrics = predict, worker, spec, metrics
        self.on_result = on_result
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._carry: Pending | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="tuneproof-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def submit(
        self, texts: list[Any], lengths: list[int], deadline_s: float, request_id: str = ""
    ) -> Pending:
        loop = asyncio.get_running_loop()
        item = Pending(
            texts, lengths, time.monotonic() + deadline_s, loop.create_future(), request_id=request_id
        )
        self._queue.put_nowait(item)
        self.metrics.queue_depth.inc()
        return item

    # -- the loop --------------------------------------------------------------------------------
    async def _next(self, timeout: float | None) -> Pending | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        try:
            if timeout is None:
                item = await self._queue.get()
            elif timeout <= 0:
                item = self._queue.get_nowait()
            else:
                item = await asyncio.wait_for(self._queue.get(), timeout)
        except (TimeoutError, asyncio.QueueEmpty):
            return None
        self.metrics.queue_depth.dec()
        return item

    def _alive(self, item: Pending) -> bool:
        if item.future.done():  # the client went away or timed out while it waited
            self.metrics.cancelled.labels(reason="client_gone").inc()
            return False
        if time.monotonic() > item.deadline:
            item.future.set_exception(QueueDeadlineExceeded())
            self.metrics.cancelled.labels(reason="queue_deadline").inc()
            return False
        return True

    async def _gather(self) -> list[Pending]:
        first = await self._next(None)
        assert first is not None
        group = [first] if self._alive(first) else []
        window_end = first.enqueued + self.spec.window_ms / 1000
        texts = len(first.texts)
        lengths = list(first.lengths)
        while texts < self.spec.max_texts:
            item = await self._next(window_end - time.monotonic())
            if item is None:
                break
            if not self._alive(item):
                continue
            grown = lengths + item.lengths
            if group and (
                texts + len(item.texts) > self.spec.max_texts
                or padded_tokens(grown, self.spec.model_batch_size) > self.spec.max_padded_tokens
            ):
                self._carry = item  # first of the next batch
                break
            group.append(item)
            texts, lengths = texts + len(item.texts), grown
        return group

    async def _loop(self) -> None:
        while True:
            group = await self._gather()
            group = [g for g in group if not g.future.done()]
            if not group:
                continue
            for g in group:
                g.started = True
            merged = [t for g in group for t in g.texts]
            self.metrics.batch_texts.observe(len(merged))
            self.metrics.batch_requests.observe(len(group))
            t0 = time.perf_counter()
            try:
                results = await asyncio.wrap_future(
                    self.worker.submit(functools.partial(self._run, merged, group))
                )
            except Exception as exc:  # every request of the batch learns why
                log.exception("model batch failed")
                for g in group:
                    if not g.future.done():
                        g.future.set_exception(exc)
                continue
            finally:
                self.metrics.batch_duration.observe(time.perf_counter() - t0)
            for g, res in zip(group, results, strict=True):
                if isinstance(res, BaseException):
                    if not g.future.done():
                        g.future.set_exception(res)
                    continue
                if not g.future.done():
                    g.future.set_result(res)
                if self.on_result is not None:
                    self.on_result(g, res)

    def _run(self, merged: list[Any], group: list[Pending]) -> list[list[dict[str, Any]] | BaseException]:
        """On the worker: one call for the merged texts, split back per request. A `fail` PII policy
        on one request's texts (or a bad image) must not fail the others, so then each request is
        run alone."""
        try:
            flat = self.predict(merged)
        except PER_REQUEST_ERRORS:
            out: list[list[dict[str, Any]] | BaseException] = []
            for g in group:
                try:
                    out.append(self.predict(g.texts))
                except PER_REQUEST_ERRORS as exc:
                    out.append(exc)
            return out
        if len(flat) != len(merged):
            raise RuntimeError(f"the model returned {len(flat)} predictions for {len(merged)} texts")
        split: list[list[dict[str, Any]] | BaseException] = []
        start = 0
        for g in group:
            split.append(flat[start : start + len(g.texts)])
            start += len(g.texts)
        return split
