"""Flower's ServerApp and ClientApp for a tuneproof federation (Flower 1.42's Message API).

Imported only in the Flower processes (flwr-serverapp, flwr-clientapp), never by ``tuneproof``'s
other modules, so the main environment does not need ``flwr``. The server reads the protocol path
and its run folder from the run config (``flwr run --run-config``); each SuperNode is told its site,
the protocol and its own folder by ``--node-config`` (see tuneproof/federated/launch.py). On the
simulation engine a virtual SuperNode knows only its ``partition-id``: partition ``i`` plays the
protocol's ``i``-th site, with the protocol and the sites' root from the run config.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from tuneproof.federated.secure import conditional_secaggplus_mod, fit_arrays, fit_reply, is_legacy_fit
from tuneproof.federated.server import (
    ALONE,
    BOOTSTRAP,
    SITE,
    STEP,
    SUMMARY,
    Federation,
    from_record,
    to_record,
    write_manifest,
)
from tuneproof.fsutil import atomic_write_json

server_app = ServerApp()
# SecAgg+ runs as a mod around train; it lets the plain rounds' messages through untouched.
client_app = ClientApp(mods=[conditional_secaggplus_mod])


def _site(context: Context) -> Any:
    from tuneproof.federated.site import Site

    cfg = context.node_config
    if "site" in cfg:  # a real SuperNode, told its site by --node-config
        return Site.open(Path(str(cfg["protocol"])), str(cfg["site"]), Path(str(cfg["work-dir"])))
    from tuneproof.federated.launch import simulated_site

    protocol = Path(str(context.run_config["protocol"]))
    name, work_dir = simulated_site(
        protocol,
        Path(str(context.run_config["sites-root"])),
        int(cfg["partition-id"]),
        int(cfg["num-partitions"]),
    )
    return Site.open(protocol, name, work_dir)


def _status(site: Any, **fields: Any) -> None:
    # The site's own progress file, in its own folder: what an operator (and the tests) look at.
    atomic_write_json(site.work_dir / "status.json", {"site": site.name, "time": time.time(), **fields})


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    from tuneproof.federated.site import local_round

    site = _site(context)
    secure = is_legacy_fit(msg.content)  # a SecAgg+ round: legacy FitIns in, FitRes out, masked by the mod
    if secure:
        arrays, config = fit_arrays(msg.content)
    else:
        arrays, config = from_record(msg.content["arrays"]), dict(msg.content["config"])
    server_round = int(config.get("server-round", 0))
    _status(site, round=server_round, phase="training")
    new, metrics = local_round(site, arrays, server_round, config)
    _status(site, round=server_round, phase="trained")
    if secure:
        return Message(fit_reply(new, metrics, config), reply_to=msg)
    metrics["num-examples"] = int(metrics["train_examples"])
    return Message(RecordDict({"arrays": to_record(new), "metrics": MetricRecord(metrics)}), reply_to=msg)


@client_app.query()
def query(msg: Message, context: Context) -> Message:
    from tuneproof.federated.site import alone_arrays, data_summary, site_test

    site = _site(context)
    config = msg.content["config"]
    if config[STEP] == "data":
        _status(site, phase="prepared")
        summary = json.dumps(data_summary(site))
        return Message(
            RecordDict({"config": ConfigRecord({SITE: site.name, SUMMARY: summary})}), reply_to=msg
        )
    alone = None
    if bool(config.get(ALONE, False)):
        # The comparison the beats_site_alone gate needs: this site's model trained on its data alone.
        _status(site, phase="training alone")
        alone = alone_arrays(site)
    result = site_test(site, from_record(msg.content["arrays"]), int(config[BOOTSTRAP]), alone)
    _status(site, phase="tested")
    keys = ("confusion", "replicates", "alone_confusion", "alone_replicates")
    arrays = ArrayRecord({k: Array(np.ascontiguousarray(result[k])) for k in keys if k in result})
    return Message(
        RecordDict({"arrays": arrays, "config": ConfigRecord({"rows": result["rows"]})}), reply_to=msg
    )


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    from tuneproof.federated.package import initial_arrays, package_global
    from tuneproof.federated.report import write_report

    run_dir = Path(str(context.run_config["run-dir"]))
    federation = Federation(
        Path(str(context.run_config["protocol"])), run_dir, str(context.run_config.get("engine", "processes"))
    )
    arrays = federation.run(grid, initial_arrays(federation.loaded))
    package_global(federation, arrays)
    federation.save()
    write_report(run_dir, federation.loaded.protocol.name)
    write_manifest(run_dir)
