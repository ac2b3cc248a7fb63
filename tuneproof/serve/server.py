"""Run the app under uvicorn: refuse unsafe bindings, JSON logs, graceful shutdown on SIGTERM.

On SIGTERM (or Ctrl-C) the guard starts refusing new model requests (503, ``Connection: close``),
uvicorn stops accepting connections, requests in flight finish (up to ``graceful_timeout_s``), then
the batcher, the model worker and the capture writer are closed in that order.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from tuneproof.serve.auth import ApiKeys
from tuneproof.serve.settings import ServeConfigError, ServeSettings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_binding(host: str, keys: ApiKeys | None) -> None:
    if not is_loopback(host) and not keys:
        raise ServeConfigError(
            f"binding to {host} exposes the model beyond this machine: give API keys with --api-keys-env "
            "or --api-keys-file (or bind to 127.0.0.1)"
        )


class _GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.state.guard.draining = True
        super().handle_exit(sig, frame)


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("tuneproof.access")
    access.handlers[:] = [handler]
    access.setLevel(logging.INFO)
    access.propagate = False
    logging.getLogger("tuneproof.serve").setLevel(logging.INFO)


def serve(
    run_dir: Path,
    host: str,
    port: int,
    settings: ServeSettings,
    keys: ApiKeys | None,
    graceful_timeout_s: int = 30,
    drift_window: int | None = None,
) -> None:
    from tuneproof.monitor.live import live_drift_observers
    from tuneproof.serve.app import create_app

    check_binding(host, keys)
    configure_logging()
    # /metrics carries tuneproof_drift_* gauges whenever the run stored a monitoring reference.
    app = create_app(run_dir, settings, keys, observers=live_drift_observers(run_dir, drift_window))
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # the guard writes one JSON line per request instead
        timeout_graceful_shutdown=graceful_timeout_s,
        log_level="info",
    )
    _GracefulServer(config, app).run()
