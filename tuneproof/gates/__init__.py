"""Gates stage: acceptance criteria decided on intervals."""

from tuneproof.gates.check import LOWER_IS_BETTER, check_gates, is_lower_better, validate_gate_names

__all__ = ["LOWER_IS_BETTER", "check_gates", "is_lower_better", "validate_gate_names"]
