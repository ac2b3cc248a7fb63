"""One module per benchmark arm; each runs inside its own subprocess (see benchmarks/worker.py)."""
