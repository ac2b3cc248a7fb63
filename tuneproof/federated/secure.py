"""Secure aggregation: one round through Flower 1.42's SecAgg+ (``SecAggPlusWorkflow`` on the
server, ``secaggplus_mod`` on each site), so the server learns only the weighted sum of the sites'
weights, never one site's.

Flower ships SecAgg+ only for its legacy API: the workflow is called as ``workflow(grid, context)``
with a ``LegacyContext`` holding a legacy ``flwr.server.strategy`` strategy, and the mod handles
``train`` messages in the legacy ``FitIns``/``FitRes`` record layout. So a secure round here builds a
fresh ``LegacyContext`` per round whose parameters are the round's global arrays (the checkpointed
ones on resume), runs the workflow's four stages (setup, share keys, collect masked vectors,
unmask), and reads the aggregate back; the round loop, checkpoints and evidence stay the same.

What each site sends: its update quantised, weighted and masked (the mod clears the plain arrays
from the reply), and outside the masked vector its example count (the weight, also in its data
report) and its metrics (local loss, the incoming global model's validation scores).

Precision (SecAgg+ works on integers): each site multiplies its weights by ``n / max_weight``
(``max_weight`` = labels x the largest train split, so the factor is <= 1 even after oversampling),
clips to +-``clipping_range``, and rounds stochastically to a grid of ``2 * clipping_range / 2**22``.
The aggregate is therefore FedAvg of the same updates up to at most ``sites * step / sum(n / max_weight)``
per weight (plus ~1e-6 relative from quantising the factor). A weight outside the clipping range
would be clipped silently by Flower, so a site whose weights reach it refuses to send instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuneproof.federated.checkpoints import Arrays

QUANTIZATION_RANGE = 2**22  # Flower's default: integers in [0, 2**22) per weight
MODULUS_RANGE = 2**32  # Flower's default mask range; sum of up to 1024 sites fits without overflow
NAMES = "array-names"  # fit config: the order of the arrays in the legacy (unnamed) layout
MAX_WEIGHT = "secagg-max-weight"
CLIPPING = "secagg-clipping-range"


def settings(fed: Any, train_rows: list[int], labels: int) -> dict[str, Any]:
    """The SecAgg+ parameters of a round, recorded in the round's evidence."""
    return {
        "protocol": "secagg+",
        # Every sampled site shares its keys with every other (a small federation), and a round
        # survives losing sites as long as min_sites still answer, as without secure aggregation.
        "num_shares": 1.0,
        "reconstruction_threshold": fed.required / fed.per_round,
        "max_weight": float(labels * max(train_rows)),
        "clipping_range": float(fed.secagg_clipping_range),
        "quantization_range": QUANTIZATION_RANGE,
        "modulus_range": MODULUS_RANGE,
    }


def tolerance(sites: int, weights: list[float], cfg: dict[str, Any]) -> float:
    """The largest difference per weight between the SecAgg+ aggregate and exact FedAvg
    (stochastic rounding: under one grid step per site, divided by the sum of the weight factors)."""
    step = 2 * cfg["clipping_range"] / cfg["quantization_range"]
    return float(sites * step / sum(w / cfg["max_weight"] for w in weights))


@dataclass
class _Stage:
    stage: str
    sent: list[int]
    answered: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0


def _value_bytes(value: Any) -> int:
    if isinstance(value, list):
        return sum(_value_bytes(v) for v in value)
    if isinstance(value, str | bytes):
        return len(value)
    return 1 if isinstance(value, bool) else 8  # ints and floats travel as 64 bits


def _content_bytes(content: Any) -> int:
    """A message's payload in bytes. (ConfigRecord.count_bytes in flwr 1.42 raises on the lists of
    keys and masked vectors SecAgg+ sends, so config values are counted here.)"""
    arrays = sum(r.count_bytes() for r in content.array_records.values())
    metrics = sum(r.count_bytes() for r in content.metric_records.values())
    configs = sum(len(k) + _value_bytes(v) for r in content.config_records.values() for k, v in r.items())
    return int(arrays + metrics + configs)


class RecordingGrid:
    """The grid as the workflow sees it, recording each stage's traffic: who was asked, who
    answered, errors and bytes. It is also what the server received, so a test can check that no
    reply carried a site's plain weights."""

    def __init__(self, grid: Any) -> None:
        self.grid = grid
        self.stages: list[_Stage] = []
        self.replies: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)

    def get_node_ids(self) -> Any:
        return self.grid.get_node_ids()

    def send_and_receive(self, messages: Any, timeout: float | None = None) -> Any:
        from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

        messages = list(messages)
        stage = str(messages[0].content.config_records[RECORD_KEY_CONFIGS][Key.STAGE]) if messages else "?"
        record = _Stage(stage, [m.metadata.dst_node_id for m in messages])
        record.bytes_sent = sum(_content_bytes(m.content) for m in messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        sent = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
        for r in replies:
            node = sent.get(r.metadata.reply_to_message_id, r.metadata.src_node_id)
            if r.has_error():
                record.errors[node] = r.error.reason
            else:
                record.answered.append(node)
                record.bytes_received += _content_bytes(r.content)
        self.stages.append(record)
        self.replies += replies
        return replies


def legacy_strategy(fed: Any, config: dict[str, Any]) -> Any:
    """A legacy FedAvg that samples like the Message-API one (FedProx differs only at the sites, by
    the proximal term, so it is FedAvg here with ``proximal-mu`` in the fit config)."""
    from flwr.server.strategy import FedAvg

    fit_config = {**config, **({"proximal-mu": fed.proximal_mu} if fed.strategy == "fedprox" else {})}
    return FedAvg(
        fraction_fit=fed.per_round / len(fed.sites),
        fraction_evaluate=0.0,
        min_fit_clients=fed.per_round,
        min_evaluate_clients=0,
        min_available_clients=fed.required,
        on_fit_config_fn=lambda server_round: {**fit_config, "server-round": server_round},
    )


@dataclass
class SecureRound:
    """What a secure round gives back to the round loop."""

    aggregated: Arrays | None
    sampled: list[int]
    answered: list[int]
    errors: dict[int, str]
    metrics: dict[int, dict[str, float]]
    bytes_sent: int
    bytes_received: int
    stages: list[dict[str, Any]]


def run_round(
    grid: Any, fed: Any, server_round: int, arrays: Arrays, config: dict[str, Any], cfg: dict[str, Any]
) -> SecureRound:
    """One round of SecAgg+ over the live nodes; ``aggregated`` is None when the workflow halted."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.app import ConfigRecord, Context, RecordDict
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey

    names = sorted(arrays)
    recording = RecordingGrid(grid)
    manager = SimpleClientManager()
    for node_id in grid.get_node_ids():
        manager.register(GridClientProxy(node_id=node_id, grid=recording, run_id=0))
    full = {
        **config,
        NAMES: json.dumps(names),
        MAX_WEIGHT: cfg["max_weight"],
        CLIPPING: cfg["clipping_range"],
    }
    base = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(base, strategy=legacy_strategy(fed, full), client_manager=manager)
    from flwr.common import ndarrays_to_parameters

    start = compat.parameters_to_arrayrecord(ndarrays_to_parameters([arrays[n] for n in names]), True)
    context.state.array_records[MAIN_PARAMS_RECORD] = start
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
        {WorkflowKey.CURRENT_ROUND: server_round, WorkflowKey.START_TIME: time.time()}
    )
    workflow = SecAggPlusWorkflow(
        num_shares=cfg["num_shares"],
        reconstruction_threshold=cfg["reconstruction_threshold"],
        max_weight=cfg["max_weight"],
        clipping_range=cfg["clipping_range"],
        quantization_range=cfg["quantization_range"],
        modulus_range=cfg["modulus_range"],
        timeout=fed.round_timeout,
    )
    workflow(recording, context)
    out = context.state.array_records[MAIN_PARAMS_RECORD]
    aggregated = None
    if out is not start:  # the unmask stage replaced it: the round aggregated
        values = compat.arrayrecord_to_parameters(out, keep_input=True)
        from flwr.common import parameters_to_ndarrays

        new = parameters_to_ndarrays(values)
        # Dequantised in float64; stored in the dtype the weights travel in.
        aggregated = {n: np.asarray(v).astype(arrays[n].dtype) for n, v in zip(names, new, strict=True)}
    stages = recording.stages
    collect = next((s for s in stages if s.stage == "collect_masked_vectors"), None)
    metrics: dict[int, dict[str, float]] = {}
    for reply in recording.replies:
        if reply.has_error() or "fitres.metrics" not in reply.content.config_records:
            continue
        fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
        metrics[reply.metadata.src_node_id] = {
            **{k: float(v) for k, v in fitres.metrics.items()},
            "num-examples": float(fitres.num_examples),
        }
    errors: dict[int, str] = {}
    for s in stages:
        for node, reason in s.errors.items():
            errors.setdefault(node, f"{s.stage}: {reason}")
    return SecureRound(
        aggregated=aggregated,
        sampled=stages[0].sent if stages else [],
        answered=sorted(metrics) if aggregated is not None else (collect.answered if collect else []),
        errors=errors,
        metrics=metrics,
        bytes_sent=sum(s.bytes_sent for s in stages),
        bytes_received=sum(s.bytes_received for s in stages),
        stages=[
            {
                "stage": s.stage,
                "asked": len(s.sent),
                "answered": len(s.answered),
                "bytes_sent": s.bytes_sent,
                "bytes_received": s.bytes_received,
            }
            for s in stages
        ],
    )


def conditional_secaggplus_mod(msg: Any, context: Any, call_next: Any) -> Any:
    """Flower's ``secaggplus_mod`` for the secure rounds' messages only: the same ClientApp answers
    plain Message-API rounds (no SecAgg+ configs in them) untouched."""
    from flwr.client.mod import secaggplus_mod
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def is_legacy_fit(content: Any) -> bool:
    return "fitins.parameters" in content.array_records


def fit_arrays(content: Any) -> tuple[Arrays, dict[str, Any]]:
    """The global arrays and the config of a legacy ``FitIns`` (a secure round's train message)."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.common import parameters_to_ndarrays

    fitins = compat.recorddict_to_fitins(content, keep_input=True)
    names = json.loads(str(fitins.config[NAMES]))
    values = parameters_to_ndarrays(fitins.parameters)
    return dict(zip(names, values, strict=True)), dict(fitins.config)


def fit_reply(new: Arrays, metrics: dict[str, float], config: dict[str, Any]) -> Any:
    """The legacy ``FitRes`` layout ``secaggplus_mod`` masks; refuses weights SecAgg+ would clip."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    names = json.loads(str(config[NAMES]))
    examples = int(metrics["train_examples"])
    clip, max_weight = float(config[CLIPPING]), float(config[MAX_WEIGHT])
    if examples > max_weight:
        raise ValueError(f"secure aggregation: {examples} training examples exceed max_weight {max_weight}")
    # The weight factor n / max_weight is <= 1, so a weight inside +-clip stays inside after it.
    biggest = max(float(np.abs(new[n]).max()) for n in names if new[n].size)
    if biggest > clip:
        raise ValueError(
            f"secure aggregation: a weight of magnitude {biggest:.3g} exceeds the clipping range "
            f"{clip}; SecAgg+ would clip it silently (raise federated.secagg_clipping_range)"
        )
    fitres = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters([np.ascontiguousarray(new[n]) for n in names]),
        num_examples=examples,
        metrics={k: float(v) for k, v in metrics.items()},
    )
    return compat.fitres_to_recorddict(fitres, keep_input=False)
