"""The plain server of the serving benchmark: FastAPI + transformers `pipeline("text-classification")`.

    python -m benchmarks.serve_plain <run>/model --port 8001

What a newcomer writes from the FastAPI and transformers tutorials, on the same packaged model folder
tuneproof serves: the pipeline with its defaults (fp32, batch_size=1 inside a call), a blocking `def`
route (FastAPI runs it on its thread pool, so concurrent requests run the model concurrently), no
batching across requests, no limits, no auth, uvicorn's defaults. Nothing here is tuned on purpose:
it is the baseline the issue's target is stated against.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel


class Texts(BaseModel):
    texts: list[str]


def create_plain_app(model_dir: Path) -> FastAPI:
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from transformers import pipeline

        state["clf"] = pipeline("text-classification", model=str(model_dir))
        yield

    app = FastAPI(title="plain pipeline server", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: Texts) -> dict[str, Any]:
        return {"predictions": state["clf"](body.texts)}

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    args = ap.parse_args(argv)
    uvicorn.run(create_plain_app(args.model_dir), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
