"""Run the workbench under uvicorn, bound like `serve`: loopback by default, keys required elsewhere."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from tuneproof.serve.auth import ApiKeys
from tuneproof.serve.server import check_binding, is_loopback


def serve_ui(project: Path, host: str, port: int, keys: ApiKeys | None) -> None:
    from tuneproof.ui.app import create_ui_app

    check_binding(host, keys)  # the same refusal, and the same keys, as `tuneproof serve`
    allowed = () if is_loopback(host) else (host,)
    app = create_ui_app(project, keys, allowed_hosts=allowed)
    # Runs started here are separate sessions: stopping this server (Ctrl-C) leaves them training.
    uvicorn.run(app, host=host, port=port, log_level="warning")
