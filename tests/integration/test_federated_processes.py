"""A federation as real Flower processes on loopback: SuperLink, one SuperNode per site, `flwr run`.

Needs an interpreter with flwr (the serving stack's pins conflict with flwr's, so it may be another
environment): $TUNEPROOF_FLOWER_PYTHON, or this one if it has flwr; skipped otherwise.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from federated_helpers import SITES, files_under, flower_python, leaked, write_federation

from tuneproof.federated.launch import LocalFederation, site_dirs_for

pytestmark = pytest.mark.integration

PYTHON = flower_python()
needs_flower = pytest.mark.skipif(
    PYTHON is None, reason="no interpreter with flwr (set TUNEPROOF_FLOWER_PYTHON)"
)


def _federation(protocol: Path, root: Path) -> LocalFederation:
    assert PYTHON is not None
    return LocalFederation(protocol, root / "server", site_dirs_for(protocol, root), python=PYTHON)


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _status(root: Path, site: str) -> dict[str, object]:
    path = root / "sites" / site / "work" / "status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@needs_flower
def test_three_sites_kill_one_mid_round_then_interrupt_and_resume(tmp_path: Path, tiny_bert: Path) -> None:
    protocol, rows = write_federation(
        tmp_path, tiny_bert, rounds=3, extra="  min_sites: 2\n  beats_site_alone: {metric: accuracy}\n"
    )
    fed = _federation(protocol, tmp_path)
    try:
        fed.start()
        fed.submit()
        # east dies while it trains round 2: the round must go on with the two others (min_sites 2).
        training = {"round": 2, "phase": "training"}
        _wait_for(lambda: training.items() <= _status(tmp_path, "east").items(), 600, "east to start round 2")
        fed.kill_site("east")
        ckpt = tmp_path / "server" / "checkpoints" / "round-0002" / "checkpoint.json"
        _wait_for(ckpt.exists, 600, "round 2's checkpoint")
        state = json.loads((tmp_path / "server" / "federation.json").read_text())
        assert state["status"] == "running"
    finally:
        fed.stop()  # the whole federation is killed after round 2: an interruption
    second = state["rounds"][1]
    assert second["round"] == 2 and second["status"] == "aggregated"
    assert "east" in second["sampled"] and second["missing"] == ["east"]
    assert second["answered"] == ["north", "south"]
    assert list(second["errors"]) == ["east"]  # Flower's "Node Unavailable" reply, named by site
    assert set(second["contribution"]) == {"north", "south"}
    assert state["rounds"][0]["answered"] == sorted(SITES)

    # Resume: the same run folder, every site back; only round 3 is trained.
    fed = _federation(protocol, tmp_path)
    try:
        fed.start()
        fed.submit()
        final = fed.wait(900)
    finally:
        fed.stop()
    assert final["status"] in ("passed", "rejected"), final.get("error")
    assert final["resumed"][0]["from_round"] == 2
    rounds = final["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert rounds[2]["answered"] == sorted(SITES)
    server = tmp_path / "server"
    metrics = json.loads((server / "metrics.json").read_text())
    assert set(metrics["sites"]) == set(SITES)
    for site in SITES:
        acc = metrics["sites"][site]["accuracy"]
        assert acc["low"] <= acc["value"] <= acc["high"]
        assert metrics["sites"][site]["rows"] == 30
        report = json.loads((server / "sites" / site / "data_report.json").read_text())
        assert report["splits"]["train"]["rows"] == 90 and len(report["splits"]["test"]["sha256"]) == 64
    assert metrics["pooled"]["rows"] == 90
    gates = json.loads((server / "gates.json").read_text())
    assert sum(g["gate"].startswith("accuracy >=") for g in gates) == 3
    # Each site trained its own model alone and scored both on its test rows: paired differences.
    assert sum(g["gate"].startswith("federated - alone accuracy") for g in gates) == 3
    for site in SITES:
        diff = metrics["vs_alone"][site]["accuracy"]
        assert diff["low"] <= diff["diff"] <= diff["high"]
        assert (tmp_path / "sites" / site / "work" / "alone" / "weights.safetensors").exists()
    assert (server / "model" / "model.safetensors").exists()
    manifest = json.loads((server / "manifest.json").read_text())
    assert (
        "metrics.json" in manifest["files"]
        and "checkpoints/round-0003/global.safetensors" in manifest["files"]
        and "report.html" in manifest["files"]
        and "model_card.md" in manifest["files"]
    )
    assert "<svg" in (server / "report.html").read_text()
    from tuneproof.federated.report import verify_federation

    assert verify_federation(server) == {"changed": [], "missing": [], "added": []}

    # No site's rows anywhere but in its own folder: not at another site, not on the server.
    for site in SITES:
        others = [tmp_path / "sites" / s for s in SITES if s != site] + [server]
        files = [f for folder in others for f in files_under(folder)]
        assert files and leaked(rows[site], files) == []
        own = files_under(tmp_path / "sites" / site / "data")
        assert leaked(rows[site], own), "the check must find the rows where they are"
