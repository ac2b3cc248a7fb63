"""Turn a protocol location (a path, or a file shipped in an installed package) into a real path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tuneproof.errors import Problem
from tuneproof.protocol.schema import Location, PackageFile


def package_dir(package: str) -> Path | None:
    # find_spec locates the package without importing it, so nothing the protocol names is executed.
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_location(loc: Location, base_dir: Path, where: str) -> tuple[Path | None, Problem | None]:
    """Resolve ``loc``; relative paths are relative to the protocol file's folder."""
    if isinstance(loc, PackageFile):
        root = package_dir(loc.package)
        if root is None:
            return None, Problem(where, f"package {loc.package!r} is not installed")
        path = (root / loc.path).resolve()
        if not path.is_relative_to(root.resolve()):
            return None, Problem(where, f"{loc.path!r} escapes package {loc.package!r}")
    else:
        path = (base_dir / Path(loc).expanduser()).resolve()
    if not path.exists():
        return None, Problem(where, f"{path} does not exist")
    return path, None
