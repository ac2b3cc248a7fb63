"""tuneproof: task-specific fine-tuning protocols that hand back a model with its evidence."""

from importlib import metadata

try:
    # pyproject.toml is the one place the version is written; everything else reads this.
    __version__ = metadata.version("tuneproof")
except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
