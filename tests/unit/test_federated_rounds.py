"""The server's round loop against a stand-in grid: a round with too few answers fails cleanly
(no checkpoint, the federation marked failed, the lost site named) and one with enough goes on.
Needs flwr importable (the Flower env: TUNEPROOF_FLOWER_PYTHON); skipped otherwise."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from federated_helpers import write_federation

from tuneproof.errors import FederationFailed

flwr = pytest.importorskip("flwr")

from flwr.app import ArrayRecord, MetricRecord, RecordDict  # noqa: E402

from tuneproof.federated.server import Federation, make_strategy, to_record  # noqa: E402
from tuneproof.federated.site import confusion_replicates  # noqa: E402


@dataclass
class _Meta:
    src_node_id: int
    reply_to_message_id: str


@dataclass
class _Error:
    reason: str


@dataclass
class _Reply:
    metadata: _Meta
    content: Any = None
    error: _Error | None = None

    def has_error(self) -> bool:
        return self.error is not None


@dataclass
class _Grid:
    """Answers each train message as its node would: new weights, or Flower's error for a lost node."""

    lost: set[int]
    nodes: list[int] = field(default_factory=lambda: [11, 22, 33])

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def send_and_receive(self, messages: Any, timeout: float | None = None) -> list[_Reply]:
        replies = []
        for i, m in enumerate(messages):
            m.metadata.__dict__["_message_id"] = f"m{i}"  # what the real grid stamps when it pushes
            meta = _Meta(m.metadata.dst_node_id, f"m{i}")
            if m.metadata.dst_node_id in self.lost:
                replies.append(_Reply(_Meta(0, f"m{i}"), error=_Error("Node Unavailable")))
                continue
            arrays = {k: v.numpy() + 1.0 for k, v in m.content["arrays"].items()}
            metrics = MetricRecord({"num-examples": 10, "train_loss": 0.5})
            replies.append(_Reply(meta, RecordDict({"arrays": to_record(arrays), "metrics": metrics})))
        return replies


@pytest.fixture(autouse=True)
def _run_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    # Messages take their run id from the process's task identity, which a real ServerApp sets.
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def _federation(tmp_path: Path, tiny_bert: Path, extra: str) -> Federation:
    protocol, _ = write_federation(tmp_path, tiny_bert, rounds=2, extra=extra)
    return Federation(protocol, tmp_path / "server")


NODES = {11: "north", 22: "south", 33: "east"}
START = {"w": np.zeros(3, np.float32)}


def _round(fed: Federation, grid: _Grid, n: int) -> Any:
    from flwr.app import ConfigRecord

    return fed.one_round(grid, make_strategy(fed.fed), n, START, ConfigRecord({}), NODES)


def test_a_round_with_too_few_answers_fails_cleanly(tmp_path: Path, tiny_bert: Path) -> None:
    fed = _federation(tmp_path, tiny_bert, "  min_sites: 3\n")
    with pytest.raises(FederationFailed, match=r"2 of 3 sites answered.*missing east.*needs 3"):
        _round(fed, _Grid(lost={33}), 1)
    state = json.loads((tmp_path / "server" / "federation.json").read_text())
    assert state["rounds"][0]["status"] == "failed" and state["rounds"][0]["errors"] == {
        "east": "Node Unavailable"
    }
    assert not (tmp_path / "server" / "checkpoints").exists()


def test_a_round_goes_on_without_a_lost_site_when_enough_answer(tmp_path: Path, tiny_bert: Path) -> None:
    fed = _federation(tmp_path, tiny_bert, "  min_sites: 2\n")
    new = _round(fed, _Grid(lost={33}), 1)
    assert np.allclose(new["w"], 1.0)  # FedAvg of the two answers, each start + 1
    entry = json.loads((tmp_path / "server" / "federation.json").read_text())["rounds"][0]
    assert entry["answered"] == ["north", "south"] and entry["missing"] == ["east"]
    assert entry["contribution"] == {"north": 0.5, "south": 0.5}
    assert (tmp_path / "server" / "checkpoints" / "round-0001" / "checkpoint.json").exists()
    assert isinstance(to_record(START), ArrayRecord)


@dataclass
class _TestGrid:
    """Answers the test query as each site would: confusions of the global and the site-alone model."""

    asked: list[Any] = field(default_factory=list)

    def get_node_ids(self) -> list[int]:
        return list(NODES)

    def send_and_receive(self, messages: Any, timeout: float | None = None) -> list[_Reply]:
        from flwr.app import Array, ConfigRecord

        replies = []
        for i, m in enumerate(messages):
            self.asked.append(dict(m.content["config"]))
            # 50 rows a site: the global model right on 40, the site's own model on 30 (north: 45).
            alone_right = 45 if NODES[m.metadata.dst_node_id] == "north" else 30
            y = np.repeat([0, 1], 25)
            fed_pred = np.where(np.arange(50) < 10, 1 - y, y)
            alone_pred = np.where(np.arange(50) < 50 - alone_right, 1 - y, y)
            out = {}
            for key, pred in (("", fed_pred), ("alone_", alone_pred)):
                out[f"{key}confusion"] = np.bincount(y * 2 + pred, minlength=4).reshape(2, 2)
                out[f"{key}replicates"] = confusion_replicates(y, pred, 2, 200, seed=i)
            content = RecordDict(
                {
                    "arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in out.items()}),
                    "config": ConfigRecord({"rows": 50}),
                }
            )
            replies.append(_Reply(_Meta(m.metadata.dst_node_id, f"m{i}"), content))
        return replies


def test_the_final_test_asks_for_the_site_alone_models_and_gates_on_them(
    tmp_path: Path, tiny_bert: Path
) -> None:
    fed = _federation(tmp_path, tiny_bert, "  beats_site_alone: {metric: accuracy}\n")
    grid = _TestGrid()
    out = fed.final_test(grid, START, NODES)
    assert all(c["train-alone"] is True for c in grid.asked)
    metrics = json.loads((tmp_path / "server" / "metrics.json").read_text())
    assert metrics["vs_alone"]["south"]["accuracy"]["diff"] == pytest.approx(0.2)
    assert metrics["vs_alone"]["north"]["accuracy"]["diff"] == pytest.approx(-0.1)
    gates = {g["gate"]: g["passed"] for g in json.loads((tmp_path / "server" / "gates.json").read_text())}
    alone = {k.split()[-1]: v for k, v in gates.items() if "alone" in k}
    assert alone == {"north": False, "south": True, "east": True}
    assert out["passed"] is False and fed.state["status"] == "rejected"


def test_the_report_show_and_verify_cover_a_federation_folder(tmp_path: Path, tiny_bert: Path) -> None:
    from typer.testing import CliRunner

    from tuneproof.cli import app
    from tuneproof.federated.report import write_report
    from tuneproof.federated.server import write_manifest

    fed = _federation(tmp_path, tiny_bert, "  min_sites: 2\n  beats_site_alone: {metric: accuracy}\n")
    fed.state["sites"] = {s: {"rows": {"train": 90, "validation": 30, "test": 50}} for s in NODES.values()}
    arrays = _round(fed, _Grid(lost=set()), 1)
    from flwr.app import ConfigRecord

    fed.one_round(_Grid(lost={33}), make_strategy(fed.fed), 2, arrays, ConfigRecord({}), NODES)
    fed.final_test(_TestGrid(), arrays, NODES)
    fed.save()
    run = tmp_path / "server"
    write_report(run, "tiny-federated")
    write_manifest(run)

    html = (run / "report.html").read_text()
    assert "<svg" in html  # the per-round curves
    assert "<td>east</td><td>missing</td>" in html  # round 2 went on without east
    card = (run / "model_card.md").read_text()
    # Round 1 split the weight three ways, round 2 between the two that answered: east's share 1/6.
    assert "| east | 90 / 30 / 50 | 0.167 |" in card
    assert "| north | 90 / 30 / 50 | 0.417 |" in card
    assert "| pooled | 270 / 90 / 150 | 1.000 |" in card
    assert "| south | 90 / 30 / 50 | 0.417 | 0.800" in card and "+0.200 [" in card

    runner = CliRunner()
    shown = runner.invoke(app, ["show", str(run)])
    assert shown.exit_code == 0, shown.output
    assert "[REJECTED]" in shown.output and "rounds aggregated: 2" in shown.output
    assert "FAIL     federated - alone accuracy > 0.0 at site north" in shown.output
    ok = runner.invoke(app, ["verify", str(run)])
    assert ok.exit_code == 0 and "every file matches" in ok.output
    (run / "metrics.json").write_text("{}")
    changed = runner.invoke(app, ["verify", str(run)])
    assert changed.exit_code != 0 and "changed: metrics.json" in changed.output
