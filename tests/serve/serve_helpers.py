"""Servers on 127.0.0.1 for the serve tests: started in a thread, stopped (bounded) on exit.

Imported by module name from the serve tests (not from ``conftest``: several test folders have a
conftest.py, and ``from conftest import`` would pick whichever was imported first).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(app: Any, timeout: float = 60.0) -> Iterator[str]:
    """The app under a real uvicorn server on 127.0.0.1 in a thread; stopped (bounded) on exit."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        assert thread.is_alive() and time.monotonic() - t0 < timeout, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "server did not stop"


def wait_ready(base: str, timeout: float = 60.0) -> None:
    import httpx

    t0 = time.monotonic()
    while httpx.get(f"{base}/ready").status_code != 200:
        assert time.monotonic() - t0 < timeout, "never ready"
        time.sleep(0.05)


class GatedPredictor:
    """A real predictor whose model calls wait for the test to open a gate: a slow model on demand,
    so back-pressure and cancellation are tested without timing races. Records every call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.task, self.model, self.tokenizer, self.info = (
            inner.task,
            inner.model,
            inner.tokenizer,
            inner.info,
        )
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        self.calls.append(list(texts))
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.inner.predict(texts)
