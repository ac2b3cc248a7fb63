"""The data stage on a cluster engine (Dask): the local stage's checks, partition by partition."""
