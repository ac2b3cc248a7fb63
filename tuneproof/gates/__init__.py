"""Gates stage: acceptance criteria decided on intervals."""

from tuneproof.gates.check import check_gates, validate_gate_names

__all__ = ["check_gates", "validate_gate_names"]
