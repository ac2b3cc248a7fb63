"""A federation on Flower's simulation engine (`tuneproof federate --simulation`): the same ServerApp
and ClientApp, one virtual SuperNode per site as a Ray actor. Three sites on a tiny BERT, 2 rounds.

- the simulation writes the same evidence as real processes, each virtual node playing its site
  (partition i = the protocol's i-th site) in that site's own folder;
- with `secure_aggregation: true` (SecAgg+), round 1 equals the plain run's round 1 within SecAgg+'s
  quantisation bound (same start, same seeded local training, so the same updates), and the
  evidence says secure aggregation was on;
- real processes on loopback give the simulation's global model within 1e-5 per weight (only the
  order in which FedAvg sums the replies differs) and the same test confusions.

Needs an interpreter with flwr[simulation] (ray): $TUNEPROOF_FLOWER_PYTHON or .venv-flower; skipped
otherwise.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from federated_helpers import SITES, files_under, flower_python, leaked, write_federation
from safetensors.numpy import load_file

from tuneproof.federated import secure
from tuneproof.federated.launch import run_local, simulated_site

pytestmark = pytest.mark.integration

PYTHON = flower_python()
HAS_RAY = PYTHON is not None and subprocess.run([PYTHON, "-c", "import ray"]).returncode == 0
needs_simulation = pytest.mark.skipif(
    not HAS_RAY, reason="no interpreter with flwr[simulation] (set TUNEPROOF_FLOWER_PYTHON)"
)

PER_SITE = 100  # 20 test rows a site: the smallest split the data stage accepts


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> dict[str, Any]:
    """One plain simulated federation; the tests below compare other runs of the same sites with it."""
    root = tmp_path_factory.mktemp("fed-sim")
    protocol, rows = write_federation(root, tiny_bert, rounds=2, n_per_site=PER_SITE)
    assert PYTHON is not None
    state = run_local(protocol, root / "sim", root, python=PYTHON, timeout=600, simulation=True)
    return {"root": root, "protocol": protocol, "rows": rows, "state": state}


def _weights(run: Path, server_round: int) -> dict[str, np.ndarray]:
    return dict(load_file(run / "checkpoints" / f"round-{server_round:04d}" / "global.safetensors"))


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert set(a) == set(b)
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)


def _secure_protocol(federation: dict[str, Any], name: str) -> Path:
    """The fixture's protocol with ``secure_aggregation: true``, written beside it."""
    protocol = federation["root"] / name
    text = federation["protocol"].read_text()
    protocol.write_text(text.replace("  rounds: 2\n", "  rounds: 2\n  secure_aggregation: true\n"))
    return protocol


def test_partition_i_plays_the_protocols_ith_site(tmp_path: Path, tiny_bert: Path) -> None:
    protocol, _ = write_federation(tmp_path, tiny_bert)
    assert simulated_site(protocol, tmp_path, 1, 3) == ("south", tmp_path / "sites" / "south" / "work")
    from tuneproof.errors import FederationFailed

    with pytest.raises(FederationFailed, match="the protocol names 3 sites"):
        simulated_site(protocol, tmp_path, 0, 2)


@needs_simulation
def test_a_simulated_federation_writes_the_evidence_at_each_sites_own_folder(
    federation: dict[str, Any],
) -> None:
    root, state = federation["root"], federation["state"]
    server = root / "sim"
    assert state["status"] in ("passed", "rejected"), state.get("error")
    assert state["engines"] == ["simulation"] and state["secure_aggregation"] is False
    assert [r["round"] for r in state["rounds"]] == [1, 2]
    assert all(r["answered"] == sorted(SITES) and r["status"] == "aggregated" for r in state["rounds"])
    assert all(r["bytes_sent"] > 0 and r["bytes_received"] == r["bytes_sent"] for r in state["rounds"])
    metrics = json.loads((server / "metrics.json").read_text())
    assert set(metrics["sites"]) == set(SITES) and metrics["pooled"]["rows"] == 3 * 20
    for site in SITES:
        acc = metrics["sites"][site]["accuracy"]
        assert acc["low"] <= acc["value"] <= acc["high"]
        # Each site's per-round metrics, sent by the node that played it.
        assert all("train_loss" in r["sites"][site] for r in state["rounds"])
        report = json.loads((server / "sites" / site / "data_report.json").read_text())
        assert report["site"] == site and report["splits"]["train"]["rows"] == 60
        status = json.loads((root / "sites" / site / "work" / "status.json").read_text())
        assert status["site"] == site and status["phase"] == "tested"
    assert (server / "model" / "model.safetensors").exists()
    manifest = json.loads((server / "manifest.json").read_text())
    assert "checkpoints/round-0002/global.safetensors" in manifest["files"]
    assert "report.html" in manifest["files"] and "model_card.md" in manifest["files"]
    from tuneproof.federated.report import verify_federation

    assert verify_federation(server) == {"changed": [], "missing": [], "added": []}
    # Partition i read site i's rows: each site's folder holds its own rows and no other site's.
    rows = federation["rows"]
    for site in SITES:
        prepared = files_under(root / "sites" / site / "work" / "prepared")
        assert leaked(rows[site], prepared), f"{site}'s prepared splits must hold its own rows"
        assert leaked([r for s in SITES if s != site for r in rows[s]], prepared) == []
    assert leaked([r for s in SITES for r in rows[s]], files_under(server)) == []


@needs_simulation
def test_secure_aggregation_equals_plain_fedavg_within_the_quantisation_bound(
    federation: dict[str, Any],
) -> None:
    root = federation["root"]
    protocol = _secure_protocol(federation, "secure.yaml")
    assert PYTHON is not None
    state = run_local(protocol, root / "secure", root, python=PYTHON, timeout=600, simulation=True)
    assert state["status"] in ("passed", "rejected"), state.get("error")
    assert state["secure_aggregation"] is True and state["engines"] == ["simulation"]
    first = state["rounds"][0]
    cfg = first["secure_aggregation"]
    assert cfg["protocol"] == "secagg+" and cfg["max_weight"] == 2 * 60
    assert [s["stage"] for s in cfg["stages"]] == ["setup", "share_keys", "collect_masked_vectors", "unmask"]
    assert all(s["answered"] == 3 for s in cfg["stages"])
    assert first["answered"] == sorted(SITES) and "train_loss" in first["sites"]["north"]
    # Round 1 starts from the same seeded weights in both runs, so the sites send the same updates:
    # the secure aggregate differs from plain FedAvg by SecAgg+'s quantisation only.
    tol = secure.tolerance(3, [m["num-examples"] for m in first["sites"].values()], cfg)
    diff = _max_diff(_weights(root / "secure", 1), _weights(root / "sim", 1))
    assert 0 < diff <= tol, (diff, tol)
    card = (root / "secure" / "model_card.md").read_text()
    assert "Run on: Flower's simulation engine; secure aggregation (SecAgg+)" in card


@needs_simulation
def test_real_processes_give_the_simulations_model(federation: dict[str, Any]) -> None:
    root = federation["root"]
    assert PYTHON is not None
    state = run_local(federation["protocol"], root / "processes", root, python=PYTHON, timeout=900)
    assert state["engines"] == ["processes"]
    for server_round in (1, 2):
        # Same seeds, same data, same single-threaded training; FedAvg adds the replies in the order
        # they arrive, so float32 rounding differs in the last bits (measured 1.6e-6 after round 2).
        assert (
            _max_diff(_weights(root / "processes", server_round), _weights(root / "sim", server_round)) < 1e-5
        )
    sim = json.loads((root / "sim" / "metrics.json").read_text())
    proc = json.loads((root / "processes" / "metrics.json").read_text())
    for site in SITES:
        assert proc["sites"][site]["accuracy"]["value"] == sim["sites"][site]["accuracy"]["value"]
        assert proc["sites"][site]["macro_f1"]["value"] == sim["sites"][site]["macro_f1"]["value"]


@needs_simulation
def test_secure_aggregation_with_real_supernode_processes(federation: dict[str, Any]) -> None:
    """SecAgg+'s four stages with one SuperNode process and one ClientApp process per message (the
    process mode), not Ray actors: round 1 equals the plain simulation's within the quantisation
    bound, and the server's evidence says which engine and which aggregation ran."""
    root = federation["root"]
    protocol = _secure_protocol(federation, "secure-processes.yaml")
    assert PYTHON is not None
    state = run_local(protocol, root / "secure-processes", root, python=PYTHON, timeout=900)
    assert state["status"] in ("passed", "rejected"), state.get("error")
    assert state["engines"] == ["processes"] and state["secure_aggregation"] is True
    assert all(r["status"] == "aggregated" and r["answered"] == sorted(SITES) for r in state["rounds"])
    first = state["rounds"][0]
    cfg = first["secure_aggregation"]
    assert [s["stage"] for s in cfg["stages"]] == ["setup", "share_keys", "collect_masked_vectors", "unmask"]
    assert all(s["answered"] == 3 for s in cfg["stages"])
    # Masked vectors travel as 8-byte integers: the server receives more than it sends.
    assert first["bytes_received"] > first["bytes_sent"] > 0
    tol = secure.tolerance(3, [m["num-examples"] for m in first["sites"].values()], cfg)
    diff = _max_diff(_weights(root / "secure-processes", 1), _weights(root / "sim", 1))
    assert 0 < diff <= tol, (diff, tol)
    rows = federation["rows"]
    assert leaked([r for s in SITES for r in rows[s]], files_under(root / "secure-processes")) == []
