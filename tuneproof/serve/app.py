"""HTTP serving of a packaged model with FastAPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from tuneproof import __version__
from tuneproof.serve.predict import Predictor

MAX_BATCH = 1024


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1, max_length=MAX_BATCH)


def create_app(run_dir: Path) -> FastAPI:
    predictor = Predictor.load(run_dir)
    app = FastAPI(title="tuneproof model", version=__version__)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "task": predictor.info.get("task"),
            "deployable": predictor.info.get("deployable"),
        }

    @app.post("/predict")
    def predict(req: PredictRequest) -> dict[str, Any]:
        if any(not t.strip() for t in req.texts):
            raise HTTPException(status_code=422, detail="texts must be non-empty strings")
        return {"predictions": predictor.predict(req.texts)}

    return app
