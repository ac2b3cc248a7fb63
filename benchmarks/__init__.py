"""Side-by-side benchmark of tuneproof against the standard recipes (see docs/performance.md)."""
