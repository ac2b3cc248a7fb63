"""Try a run's model on a typed text, through the same Predictor `predict` and `serve` use.

A pretrained encoder has no trained head for a run's labels, so for the encoder tasks there is no
base-model answer to show beside the model's; the run's report compares the model with its baselines.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_cache: OrderedDict[Path, Any] = OrderedDict()
_CACHED = 2  # models kept loaded: enough to flip between two runs being compared


def predictor_for(run_dir: Path) -> Any:
    from tuneproof.serve.predict import Predictor

    with _lock:
        if run_dir in _cache:
            _cache.move_to_end(run_dir)
            return _cache[run_dir]
        predictor = Predictor.load(run_dir)
        _cache[run_dir] = predictor
        while len(_cache) > _CACHED:
            _cache.popitem(last=False)
        return predictor


def try_text(run_dir: Path, text: str) -> dict[str, Any]:
    """The model's answer to one text, with the run's deployability."""
    predictor = predictor_for(run_dir)
    with _lock:  # one inference at a time: the UI is one person's workbench, not a server
        answer = predictor.predict([text])[0]
    return {"task": predictor.info.task, "model": answer, "deployable": predictor.info.deployable}
