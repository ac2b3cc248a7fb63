"""Hyper-parameter search: the protocol's ``search`` section as an Optuna study on the validation split."""
