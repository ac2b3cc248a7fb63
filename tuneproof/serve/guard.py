"""The ASGI layer in front of every route: request ids, JSON access logs, request metrics, the
not-deployable header, and, on model routes, draining, authentication, body size and admission.

It is plain ASGI rather than Starlette's ``BaseHTTPMiddleware`` because it must answer 413 before
the body is parsed (it reads at most ``max_body_bytes + 1`` bytes, then replays them to the app) and
because it sits on every request's hot path.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from tuneproof.serve.auth import ApiKeys
from tuneproof.serve.metrics import ServeMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("tuneproof.access")

NOT_DEPLOYABLE = "model rejected by its acceptance gates: not deployable"


@dataclass
class GuardState:
    keys: ApiKeys | None
    metrics: ServeMetrics
    max_body_bytes: int
    max_concurrent: int
    model_routes: frozenset[str]
    known_routes: frozenset[str]
    deployable: bool
    draining: bool = False
    admitted: int = field(default=0)


def _error(status: int, kind: str, message: str, **extra: Any) -> bytes:
    return json.dumps({"error": {"type": kind, "message": message, **extra}}).encode()


class Guard:
    def __init__(self, app: ASGIApp, state: GuardState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        st = self.state
        path = scope.get("path", "")
        route = path if path in st.known_routes else "other"
        method = scope.get("method", "GET")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        if len(request_id) > 128 or not request_id.isascii() or not request_id.isprintable():
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        t0 = time.perf_counter()
        status_box = [500]
        bytes_out = [0]

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                extra = [(b"x-request-id", request_id.encode())]
                if not st.deployable:
                    extra += [
                        (b"x-tuneproof-deployable", b"false"),
                        (b"x-tuneproof-warning", NOT_DEPLOYABLE.encode()),
                    ]
                message["headers"] = [*message.get("headers", []), *extra]
            elif message["type"] == "http.response.body":
                bytes_out[0] += len(message.get("body", b""))
            await send(message)

        admitted = False
        try:
            if path in st.model_routes:
                refusal = self._refuse(headers)
                if refusal is not None:
                    status, kind, msg, hdrs = refusal
                    await _respond(send_wrapped, status, _error(status, kind, msg), hdrs)
                    return
                body_or_refusal = await _read_body(receive, st.max_body_bytes, headers)
                if isinstance(body_or_refusal, tuple):
                    await _respond(send_wrapped, *body_or_refusal)
                    return
                if st.admitted >= st.max_concurrent:
                    st.metrics.refused.labels(reason="max_concurrent").inc()
                    await _respond(
                        send_wrapped,
                        429,
                        _error(
                            429,
                            "too_many_requests",
                            f"more than max_concurrent={st.max_concurrent} requests in flight",
                            limit="max_concurrent",
                            max=st.max_concurrent,
                        ),
                        [(b"retry-after", b"1")],
                    )
                    return
                st.admitted += 1
                admitted = True
                st.metrics.in_flight.inc()
                receive = _replay(body_or_refusal, receive)
            await self.app(scope, receive, send_wrapped)
        finally:
            if admitted:
                st.admitted -= 1
                st.metrics.in_flight.dec()
            elapsed = time.perf_counter() - t0
            status = status_box[0]
            st.metrics.requests.labels(route=route, method=method, status=str(status)).inc()
            st.metrics.latency.labels(route=route).observe(elapsed)
            access_log.info(
                json.dumps(
                    {
                        "time": time.time(),
                        "request_id": request_id,
                        "method": method,
                        "path": route,
                        "status": status,
                        "duration_s": round(elapsed, 6),
                        "bytes_out": bytes_out[0],
                        "client": (scope.get("client") or [None])[0],
                    }
                )
            )

    def _refuse(self, headers: dict[str, str]) -> tuple[int, str, str, list[tuple[bytes, bytes]]] | None:
        st = self.state
        if st.draining:
            st.metrics.refused.labels(reason="shutting_down").inc()
            return 503, "shutting_down", "the server is shutting down", [(b"connection", b"close")]
        if st.keys is not None and not st.keys.check(headers.get("authorization")):
            st.metrics.refused.labels(reason="unauthorized").inc()
            return (
                401,
                "unauthorized",
                "a valid API key is required: Authorization: Bearer <key>",
                [(b"www-authenticate", b'Bearer realm="tuneproof"')],
            )
        return None


async def _read_body(
    receive: Receive, limit: int, headers: dict[str, str]
) -> bytes | tuple[int, bytes, list[tuple[bytes, bytes]]]:
    too_large = (
        413,
        _error(
            413,
            "body_too_large",
            f"the request body exceeds max_body_bytes={limit}",
            limit="max_body_bytes",
            max=limit,
        ),
        [(b"connection", b"close")],
    )
    declared = headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return too_large  # refused from the header alone: nothing is read
        except ValueError:
            return 400, _error(400, "bad_request", "invalid Content-Length"), [(b"connection", b"close")]
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return 499, b"", []
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:  # chunked uploads have no Content-Length: stop reading at the limit
            return too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the client's disconnect, if it comes

    return replay


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    if status == 499:  # the client left while sending its body: nobody to answer
        return
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
