"""Evaluation stage: metrics with shared-resample bootstrap intervals, baselines and slices.

Submodules are imported directly (``tuneproof.evaluate.classification``, ``.baselines``) so that
importing the package does not pull in scikit-learn.
"""
