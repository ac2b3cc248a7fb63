"""Secure aggregation (SecAgg+) of a round, with the real ClientApp (its secaggplus mod) answering the
server's messages in this process: the aggregate is FedAvg of the sites' updates within SecAgg+'s
quantisation bound, no reply the server received holds a site's plain weights, and a site whose
weights SecAgg+ would clip refuses, the round going on without it (Flower's dropout recovery).
Needs flwr importable (the Flower env: tests/integration/test_federated_rounds_in_flower_env.py
runs this file there); skipped otherwise."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from federated_helpers import write_federation

from tuneproof.errors import FederationFailed

flwr = pytest.importorskip("flwr")

from flwr.app import Context, Error, Message, RecordDict  # noqa: E402
from flwr.common import bytes_to_ndarray  # noqa: E402
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key  # noqa: E402

import tuneproof.federated.flower_app as flower_app  # noqa: E402
import tuneproof.federated.site as site_module  # noqa: E402
from tuneproof.federated import secure  # noqa: E402
from tuneproof.federated.server import Federation  # noqa: E402

NODES = {11: "north", 22: "south", 33: "east"}
EXAMPLES = {"north": 90, "south": 60, "east": 75}
rng = np.random.default_rng(0)
START = {
    "head.weight": rng.normal(0, 0.5, (2, 16)).astype(np.float32),
    "lora.A": rng.normal(0, 0.1, (4, 8)).astype(np.float32),
}
DELTAS = {s: {k: rng.normal(0, 0.2, v.shape).astype(np.float32) for k, v in START.items()} for s in EXAMPLES}


@pytest.fixture(autouse=True)
def _run_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


@dataclass
class _Site:
    name: str
    work_dir: Path


@pytest.fixture
def sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The ClientApp's site and its local training replaced by fixed updates (start + delta)."""
    trained: dict[str, Any] = {"blow_up": set()}

    def fake_site(context: Context) -> _Site:
        name = NODES[context.node_id]
        return _Site(name, tmp_path / "sites" / name)

    def fake_round(site: _Site, arrays: Any, server_round: int, config: Any) -> Any:
        new = {k: arrays[k] + DELTAS[site.name][k] for k in arrays}
        if site.name in trained["blow_up"]:
            new["head.weight"] = new["head.weight"] + 100.0
        trained[site.name] = new
        return new, {"train_examples": float(EXAMPLES[site.name]), "train_loss": 0.5, "train_steps": 3.0}

    monkeypatch.setattr(flower_app, "_site", fake_site)
    monkeypatch.setattr(site_module, "local_round", fake_round)
    return trained


class _LoopbackGrid:
    """Delivers each message to the node's ClientApp (mods included) with that node's own Context,
    which keeps the mod's SecAgg+ state between stages as a SuperNode does; keeps every reply."""

    def __init__(self) -> None:
        self.contexts = {
            n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={}) for n in NODES
        }
        self.received: list[Message] = []
        self.count = 0

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Any, timeout: float | None = None) -> list[Message]:
        replies = []
        for m in messages:
            self.count += 1
            m.metadata.__dict__["_message_id"] = f"m{self.count}"
            # Each node gets its own copy, as over the wire (the workflow shares one content object
            # between nodes and the mod edits what it receives).
            delivered = Message(
                copy.deepcopy(m.content),
                dst_node_id=m.metadata.dst_node_id,
                message_type=m.metadata.message_type,
                group_id=m.metadata.group_id,
            )
            delivered.metadata.__dict__["_message_id"] = m.metadata.message_id
            try:
                reply = flower_app.client_app(delivered, self.contexts[m.metadata.dst_node_id])
            except Exception as exc:  # what a SuperNode sends back when its ClientApp raises
                reply = Message(Error(code=1, reason=str(exc)), reply_to=delivered)
            replies.append(reply)
        self.received += replies
        return replies


def _federation(tmp_path: Path, tiny_bert: Path, extra: str) -> Federation:
    protocol, _ = write_federation(
        tmp_path, tiny_bert, rounds=1, extra="  secure_aggregation: true\n" + extra
    )
    fed = Federation(protocol, tmp_path / "server")
    fed.state["sites"] = {
        s: {"rows": {"train": n, "validation": 20, "test": 20}} for s, n in EXAMPLES.items()
    }
    return fed


def _fedavg(sites: list[str]) -> dict[str, np.ndarray]:
    total = sum(EXAMPLES[s] for s in sites)
    return {k: sum(EXAMPLES[s] * (START[k] + DELTAS[s][k]) for s in sites) / total for k in START}


def test_secure_round_is_fedavg_within_the_quantisation_bound_and_hides_each_update(
    tmp_path: Path, tiny_bert: Path, sites: dict[str, Any]
) -> None:
    fed = _federation(tmp_path, tiny_bert, "")
    grid = _LoopbackGrid()
    new = fed.secure_round(grid, 1, START, NODES)

    entry = json.loads((tmp_path / "server" / "federation.json").read_text())["rounds"][0]
    cfg = entry["secure_aggregation"]
    assert cfg["protocol"] == "secagg+" and cfg["max_weight"] == 2 * 90  # labels x largest train split
    assert [s["stage"] for s in cfg["stages"]] == ["setup", "share_keys", "collect_masked_vectors", "unmask"]
    tol = secure.tolerance(3, list(map(float, EXAMPLES.values())), cfg)
    assert tol == pytest.approx(3 * 16 / 2**22 / (225 / 180))  # 9.2e-6
    exact = _fedavg(list(EXAMPLES))
    worst = max(float(np.abs(new[k] - exact[k]).max()) for k in START)
    assert worst <= tol
    assert worst > 0  # quantised: the aggregate did go through SecAgg+'s integers
    assert all(new[k].dtype == np.float32 for k in new)

    # Per-site metrics travel outside the masked vector; the weights of the mean are the counts.
    assert entry["answered"] == ["east", "north", "south"] and entry["status"] == "aggregated"
    assert entry["sites"]["north"]["train_loss"] == 0.5
    assert entry["contribution"]["north"] == pytest.approx(90 / 225)
    assert (tmp_path / "server" / "checkpoints" / "round-0001" / "checkpoint.json").exists()

    # What the server received: no plain weights, and masked vectors that decode to noise.
    for reply in grid.received:
        assert all(len(r) == 0 for r in reply.content.array_records.values())
    masked = [
        r.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
        for r in grid.received
        if Key.MASKED_PARAMETERS in r.content.config_records.get(RECORD_KEY_CONFIGS, {})
    ]
    assert len(masked) == 3
    step = 2 * cfg["clipping_range"] / cfg["quantization_range"]
    for vectors in masked:
        head = bytes_to_ndarray(vectors[1]).astype(np.float64) * step - cfg["clipping_range"]
        for s in EXAMPLES:  # as if unmasked: nowhere near any site's weighted update
            weighted = sites[s]["head.weight"] * EXAMPLES[s] / cfg["max_weight"]
            assert float(np.abs(head - weighted).mean()) > 100 * step


def test_a_site_whose_weights_would_be_clipped_refuses_and_the_round_goes_on_without_it(
    tmp_path: Path, tiny_bert: Path, sites: dict[str, Any]
) -> None:
    sites["blow_up"].add("east")
    fed = _federation(tmp_path, tiny_bert, "  min_sites: 2\n")
    new = fed.secure_round(_LoopbackGrid(), 1, START, NODES)
    entry = json.loads((tmp_path / "server" / "federation.json").read_text())["rounds"][0]
    assert entry["answered"] == ["north", "south"] and entry["missing"] == ["east"]
    assert "exceeds the clipping range" in entry["errors"]["east"]
    # SecAgg+ removed the masks east had agreed with the others: FedAvg of the two that answered.
    tol = secure.tolerance(2, [90.0, 60.0], entry["secure_aggregation"])
    exact = _fedavg(["north", "south"])
    assert max(float(np.abs(new[k] - exact[k]).max()) for k in START) <= tol


def test_a_secure_round_needing_every_site_fails_cleanly_when_one_refuses(
    tmp_path: Path, tiny_bert: Path, sites: dict[str, Any]
) -> None:
    sites["blow_up"].add("east")
    fed = _federation(tmp_path, tiny_bert, "")
    with pytest.raises(FederationFailed, match=r"round 1: .*collect_masked_vectors stage \(2 of 3") as err:
        fed.secure_round(_LoopbackGrid(), 1, START, NODES)
    assert "exceeds the clipping range" in str(err.value)
    state = json.loads((tmp_path / "server" / "federation.json").read_text())
    assert state["rounds"][0]["status"] == "failed"
    assert not (tmp_path / "server" / "checkpoints").exists()
