"""The protocol as one site runs it, and `validate`'s check of every site's data."""

from __future__ import annotations

from tuneproof.errors import DataValidationError, Problem, ProtocolError
from tuneproof.federated.spec import SiteSpec
from tuneproof.protocol.loader import LoadedProtocol, validate_protocol


def site_protocol(loaded: LoadedProtocol, site_name: str) -> tuple[LoadedProtocol, SiteSpec]:
    """The shared settings with the site's own files as data (and no federated section)."""
    fed = loaded.protocol.federated
    if fed is None:
        problem = Problem("federated", "this protocol has no federated section")
        raise ProtocolError([problem], str(loaded.path))
    site = next((s for s in fed.sites if s.name == site_name), None)
    if site is None:
        names = ", ".join(s.name for s in fed.sites)
        problem = Problem("federated.sites", f"no site {site_name!r} (sites: {names})")
        raise ProtocolError([problem], str(loaded.path))
    raw = loaded.protocol.model_dump(mode="json", exclude_none=True)
    raw.pop("federated")
    raw["data"]["files"] = [f if isinstance(f, str) else f.model_dump() for f in site.files]
    return LoadedProtocol(validate_protocol(raw), loaded.path, loaded.text, loaded.sha256), site


def site_data_problems(loaded: LoadedProtocol) -> list[Problem]:
    """Every site's data stage, as its client will run it; each problem names its site. On one
    machine only (a validation at the server of a real federation cannot read the sites' files)."""
    from tuneproof.tasks.registry import get_task

    problems: list[Problem] = []
    assert loaded.protocol.federated is not None
    for spec in loaded.protocol.federated.sites:
        site_loaded, _ = site_protocol(loaded, spec.name)
        try:
            get_task(site_loaded.protocol).prepare_data(loaded.base_dir)
        except DataValidationError as exc:
            problems += [Problem(f"federated.sites[{spec.name}] {p.where}", p.message) for p in exc.problems]
    return problems
