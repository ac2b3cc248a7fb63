"""Send training metrics to TensorBoard (event files in the run folder) and to MLflow when asked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tuneproof.protocol.schema import Protocol


class Trackers:
    def __init__(self, protocol: Protocol, run_dir: Path, enabled: bool = True) -> None:
        self.status: dict[str, str] = {}
        self._tb: Any = None
        self._mlflow: Any = None
        if not enabled:
            return
        if protocol.tracking.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # Flushed every few seconds (the default is 120 s) so `tuneproof ui` draws live curves.
            self._tb = SummaryWriter(log_dir=str(run_dir / "training" / "tensorboard"), flush_secs=5)
            self.status["tensorboard"] = "training/tensorboard"
        if protocol.tracking.mlflow:
            try:
                import mlflow
            except ImportError:
                # Asked for but absent: say so in the manifest and the terminal, and carry on.
                self.status["mlflow"] = "requested, but mlflow is not installed: nothing was logged"
                print(f"[train] warning: {self.status['mlflow']}", file=sys.stderr, flush=True)
                return
            mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
            mlflow.set_experiment(protocol.name)
            mlflow.start_run(run_name=run_dir.name)
            params = protocol.train.model_dump(mode="json")
            mlflow.log_params({f"train.{k}": v for k, v in params.items()})
            self._mlflow = mlflow
            self.status["mlflow"] = "mlruns"

    def log(self, entry: dict[str, Any]) -> None:
        step = int(entry["step"])
        for key, value in entry.items():
            if key in ("step", "epoch") or not isinstance(value, int | float):
                continue
            name = key.replace("eval_", "validation/") if key.startswith("eval_") else f"train/{key}"
            if self._tb is not None:
                self._tb.add_scalar(name, value, step)
            if self._mlflow is not None:
                self._mlflow.log_metric(name.replace("/", "_"), float(value), step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._mlflow is not None:
            self._mlflow.end_run()
