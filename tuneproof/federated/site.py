"""One site's side of a federation: its own data stage, local training and its own test split.

Everything here runs in the site's client process, on the site's files, in the site's folder.
What it hands back to the server is only what :func:`data_summary`, :func:`local_round` and
:func:`site_test` return: counts, hashes, metrics, bootstrap confusion counts and the trainable
weights; never a row. Each Flower message may run in a fresh process, so the prepared splits are
kept in the site folder rather than in memory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file, save
from torch import nn

from tuneproof.context import RunContext, build_context
from tuneproof.data.prepare import PreparedData, write_splits
from tuneproof.evaluate.bootstrap import bootstrap_indices
from tuneproof.federated.site_protocol import site_protocol
from tuneproof.fsutil import atomic_write_bytes, atomic_write_json
from tuneproof.protocol import load_protocol
from tuneproof.train.fit import apply_method, build_features
from tuneproof.train.loop import LoopConfig, train_loop

Arrays = dict[str, np.ndarray]


@dataclass
class Site:
    """A site's context and its prepared data, prepared once and cached in ``work_dir``."""

    name: str
    ctx: RunContext
    prepared: PreparedData
    work_dir: Path

    @classmethod
    def open(cls, protocol_path: Path, name: str, work_dir: Path) -> Site:
        loaded, _ = site_protocol(load_protocol(protocol_path), name)
        work_dir.mkdir(parents=True, exist_ok=True)
        ctx = build_context(loaded, loaded.base_dir, work_dir / "cache")
        prepared = _prepared(ctx, work_dir / "prepared")
        ctx.task.set_labels(prepared)
        return cls(name, ctx, prepared, work_dir)

    def model(self, arrays: Arrays | None) -> nn.Module:
        """The protocol's model with the global trainable weights loaded (or its seeded start)."""
        torch.manual_seed(self.ctx.protocol.seed)  # the same start on every site and the server
        model = apply_method(self.ctx.task.build_model(self.ctx.ref), self.ctx.protocol, self.ctx.task)
        if arrays is not None:
            load_trainable(model, arrays)
        return model


def _prepared(ctx: RunContext, folder: Path) -> PreparedData:
    report_path = folder / "report.json"
    if report_path.exists():
        stored = json.loads(report_path.read_text())
        splits = {name: pd.read_parquet(folder / f"{name}.parquet") for name in stored["report"]["splits"]}
        return PreparedData(splits, stored["report"], stored["input_hashes"])
    prepared = ctx.prepare()
    write_splits(prepared, folder)
    atomic_write_json(report_path, {"report": prepared.report, "input_hashes": prepared.input_hashes})
    return prepared


def trainable_arrays(model: nn.Module) -> Arrays:
    """What travels: the parameters that train (with LoRA, the adapters and the new head only)."""
    return {n: p.detach().cpu().numpy().copy() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, arrays: Arrays) -> None:
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(arrays) != expected:
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise ValueError(
            f"the global weights do not fit this model (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    with torch.no_grad():
        for name, value in arrays.items():
            params[name].copy_(torch.from_numpy(np.asarray(value)))


def data_summary(site: Site) -> dict[str, Any]:
    """Counts and hashes of the site's data stage: what the server may know about the site's data."""
    report = site.prepared.report
    splits = {
        name: {
            "rows": int(info["rows"]),
            "sha256": info["sha256"],
            "labels": {str(k): int(v) for k, v in site.prepared.splits[name]["label"].value_counts().items()},
        }
        for name, info in report["splits"].items()
    }
    counts = {k: v for k, v in report.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {
        "site": site.name,
        "inputs": dict(site.prepared.input_hashes),
        "splits": splits,
        "counts": counts,
        "labels": list(site.ctx.task.labels),
    }


def _loss_with_proximal(loss_fn: Any, model: nn.Module, start: Arrays, mu: float) -> Any:
    """FedProx: the site's loss plus mu/2 * ||w - w_global||^2 over the weights that travel."""
    anchors = {n: torch.from_numpy(v.copy()) for n, v in start.items()}
    params = [(p, anchors[n]) for n, p in model.named_parameters() if n in anchors]

    def loss(m: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        value, count = loss_fn(m, batch)
        prox = sum(((p - a.to(p.device)) ** 2).sum() for p, a in params)
        # The loop divides the returned sum by the step's count, so the term is scaled to match.
        return value + 0.5 * mu * prox * count, count

    return loss


def local_round(
    site: Site, arrays: Arrays, server_round: int, config: dict[str, Any]
) -> tuple[Arrays, dict[str, float]]:
    """Score the incoming global model on the site's validation split, then train it locally."""
    ctx, protocol = site.ctx, site.ctx.protocol
    fed = protocol_federated(site)
    features = build_features(
        ctx.task, {k: v for k, v in site.prepared.splits.items() if k != "test"}, ctx.tokenizer, ctx.cache_dir
    )
    pad_id = ctx.tokenizer.pad_token_id if ctx.tokenizer.pad_token_id is not None else 0
    model = site.model(arrays)
    val = features.get("validation") or []
    metrics: dict[str, float] = {}
    if val:
        for k, v in ctx.task.validation_metrics(
            model, val, pad_id, protocol.evaluate.batch_size, ctx.precision
        ).items():
            metrics[f"global_val_{k}"] = float(v)
    train_feats = ctx.task.resample(features["train"], protocol.seed + server_round)
    mu = float(config.get("proximal-mu", 0.0))
    metrics.update(
        _train(
            site,
            model,
            train_feats,
            protocol.seed + server_round,
            float(fed.local_epochs or 1),
            fed.local_steps,
            site.work_dir / "rounds" / f"round-{server_round:04d}",
            arrays if mu > 0 else None,
            mu,
        )
    )
    return trainable_arrays(model), metrics


def _train(
    site: Site,
    model: nn.Module,
    train_feats: list[Any],
    seed: int,
    epochs: float,
    max_steps: int | None,
    folder: Path,
    anchor: Arrays | None,
    mu: float,
) -> dict[str, float]:
    """Train ``model`` in place on ``train_feats`` with the protocol's recipe; the loop's figures."""
    ctx, protocol = site.ctx, site.ctx.protocol
    pad_id = ctx.tokenizer.pad_token_id if ctx.tokenizer.pad_token_id is not None else 0
    spec = protocol.train.model_copy(
        update={
            "epochs": epochs,
            "max_steps": max_steps,
            "early_stopping": None,  # a fixed amount of training; the server keeps every round
        }
    )
    shutil.rmtree(folder, ignore_errors=True)  # a retried round starts over, never resumes halfway
    cfg = LoopConfig(
        spec=spec,
        seed=seed,
        checkpoint_dir=folder / "checkpoints",
        lengths=np.array([ctx.task.feature_length(f) for f in train_feats]),
        row_ids=[str(f["row_id"]) for f in train_feats],
        precision=ctx.precision,
    )
    loss_fn = ctx.task.loss_fn(train_feats)
    if anchor is not None and mu > 0:
        loss_fn = _loss_with_proximal(loss_fn, model, anchor, mu)
    result = train_loop(model, train_feats, ctx.task.collate(pad_id), loss_fn, cfg)
    shutil.rmtree(folder, ignore_errors=True)
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    metrics = {"train_steps": float(result.steps), "train_examples": float(len(train_feats))}
    if losses:
        metrics["train_loss"] = float(losses[-1])
    return metrics


def alone_arrays(site: Site) -> Arrays:
    """The site's model trained alone: its own train split, the same recipe, the same total training.

    As many local epochs (or steps) as the whole federation gave the site (rounds x local), from
    the same seeded start. Kept in the site's folder, so a retried test step does not train again.
    """
    path = site.work_dir / "alone" / "weights.safetensors"
    if path.exists():
        return dict(load_file(path))
    ctx, protocol = site.ctx, site.ctx.protocol
    fed = protocol_federated(site)
    features = build_features(
        ctx.task, {k: v for k, v in site.prepared.splits.items() if k != "test"}, ctx.tokenizer, ctx.cache_dir
    )
    model = site.model(None)
    train_feats = ctx.task.resample(features["train"], protocol.seed)
    steps = fed.local_steps * fed.rounds if fed.local_steps is not None else None
    _train(
        site,
        model,
        train_feats,
        protocol.seed,
        float((fed.local_epochs or 1) * fed.rounds),
        steps,
        site.work_dir / "alone" / "train",
        None,
        0.0,
    )
    arrays = trainable_arrays(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(arrays))
    return arrays


def protocol_federated(site: Site) -> Any:
    # The site protocol drops the section (so the data stage sees plain files); read it again.
    fed = load_protocol(site.ctx.loaded.path).protocol.federated
    assert fed is not None  # site_protocol refused protocols without one
    return fed


def confusion_replicates(y: np.ndarray, pred: np.ndarray, k: int, samples: int, seed: int) -> np.ndarray:
    """``[samples, k, k]`` confusion counts of bootstrap resamples of this site's test rows.

    Summed replicate by replicate over sites, they are the replicates of a bootstrap stratified by
    site, so the server gets pooled intervals without seeing one prediction.
    """
    idx = bootstrap_indices(len(y), samples, seed)
    cells = y[idx] * k + pred[idx]
    out = np.zeros((samples, k * k), dtype=np.int64)
    for i in range(samples):
        out[i] = np.bincount(cells[i], minlength=k * k)
    return out.reshape(samples, k, k)


def site_test(site: Site, arrays: Arrays, samples: int, alone: Arrays | None = None) -> dict[str, Any]:
    """The global model on this site's own test split: metrics with intervals, read here, once.

    With ``alone`` (the site's model trained alone), that model is scored on the same rows with the
    same resamples, so the server can take paired differences.
    """
    ctx, protocol = site.ctx, site.ctx.protocol
    test = site.prepared.splits["test"]
    feats = ctx.task.features(test, ctx.tokenizer, ctx.cache_dir)
    pad_id = ctx.tokenizer.pad_token_id if ctx.tokenizer.pad_token_id is not None else 0
    labels = list(ctx.task.labels)
    k = len(labels)
    y = np.array([f["labels"] for f in feats], dtype=np.int64)
    # The site's seed is derived from its name so sites draw independent resamples.
    seed = protocol.seed + int(hashlib.sha256(site.name.encode()).hexdigest()[:8], 16)

    def score(weights: Arrays) -> tuple[np.ndarray, np.ndarray]:
        model = site.model(weights)
        probs = ctx.task.predict(model, feats, pad_id, protocol.evaluate.batch_size, ctx.precision)
        pred = np.asarray(probs).argmax(axis=1).astype(np.int64)
        point = np.bincount(y * k + pred, minlength=k**2).reshape(k, k)
        return point, confusion_replicates(y, pred, k, samples, seed)

    point, reps = score(arrays)
    out = {"site": site.name, "rows": len(y), "labels": labels, "confusion": point, "replicates": reps}
    if alone is not None:
        out["alone_confusion"], out["alone_replicates"] = score(alone)
    return out
