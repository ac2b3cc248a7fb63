"""Every path a browser names is confined to the project folder."""

from __future__ import annotations

from pathlib import Path

from tuneproof.errors import PathOutsideProject


def confine(project: Path, name: str) -> Path:
    """``name`` (relative to ``project``, or absolute) resolved, symlinks followed; refused if outside."""
    if not name or "\x00" in name:
        raise PathOutsideProject(f"{name!r} is not a path")
    root = project.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise PathOutsideProject(f"{name!r} is outside the project folder {root}")
    return path


def relative(project: Path, path: Path) -> str:
    return path.resolve().relative_to(project.resolve()).as_posix()


# Folders a project scan never enters: environments, VCS data, run internals.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".tuneproof-ui",
        "checkpoints",
        "model",
        "reference",
    }
)


def walk(project: Path, max_depth: int = 5, limit: int = 2000) -> list[Path]:
    """Files under ``project`` (bounded depth and count), skipping SKIP_DIRS."""
    out: list[Path] = []
    stack = [(project.resolve(), 0)]
    while stack and len(out) < limit:
        folder, depth = stack.pop()
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for e in entries:
            if e.is_dir():
                if depth < max_depth and e.name not in SKIP_DIRS and not e.is_symlink():
                    stack.append((e, depth + 1))
            elif e.is_file():
                out.append(e)
    return out
