"""Executing one step notebook: papermill with our engine, the kernels (pool, zygote,
readiness), and the executors that run steps here or on Dask workers."""
