"""`tuneproof validate`: everything that can be checked before training, reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneproof.errors import DataValidationError, Problem, ProtocolError, TuneproofError
from tuneproof.privacy.spec import AUDIT_METRICS, CANARY_METRICS, DP_METRICS
from tuneproof.protocol.loader import LoadedProtocol, load_protocol


def check_protocol(path: Path, read_data: bool = True) -> tuple[LoadedProtocol | None, list[Problem]]:
    """Schema, model source, gate names and (optionally) every data row; never trains."""
    loaded, protocol_problems, data_problems = check_protocol_parts(path, read_data)
    return loaded, protocol_problems + data_problems


def check_protocol_parts(
    path: Path, read_data: bool = True
) -> tuple[LoadedProtocol | None, list[Problem], list[Problem]]:
    """Like :func:`check_protocol`, with the protocol's problems and the data's apart (exit 2 vs 3)."""
    loaded, problems, data_problems, _ = check_protocol_power(path, read_data)
    return loaded, problems, data_problems


def check_protocol_power(
    path: Path, read_data: bool = True
) -> tuple[LoadedProtocol | None, list[Problem], list[Problem], dict[str, Any] | None]:
    """:func:`check_protocol_parts` plus, when the data was read, the minimum detectable effect of
    each ``beats`` gate (``tuneproof.evaluate.power``; None without such gates).

    Reading the data runs the data stage as a run would (cleaning, its removal limits, the split and
    its size minimums) except the steps that need the model's tokenizer or the PII scanner: rows
    over ``model.max_length`` and PII rewrites are checked by ``run`` only.
    """
    from tuneproof.gates import validate_gate_names
    from tuneproof.tasks.registry import get_task
    from tuneproof.train.model_source import resolve_model

    try:
        loaded = load_protocol(path)
    except ProtocolError as exc:
        return None, exc.problems, [], None
    protocol = loaded.protocol
    problems: list[Problem] = []
    try:
        task = get_task(protocol)
    except ProtocolError as exc:
        return loaded, exc.problems, [], None
    try:
        resolve_model(protocol.model, loaded.base_dir)
    except ProtocolError as exc:
        problems += exc.problems
    except TuneproofError as exc:
        problems.append(Problem("model.source", str(exc)))
    known = list(task.metric_names())
    if protocol.pii is not None:
        known += [f"pii_remaining.{t}" for t in protocol.pii.entities]
    if protocol.privacy is not None and protocol.privacy.dp_sgd is not None:
        known += list(DP_METRICS)
    if protocol.privacy is not None and protocol.privacy.audit is not None:
        known += list(AUDIT_METRICS)
        if protocol.privacy.audit.canaries is not None:
            known += list(CANARY_METRICS)
    problems += validate_gate_names(protocol.gates, known, protocol.evaluate.baselines)
    if protocol.export is not None and protocol.export.gates:
        from tuneproof.export.reverify import EXPORT_METRICS, ORIGINAL

        problems += [
            Problem(f"export.{p.where}", p.message)
            for p in validate_gate_names(protocol.export.gates, [*known, *EXPORT_METRICS], [ORIGINAL])
        ]
    data_problems: list[Problem] = []
    power = None
    if read_data and protocol.federated is not None:
        from tuneproof.federated.site_protocol import site_data_problems

        return loaded, problems, site_data_problems(loaded), None
    if read_data:
        try:
            prepared = task.prepare_data(loaded.base_dir)
        except DataValidationError as exc:
            data_problems = exc.problems
        else:
            if not problems:
                from tuneproof.evaluate.power import minimum_detectable_effects

                power = minimum_detectable_effects(protocol, prepared.splits)
    return loaded, problems, data_problems, power
