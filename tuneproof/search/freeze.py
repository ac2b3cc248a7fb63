"""Write the chosen configuration as a protocol file that re-runs without search.

The file lives in the run folder, not next to the original protocol, so every relative path in it
(data files, a local model folder, the output folder) is made absolute; package locations and hub
ids stay as they are. Running it trains exactly the configuration the search chose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def _absolute(loc: Any, base_dir: Path) -> Any:
    if isinstance(loc, str):
        return str((base_dir / Path(loc).expanduser()).resolve())
    return loc  # {package, path}: found the same way from anywhere


def _model_source(src: Any, base_dir: Path) -> Any:
    if not isinstance(src, str):
        return src
    local = (base_dir / src).expanduser()
    # Same rule as model_source.resolve_model: a path-like string or an existing folder is local.
    if src.startswith((".", "/", "~")) or local.is_dir():
        return str(local.resolve())
    return src


def frozen_protocol(chosen: Any, base_dir: Path) -> dict[str, Any]:
    """``chosen`` (a Protocol without search) as plain data, with paths made absolute."""
    raw = chosen.model_dump(mode="json", exclude={"search"})
    raw["model"]["source"] = _model_source(raw["model"]["source"], base_dir)
    data = raw["data"]
    if data.get("files") is not None:
        data["files"] = [_absolute(f, base_dir) for f in data["files"]]
    if data.get("splits") is not None:
        data["splits"] = {k: [_absolute(f, base_dir) for f in v] for k, v in data["splits"].items()}
    out = Path(raw["output_dir"]).expanduser()
    raw["output_dir"] = str(out if out.is_absolute() else (base_dir / out).resolve())
    return raw


def frozen_protocol_text(chosen: Any, base_dir: Path, header: list[str]) -> str:
    comments = "".join(f"# {line}\n" for line in header)
    return comments + yaml.safe_dump(frozen_protocol(chosen, base_dir), sort_keys=False, allow_unicode=True)
