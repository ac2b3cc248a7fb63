"""The HTTP server of a packaged model (FastAPI): one model endpoint for its task, health, readiness
and Prometheus metrics, behind the guard (auth, limits, admission) and the dynamic batcher.

Routes
  GET  /health                liveness: 200 while the process serves, with task and deployability
  GET  /ready                 200 once the model is loaded and warmed; 503 before, and while draining
  GET  /metrics               Prometheus text format
  POST /predict               classification, multilabel, regression, token classification (and
                              seq2seq/dapt generations): {"texts": [...]} -> {"predictions": [...]};
                              image classification: {"images": [base64, ...]} -> {"predictions": [...]}
  POST /predict/upload        image classification only: multipart/form-data, one `files` part per
                              image -> {"predictions": [...]} in upload order
  POST /v1/chat/completions   sft models only: OpenAI-compatible, non-streaming and SSE streaming
  GET  /v1/models             sft models only: the one model, as OpenAI clients list it

Statuses a client must expect from a model route: 200; 401 (no or wrong key); 413 (body over
max_body_bytes); 415 (an image not in an allowed format); 422 (invalid, or a text/message/image
count or size over its limit: the body names the limit); 429 (max_concurrent requests already in
flight; Retry-After); 503 (not started within the queue deadline, or the server is shutting down);
504 (not answered within the request timeout).
"""

# No `from __future__ import annotations`: FastAPI must see the request models built in create_app.

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tuneproof import __version__
from tuneproof.errors import DataValidationError, PersonalDataFound
from tuneproof.serve import chat
from tuneproof.serve.auth import ApiKeys
from tuneproof.serve.batcher import DynamicBatcher, ModelWorker, Pending, QueueDeadlineExceeded
from tuneproof.serve.capture import CaptureWriter
from tuneproof.serve.guard import Guard, GuardState
from tuneproof.serve.image_inputs import ImageInput, ImageRefused, from_base64, warmup_image
from tuneproof.serve.metrics import Observer, ServeMetrics
from tuneproof.serve.schemas import (
    ChatCompletion,
    ErrorResponse,
    chat_request_model,
    image_predict_model,
    limit_of,
    predict_models,
)
from tuneproof.serve.settings import ServeConfigError, ServeSettings

log = logging.getLogger("tuneproof.serve")

CHAT_TASKS = frozenset({"sft"})
IMAGE_TASKS = frozenset({"image_classification"})
MODEL_ROUTES = frozenset({"/predict", "/predict/upload", "/v1/chat/completions", "/v1/models"})
WARMUP_TEXT = "warm up"


class Refused(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


def _error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status, headers=headers)


def _refuse_unservable_images(run_dir: Path, settings: ServeSettings) -> None:
    from tuneproof.evidence import ModelInfo

    info_path = run_dir / "model" / ModelInfo.FILE
    if not info_path.is_file() or ModelInfo.read(info_path).task not in IMAGE_TASKS:
        return  # Predictor.load names what is missing
    if settings.backend != "torch":
        raise ServeConfigError(
            f"{run_dir}: image models are served with --backend torch only (they have no ONNX export)"
        )


def load_predictor(run_dir: Path, settings: ServeSettings) -> Any:
    from tuneproof.serve.predict import Predictor

    _refuse_unservable_images(run_dir, settings)
    predictor = Predictor.load(
        run_dir, batch_size=settings.batching.model_batch_size, backend=settings.backend
    )
    if not predictor.info.deployable and not settings.allow_rejected:
        raise ServeConfigError(
            f"{run_dir}: the run's gates failed (or, for --backend {settings.backend}, its export was not "
            "released), so the model is not deployable; serve it anyway only with "
            "--allow-rejected (every response then carries X-Tuneproof-Deployable: false)"
        )
    return predictor


def _pii_for_capture(run_dir: Path) -> Any:
    from tuneproof.data.pii import PiiSpec
    from tuneproof.protocol import load_protocol

    spec = load_protocol(run_dir / "protocol.source.yaml").protocol.pii
    return spec if spec is not None else PiiSpec()


def create_app(
    run_dir: Path,
    settings: ServeSettings | None = None,
    keys: ApiKeys | None = None,
    observers: Sequence[Observer] = (),
    predictor: Any = None,
) -> FastAPI:
    """The app for one run. ``predictor`` defaults to the run's packaged model (``Predictor.load``);
    ``observers`` see every answered batch and export their ``gauges()`` on /metrics."""
    settings = settings or ServeSettings()
    predictor = predictor if predictor is not None else load_predictor(run_dir, settings)
    task = predictor.info.task
    deployable = predictor.info.deployable
    limits = settings.limits
    metrics = ServeMetrics(observers)
    worker = ModelWorker()
    max_length = predictor.info.max_length
    capture = (
        CaptureWriter(
            settings.capture,
            _pii_for_capture(run_dir),
            metrics,
            task,
            run_dir.name,
            # Luminance is read at the model's input size, as the monitoring reference's test images are.
            image_size=predictor.tokenizer.size if task in IMAGE_TASKS else None,
        )
        if settings.capture is not None
        else None
    )
    observer_pool = ModelWorker()  # observers run off the response path, one batch at a time
    state: dict[str, Any] = {"ready": False}

    def after_batch(route: str, request_id: str, texts: list[str], preds: list[dict[str, Any]]) -> None:
        metrics.observe_predictions(preds)
        if capture is not None:
            capture.submit(route, request_id, texts, preds)
        for obs in observers:
            observer_pool.submit(functools.partial(_observe, obs, texts, preds, metrics))

    def on_result(item: Pending, preds: list[dict[str, Any]]) -> None:
        after_batch("/predict", item.request_id, item.texts, preds)

    def predict_inputs(items: list[Any]) -> list[dict[str, Any]]:
        if task in IMAGE_TASKS:
            return list(predictor.predict_images([i.name for i in items], [i.data for i in items]))
        return list(predictor.predict(items))

    batcher = DynamicBatcher(predict_inputs, worker, settings.batching, metrics, on_result)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        warm: asyncio.Task[None] | None = None
        if settings.warmup:
            warm = asyncio.get_running_loop().create_task(_warm())
        else:
            state["ready"] = True
        try:
            yield
        finally:
            guard_state.draining = True
            if warm is not None:
                warm.cancel()
            await batcher.stop()
            worker.shutdown()
            observer_pool.shutdown()
            if capture is not None:
                capture.close()

    async def _warm() -> None:
        if task in CHAT_TASKS:
            gen = chat.Generation(
                chat.prompt_ids(predictor.tokenizer, [{"role": "user", "content": WARMUP_TEXT}], 10**9) or [],
                2,
                0.0,
                None,
                None,
            )
            await asyncio.wrap_future(
                worker.submit(lambda: chat.generate(predictor.model, predictor.tokenizer, gen))
            )
        elif task in IMAGE_TASKS:
            warm_in = warmup_image(predictor.tokenizer.size)
            await asyncio.wrap_future(worker.submit(lambda: predict_inputs([warm_in])))
        else:
            await asyncio.wrap_future(worker.submit(lambda: predictor.predict([WARMUP_TEXT])))
        state["ready"] = True
        log.info("model warmed up; ready")

    app = FastAPI(
        title=f"tuneproof model ({task})",
        version=__version__,
        lifespan=lifespan,
        description=__doc__,
        responses={
            401: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            415: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            429: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
            504: {"model": ErrorResponse},
        },
    )
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        for e in errors:
            hit = limit_of(e, limits)
            if hit is not None:
                where = ".".join(str(x) for x in e["loc"] if x != "body")
                metrics.refused.labels(reason=hit[0]).inc()
                return _error(
                    422,
                    "limit_exceeded",
                    f"{where}: over the limit {hit[0]}={hit[1]}",
                    limit=hit[0],
                    max=hit[1],
                )
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in errors
        ]
        return JSONResponse(
            {
                "error": {
                    "type": "invalid_request",
                    "message": "the request body is invalid",
                    "detail": detail,
                }
            },
            422,
        )

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return _error(exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(ImageRefused)
    async def _image_refused(request: Request, exc: ImageRefused) -> Response:
        metrics.refused.labels(reason=exc.limit or exc.kind).inc()
        if exc.limit is None:
            return _error(exc.status, exc.kind, exc.message)
        return _error(exc.status, exc.kind, exc.message, limit=exc.limit, max=exc.max)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "task": task, "deployable": deployable, "run": run_dir.name}

    @app.get("/ready", responses={503: {"model": ErrorResponse}})
    async def ready() -> Response:
        if guard_state.draining:
            return _error(503, "shutting_down", "the server is shutting down")
        if not state["ready"]:
            return _error(503, "not_ready", "the model is still warming up")
        return JSONResponse({"ready": True, "task": task})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def _predict_images(items: list[ImageInput], request: Request) -> list[dict[str, Any]]:
        from tuneproof.serve.image_inputs import check

        spec = predictor.task.protocol.images
        sizes = [check(i, limits, spec) for i in items]  # headers only: cheap on the event loop
        metrics.observe_images([len(i.data) for i in items], [w * h for w, h in sizes])
        item = batcher.submit(
            items, [1] * len(items), limits.queue_deadline_s, request.scope["state"]["request_id"]
        )
        return await _await_item(item, request, limits.queue_deadline_s, limits.request_timeout_s, metrics)

    if task in IMAGE_TASKS:
        ImageReq = image_predict_model(limits)
        _, Resp = predict_models(task, limits)

        @app.post("/predict", response_model=Resp)
        async def predict_base64(body: ImageReq, request: Request) -> Any:  # type: ignore[valid-type]
            values: list[str] = list(body.images)  # type: ignore[attr-defined]
            items = [from_base64(i, v) for i, v in enumerate(values)]
            return {"predictions": await _predict_images(items, request)}

        @app.post("/predict/upload", response_model=Resp)
        async def predict_upload(
            request: Request,
            files: list[UploadFile] = File(description="one part per image, answered in upload order"),  # noqa: B008
        ) -> Any:
            if len(files) > limits.max_images:
                raise ImageRefused(
                    422,
                    "limit_exceeded",
                    f"files: {len(files)} images, over the limit max_images={limits.max_images}",
                    "max_images",
                    limits.max_images,
                )
            items = []
            for i, f in enumerate(files):
                # The guard already bounded the whole body; read one byte past the per-image limit
                # so an oversized part is named without holding more of it.
                data = await f.read(limits.max_image_bytes + 1)
                items.append(ImageInput(f.filename or f"files[{i}]", data))
            return {"predictions": await _predict_images(items, request)}

    elif task not in CHAT_TASKS:
        Req, Resp = predict_models(task, limits)

        @app.post("/predict", response_model=Resp)
        async def predict(body: Req, request: Request) -> Any:  # type: ignore[valid-type]
            texts: list[str] = list(body.texts)  # type: ignore[attr-defined]
            lengths = [
                len(ids)
                for ids in predictor.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
            ]
            metrics.observe_inputs(texts, lengths)
            item = batcher.submit(
                texts, lengths, limits.queue_deadline_s, request.scope["state"]["request_id"]
            )
            preds = await _await_item(
                item, request, limits.queue_deadline_s, limits.request_timeout_s, metrics
            )
            return {"predictions": preds}

    else:
        ChatReq = chat_request_model(limits)
        max_prompt = max_length

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {
                "object": "list",
                "data": [{"id": run_dir.name, "object": "model", "created": 0, "owned_by": "tuneproof"}],
            }

        @app.post(
            "/v1/chat/completions",
            response_model=ChatCompletion,
            responses={200: {"content": {"text/event-stream": {}}}},
        )
        async def chat_completions(body: ChatReq, request: Request) -> Any:  # type: ignore[valid-type]
            req: Any = body
            messages = [{"role": m.role, "content": m.content} for m in req.messages]
            ids = chat.prompt_ids(predictor.tokenizer, messages, max_prompt)
            if ids is None:
                metrics.refused.labels(reason="max_prompt_tokens").inc()
                raise Refused(
                    422,
                    "limit_exceeded",
                    f"messages: the rendered prompt is over the model's max_length={max_prompt} tokens",
                )
            last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            metrics.observe_inputs([last_user], [len(ids)])
            gen = chat.Generation(
                ids,
                req.max_completion_tokens or req.max_tokens or limits.max_new_tokens,
                float(req.temperature or 0.0),
                req.top_p,
                req.seed,
            )
            cid = f"chatcmpl-{uuid.uuid4().hex}"
            created = int(time.time())
            model_name = req.model
            request_id = request.scope["state"]["request_id"]

            def finished() -> None:
                text = predictor.tokenizer.decode(gen.new_ids, skip_special_tokens=True).strip()
                metrics.generated_tokens.inc(len(gen.new_ids))
                after_batch("/v1/chat/completions", request_id, [last_user], [{"generation": text}])

            if not req.stream:
                fut = worker.submit(lambda: chat.generate(predictor.model, predictor.tokenizer, gen))
                await _await_generation(
                    fut, gen, request, limits.queue_deadline_s, limits.request_timeout_s, metrics
                )
                finished()
                text = predictor.tokenizer.decode(gen.new_ids, skip_special_tokens=True).strip()
                return {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model_name,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "length" if gen.finish_reason == "length" else "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": len(ids),
                        "completion_tokens": len(gen.new_ids),
                        "total_tokens": len(ids) + len(gen.new_ids),
                    },
                }
            streamer = chat.async_streamer(predictor.tokenizer)
            fut = worker.submit(lambda: chat.generate(predictor.model, predictor.tokenizer, gen, streamer))
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(
                _sse(
                    gen,
                    fut,
                    streamer,
                    request,
                    cid,
                    created,
                    model_name,
                    include_usage,
                    limits,
                    metrics,
                    finished,
                ),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )

    known = frozenset(r.path for r in app.routes if hasattr(r, "path"))
    guard_state = GuardState(
        keys=keys if keys else None,
        metrics=metrics,
        max_body_bytes=limits.max_body_bytes,
        max_concurrent=limits.max_concurrent,
        model_routes=MODEL_ROUTES & known,
        known_routes=known,
        deployable=deployable,
    )
    app.state.guard = guard_state
    app.add_middleware(Guard, state=guard_state)
    return app


def _observe(obs: Observer, texts: list[str], preds: list[dict[str, Any]], metrics: ServeMetrics) -> None:
    try:
        obs.observe(texts, preds)
    except Exception:  # a broken observer must not break serving
        log.exception("observer %r failed in observe()", obs)
        metrics.observer_errors.labels(stage="observe").inc()


async def _disconnect(request: Request) -> None:
    """Returns when the client goes away (the ASGI server sends http.disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _race(aw: asyncio.Future[Any], request: Request, timeout: float) -> str:
    """'done', 'gone' (client disconnected) or 'timeout'."""
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        done, _ = await asyncio.wait({aw, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if aw in done:
        return "done"
    return "gone" if watcher in done else "timeout"


async def _await_item(
    item: Pending, request: Request, queue_deadline: float, timeout: float, metrics: ServeMetrics
) -> list[dict[str, Any]]:
    t0 = time.monotonic()
    outcome = await _race(item.future, request, queue_deadline)
    if outcome == "timeout" and item.started:
        outcome = await _race(item.future, request, max(0.0, timeout - (time.monotonic() - t0)))
        if outcome == "timeout":
            item.cancel()
            metrics.cancelled.labels(reason="request_timeout").inc()
            raise Refused(504, "request_timeout", f"not answered within request_timeout_s={timeout}")
    if outcome == "timeout":  # still queued at its deadline: it will never start
        item.cancel()
        metrics.cancelled.labels(reason="queue_deadline").inc()
        raise _queue_deadline_refusal(queue_deadline)
    if outcome == "gone":
        item.cancel()  # the batcher drops it if it has not started
        raise asyncio.CancelledError
    try:
        return item.future.result()
    except QueueDeadlineExceeded:
        raise _queue_deadline_refusal(queue_deadline) from None
    except PersonalDataFound as exc:
        raise Refused(422, "personal_data", str(exc)) from None
    except DataValidationError as exc:  # an image that passed its header check but not decoding
        raise Refused(422, "invalid_image", str(exc)) from None


def _queue_deadline_refusal(queue_deadline: float) -> Refused:
    return Refused(
        503, "queue_deadline", f"not started within queue_deadline_s={queue_deadline}", {"retry-after": "1"}
    )


async def _await_generation(
    fut: Any,
    gen: chat.Generation,
    request: Request,
    queue_deadline: float,
    timeout: float,
    metrics: ServeMetrics,
) -> None:
    afut = asyncio.wrap_future(fut)
    t0 = time.monotonic()
    outcome = await _race(afut, request, queue_deadline)
    if outcome == "timeout" and gen.started.is_set():
        outcome = await _race(afut, request, max(0.0, timeout - (time.monotonic() - t0)))
        if outcome == "timeout":
            gen.stop.set()
            metrics.cancelled.labels(reason="request_timeout").inc()
            raise Refused(504, "request_timeout", f"not answered within request_timeout_s={timeout}")
    if outcome == "timeout":
        gen.stop.set()
        fut.cancel()
        metrics.cancelled.labels(reason="queue_deadline").inc()
        raise _queue_deadline_refusal(queue_deadline)
    if outcome == "gone":
        gen.stop.set()
        fut.cancel()
        metrics.cancelled.labels(reason="client_gone").inc()
        raise asyncio.CancelledError
    afut.result()


def _chunk(
    cid: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish: str | None,
    usage: dict[str, int] | None = None,
) -> str:
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
    }
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _sse(
    gen: chat.Generation,
    fut: Any,
    streamer: Any,
    request: Request,
    cid: str,
    created: int,
    model: str,
    include_usage: bool,
    limits: Any,
    metrics: ServeMetrics,
    finished: Any,
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format; stops the generation when the client leaves
    (Starlette cancels this generator on disconnect) or the request times out."""
    deadline = time.monotonic() + limits.request_timeout_s
    try:
        yield _chunk(cid, created, model, {"role": "assistant", "content": ""}, None)
        while True:
            remaining = deadline - time.monotonic()
            try:
                piece = await asyncio.wait_for(chat.next_text(streamer), timeout=max(0.001, remaining))
            except TimeoutError:
                gen.stop.set()
                metrics.cancelled.labels(reason="request_timeout").inc()
                timed_out = {"error": {"type": "request_timeout", "message": "not answered in time"}}
                yield f"data: {json.dumps(timed_out)}\n\n"
                break
            if piece is None:
                break
            if piece:
                yield _chunk(cid, created, model, {"content": piece}, None)
        await asyncio.wrap_future(fut)
        finished()
        yield _chunk(cid, created, model, {}, "length" if gen.finish_reason == "length" else "stop")
        if include_usage:
            n = len(gen.new_ids)
            yield _chunk(
                cid,
                created,
                model,
                {},
                None,
                {
                    "prompt_tokens": len(gen.prompt_ids),
                    "completion_tokens": n,
                    "total_tokens": len(gen.prompt_ids) + n,
                },
            )
        yield "data: [DONE]\n\n"
    finally:
        if not fut.done():  # the client left mid-stream: stop generating at the next token
            gen.stop.set()
            metrics.cancelled.labels(reason="client_gone").inc()
