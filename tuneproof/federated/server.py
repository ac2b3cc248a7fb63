"""The federation's server side, run inside Flower's ServerApp: rounds, checkpoints, evidence.

Flower's strategies (FedAvg, FedProx) choose the sites of a round and aggregate their weights;
this module drives the rounds itself rather than calling ``Strategy.start`` so it can checkpoint
the global model after every round and resume an interrupted federation from the last one
(``start`` has no resume). Nothing here reads a site's data: the sites send counts, hashes,
metrics, bootstrap confusion counts and weights.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tuneproof.errors import FederationFailed
from tuneproof.federated.checkpoints import Arrays, latest_round, save_round
from tuneproof.federated.evidence import judge, site_and_pooled
from tuneproof.federated.spec import FederatedSpec
from tuneproof.fsutil import atomic_write_json, atomic_write_text, sha256_file
from tuneproof.protocol import LoadedProtocol, load_protocol

# Message keys shared with the ClientApp (tuneproof/federated/flower_app.py).
STEP = "tuneproof-step"
SITE = "site"
SUMMARY = "summary"
BOOTSTRAP = "bootstrap-samples"
ALONE = "train-alone"


def to_record(arrays: Arrays) -> Any:
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def from_record(record: Any) -> Arrays:
    return {k: v.numpy() for k, v in record.items()}


def make_strategy(fed: FederatedSpec) -> Any:
    from flwr.serverapp.strategy import FedAvg, FedProx

    common = {
        "fraction_train": fed.per_round / len(fed.sites),
        "min_train_nodes": fed.per_round,
        # A lost site must not make the round wait for it forever: wait for the sites a round needs.
        "min_available_nodes": fed.required,
        "fraction_evaluate": 0.0,  # each site scores the incoming global model in its train reply
        "min_evaluate_nodes": 0,
    }
    if fed.strategy == "fedprox":
        return FedProx(proximal_mu=fed.proximal_mu, **common)
    return FedAvg(**common)


class Federation:
    """The server's run folder and the state of the rounds in it."""

    def __init__(self, protocol_path: Path, run_dir: Path, engine: str = "processes") -> None:
        self.loaded: LoadedProtocol = load_protocol(protocol_path)
        fed = self.loaded.protocol.federated
        if fed is None:
            raise FederationFailed(f"{protocol_path}: the protocol has no federated section")
        self.fed = fed
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = run_dir / "federation.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text())
            if self.state_path.exists()
            else {"protocol_sha256": self.loaded.sha256, "status": "running", "rounds": [], "resumed": []}
        )
        if self.state["protocol_sha256"] != self.loaded.sha256:
            raise FederationFailed(f"{run_dir} was started with another protocol; start a new federation")
        # How each start ran (Flower processes or its simulation engine): a resumed federation may mix.
        self.state.setdefault("engines", []).append(engine)
        atomic_write_text(run_dir / "protocol.source.yaml", self.loaded.text)

    def save(self) -> None:
        atomic_write_json(self.state_path, self.state)

    def log(self, message: str) -> None:
        print(f"[federated] {message}", flush=True)

    # --- the rounds -------------------------------------------------------------------------------

    def run(self, grid: Any, initial: Arrays) -> dict[str, Any]:
        from flwr.app import ConfigRecord

        fed = self.fed
        self.state["status"] = "running"
        self.state.pop("error", None)
        try:
            nodes = self.identify_sites(grid)
            arrays, start = initial, 1
            latest = latest_round(self.run_dir / "checkpoints")
            if latest is not None:
                done, arrays, skipped = latest
                start = done + 1
                self.state["resumed"].append({"from_round": done, "skipped": skipped, "at": time.time()})
                self.state["rounds"] = [r for r in self.state["rounds"] if r["round"] <= done]
                self.log(f"resuming after round {done}" + (f" (ignored {skipped})" if skipped else ""))
            strategy = make_strategy(fed)
            self.state["secure_aggregation"] = fed.secure_aggregation
            for server_round in range(start, fed.rounds + 1):
                random.seed(
                    self.loaded.protocol.seed * 100_003 + server_round
                )  # Flower samples with `random`
                if fed.secure_aggregation:
                    arrays = self.secure_round(grid, server_round, arrays, nodes)
                    continue
                config = ConfigRecord({BOOTSTRAP: self.loaded.protocol.evaluate.bootstrap_samples})
                arrays = self.one_round(grid, strategy, server_round, arrays, config, nodes)
            self.state["test"] = self.final_test(grid, arrays, nodes)
        except BaseException as exc:
            self.state["status"] = "failed"
            self.state["error"] = f"{type(exc).__name__}: {exc}"
            self.save()
            raise
        self.save()
        return arrays

    def identify_sites(self, grid: Any) -> dict[int, str]:
        """Ask every connected node which site it is and for its data report (counts and hashes)."""
        from flwr.app import ConfigRecord, Message, RecordDict

        deadline = time.monotonic() + self.fed.round_timeout
        while len(list(grid.get_node_ids())) < len(self.fed.sites):
            if time.monotonic() > deadline:
                raise FederationFailed(
                    f"only {len(list(grid.get_node_ids()))} of {len(self.fed.sites)} sites connected"
                )
            time.sleep(0.5)
        messages = [
            Message(RecordDict({"config": ConfigRecord({STEP: "data"})}), dst_node_id=n, message_type="query")
            for n in grid.get_node_ids()
        ]
        nodes: dict[int, str] = {}
        reports: dict[str, Any] = {}
        for reply in grid.send_and_receive(messages, timeout=self.fed.round_timeout):
            if reply.has_error():
                raise FederationFailed(
                    f"node {reply.metadata.src_node_id} failed its data stage: {reply.error.reason}"
                )
            cfg = reply.content["config"]
            name, summary = str(cfg[SITE]), json.loads(str(cfg[SUMMARY]))
            if name in reports:
                raise FederationFailed(f"two nodes say they are site {name!r}")
            nodes[reply.metadata.src_node_id] = name
            reports[name] = summary
        expected = {s.name for s in self.fed.sites}
        if set(reports) != expected:
            raise FederationFailed(
                f"sites answering {sorted(reports)}, the protocol names {sorted(expected)}"
            )
        label_sets = {json.dumps(r["labels"]) for r in reports.values()}
        if len(label_sets) != 1:
            raise FederationFailed(f"the sites map labels differently: {sorted(label_sets)}")
        for name, summary in reports.items():
            atomic_write_json(self.run_dir / "sites" / name / "data_report.json", summary)
        self.state["sites"] = {
            name: {"rows": {k: v["rows"] for k, v in r["splits"].items()}} for name, r in reports.items()
        }
        self.save()
        return nodes

    def one_round(
        self, grid: Any, strategy: Any, server_round: int, arrays: Arrays, config: Any, nodes: dict[int, str]
    ) -> Arrays:
        started = time.monotonic()
        record = to_record(arrays)
        messages = list(strategy.configure_train(server_round, record, config, grid))
        sampled = sorted(nodes.get(m.metadata.dst_node_id, str(m.metadata.dst_node_id)) for m in messages)
        self.log(f"round {server_round}: training at {', '.join(sampled)}")
        replies = list(grid.send_and_receive(messages, timeout=self.fed.round_timeout))
        # The grid stamps each sent message's id; an error reply made by the SuperLink for a lost
        # node comes from the SuperLink, not the node, so the site is found by the message it answers.
        sent = {m.metadata.message_id: nodes.get(m.metadata.dst_node_id, "?") for m in messages}

        def site_of(reply: Any) -> str:
            return sent.get(reply.metadata.reply_to_message_id) or nodes.get(reply.metadata.src_node_id, "?")

        good = [r for r in replies if not r.has_error()]
        answered = sorted(site_of(r) for r in good)
        errors = {site_of(r): r.error.reason for r in replies if r.has_error()}
        missing = sorted(set(sampled) - set(answered))
        entry: dict[str, Any] = {
            "round": server_round,
            "sampled": sampled,
            "answered": answered,
            "missing": missing,
            "errors": errors,
            "bytes_sent": int(record.count_bytes()) * len(messages),
            "bytes_received": int(sum(r.content["arrays"].count_bytes() for r in good)),
        }
        self._check_enough(entry, len(good), len(messages), started)
        aggregated, _ = strategy.aggregate_train(server_round, good)
        if aggregated is None:
            raise FederationFailed(f"round {server_round}: the strategy aggregated nothing")
        per_site = {site_of(r): dict(r.content["metrics"]) for r in good}
        return self._aggregated(entry, per_site, from_record(aggregated), started)

    def _check_enough(self, entry: dict[str, Any], good: int, asked: int, started: float) -> None:
        """A round with fewer answers than the federation needs fails it, with no checkpoint."""
        if good >= self.fed.required:
            return
        entry["status"] = "failed"
        entry["seconds"] = round(time.monotonic() - started, 3)
        self.state["rounds"].append(entry)
        self.save()
        raise FederationFailed(
            f"round {entry['round']}: {good} of {asked} sites answered "
            f"(missing {', '.join(entry['missing']) or 'none'}), the round needs {self.fed.required}"
        )

    def _aggregated(
        self, entry: dict[str, Any], per_site: dict[str, Any], new: Arrays, started: float
    ) -> Arrays:
        """Record an aggregated round and checkpoint its global model."""
        total = sum(float(m["num-examples"]) for m in per_site.values())
        entry.update(
            status="aggregated",
            sites=per_site,
            contribution={s: float(m["num-examples"]) / total for s, m in per_site.items()},
            seconds=round(time.monotonic() - started, 3),
        )
        answered, missing = entry["answered"], entry["missing"]
        save_round(self.run_dir / "checkpoints", entry["round"], new, {"answered": answered})
        self.state["rounds"].append(entry)
        self.save()
        self.log(
            f"round {entry['round']}: aggregated {', '.join(answered)}"
            + (f"; missing {missing}" if missing else "")
        )
        return new

    def secure_round(self, grid: Any, server_round: int, arrays: Arrays, nodes: dict[int, str]) -> Arrays:
        """A round through SecAgg+ (tuneproof/federated/secure.py): the server sees the sites'
        metrics and example counts, and only the unmasked weighted sum of their weights."""
        from tuneproof.federated import secure

        started = time.monotonic()
        live = [n for n in grid.get_node_ids() if n in nodes]
        if len(live) < self.fed.required:
            # Flower's legacy client manager would wait a day for the missing nodes; fail now.
            lost = sorted(set(nodes.values()) - {nodes[n] for n in live})
            early = {"round": server_round, "sampled": [], "answered": [], "errors": {}, "missing": lost}
            self._check_enough(early, len(live), len(nodes), started)
        train_rows = [int(s["rows"]["train"]) for s in self.state["sites"].values()]
        cfg = secure.settings(self.fed, train_rows, len(self.loaded.protocol.data.labels or []) or 2)
        config = {BOOTSTRAP: self.loaded.protocol.evaluate.bootstrap_samples}
        self.log(f"round {server_round}: secure aggregation (SecAgg+) over {len(live)} sites")
        result = secure.run_round(grid, self.fed, server_round, arrays, config, cfg)
        sampled = sorted(nodes.get(n, str(n)) for n in result.sampled)
        answered = sorted(nodes.get(n, str(n)) for n in result.answered)
        entry: dict[str, Any] = {
            "round": server_round,
            "sampled": sampled,
            "answered": answered,
            "missing": sorted(set(sampled) - set(answered)),
            "errors": {nodes.get(n, str(n)): e for n, e in result.errors.items()},
            "bytes_sent": result.bytes_sent,
            "bytes_received": result.bytes_received,
            "secure_aggregation": {**cfg, "stages": result.stages},
        }
        if result.aggregated is None:
            entry["status"] = "failed"
            entry["seconds"] = round(time.monotonic() - started, 3)
            self.state["rounds"].append(entry)
            self.save()
            last = result.stages[-1] if result.stages else {"stage": "setup", "asked": 0, "answered": 0}
            raise FederationFailed(
                f"round {server_round}: secure aggregation halted at its {last['stage']} stage "
                f"({last['answered']} of {last['asked']} sites answered within round_timeout "
                f"{self.fed.round_timeout:g}s; errors: {entry['errors'] or 'none'})"
            )
        self._check_enough(entry, len(answered), len(sampled), started)
        per_site = {nodes.get(n, str(n)): m for n, m in result.metrics.items()}
        return self._aggregated(entry, per_site, result.aggregated, started)

    def final_test(self, grid: Any, arrays: Arrays, nodes: dict[int, str]) -> dict[str, Any]:
        """Each site scores the final global model on its own test split; intervals and gates here."""
        from flwr.app import ConfigRecord, Message, RecordDict

        protocol = self.loaded.protocol
        content = RecordDict(
            {
                "arrays": to_record(arrays),
                "config": ConfigRecord(
                    {
                        STEP: "test",
                        BOOTSTRAP: protocol.evaluate.bootstrap_samples,
                        ALONE: self.fed.beats_site_alone is not None,
                    }
                ),
            }
        )
        live = set(grid.get_node_ids())
        messages = [Message(content, dst_node_id=n, message_type="query") for n in nodes if n in live]
        replies = list(grid.send_and_receive(messages, timeout=self.fed.round_timeout))
        tests = []
        for reply in replies:
            site = nodes[reply.metadata.src_node_id]
            if reply.has_error():
                raise FederationFailed(f"site {site} could not score its test split: {reply.error.reason}")
            out = reply.content["arrays"]
            tests.append(
                {
                    "site": site,
                    "rows": int(reply.content["config"]["rows"]),
                    **{k: out[k].numpy() for k in out},  # confusion, replicates (and alone_*)
                }
            )
        tested = {t["site"] for t in tests}
        untested = sorted({s.name for s in self.fed.sites} - tested)
        metrics = site_and_pooled(tests, protocol.evaluate.confidence)
        metrics["untested_sites"] = untested
        verdicts = judge(metrics, self.fed.site_floor, protocol.gates, self.fed.beats_site_alone)
        if untested and self.fed.site_floor:
            # A floor on every site cannot pass for a site that was not scored.
            verdicts += [
                {"gate": f"site {s} scored", "passed": False, "detail": "no test reply"} for s in untested
            ]
        atomic_write_json(self.run_dir / "metrics.json", metrics)
        atomic_write_json(self.run_dir / "gates.json", verdicts)
        passed = all(v["passed"] for v in verdicts)
        self.state["status"] = "passed" if passed else "rejected"
        self.state["deployable"] = passed
        for v in verdicts:
            self.log(f"{'PASS' if v['passed'] else 'FAIL'} {v['gate']}: {v['detail']}")
        return {"sites": sorted(tested), "untested": untested, "passed": passed}


def hashed_files(run_dir: Path) -> list[str]:
    """The files the manifest seals: all but itself and Flower's own state (``flower/``)."""
    return [
        p.relative_to(run_dir).as_posix()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
        and p.name != "manifest.json"
        and "flower" not in p.relative_to(run_dir).parts
        and not any(part.startswith((".tmp-", ".old-")) for part in p.relative_to(run_dir).parts)
    ]


def write_manifest(run_dir: Path) -> None:
    """The SHA-256 of every file in the server's run folder, written last."""
    files = {rel: sha256_file(run_dir / rel) for rel in hashed_files(run_dir)}
    atomic_write_json(run_dir / "manifest.json", {"kind": "federation", "files": files})


def rounds_done(run_dir: Path) -> Iterable[int]:
    state = json.loads((run_dir / "federation.json").read_text())
    return [r["round"] for r in state["rounds"] if r.get("status") == "aggregated"]
