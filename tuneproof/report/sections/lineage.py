"""Where the model came from: hashes, versions, seed, precision and the resolved protocol."""

from __future__ import annotations

from typing import Any

import yaml

from tuneproof.report.fmt import short_hash
from tuneproof.report.markup import Safe, details, esc, generic_value, h3, join, kv_table, pre, table
from tuneproof.report.run_data import RunData, dig, mapping
from tuneproof.report.sections.overview import describe_location


def lineage(run: RunData) -> str | None:
    manifest = run.manifest
    if not manifest and not run.protocol:
        return None
    env = mapping(manifest.get("environment"))
    facts: dict[str, Any] = {
        "tuneproof": manifest.get("tuneproof_version"),
        "protocol sha256": short_hash(manifest.get("protocol_sha256"))
        if manifest.get("protocol_sha256")
        else None,
        "base model": describe_location(dig(run.protocol, "model", "source")) if run.protocol else None,
        "model revision": dig(run.protocol, "model", "revision"),
        "seed": manifest.get("seed", run.protocol.get("seed")),
        "precision": env.get("precision") or dig(run.protocol, "train", "precision"),
    }
    parts: list[str | None] = [kv_table({k: v for k, v in facts.items() if v is not None})]
    if env:
        parts.append(h3("Environment"))
        parts.append(kv_table({k: v if not isinstance(v, dict | list) else str(v) for k, v in env.items()}))
    inputs = mapping(manifest.get("inputs"))
    if inputs:
        parts.append(h3("Inputs"))
        parts.append(
            table(
                ["input", "sha256"],
                (
                    [path, Safe(f'<code title="{esc(sha)}">{esc(short_hash(sha))}</code>')]
                    for path, sha in inputs.items()
                ),
                numeric_from=99,
            )
        )
    extra = mapping(manifest.get("lineage"))
    if extra.get("protocol_sha256") == manifest.get("protocol_sha256"):
        del extra["protocol_sha256"]  # the run's own protocol hash, shown shortened above
    if extra:
        parts.append(h3("Lineage"))
        parts.append(generic_value(extra))
    files = mapping(manifest.get("files"))
    if files:
        parts.append(
            details(
                f"files in the run folder ({len(files)}, sha256)",
                table(
                    ["file", "sha256"],
                    ([p, short_hash(h)] for p, h in sorted(files.items())),
                    numeric_from=99,
                ),
            )
        )
    if run.protocol:
        text = yaml.safe_dump(run.protocol, sort_keys=False, allow_unicode=True)
        parts.append(details("resolved protocol (protocol.yaml)", pre(text)))
    return join(parts)
