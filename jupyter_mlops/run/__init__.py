"""Running a pipeline: the runner, which steps run, the cache, the run store, lineage, the
record of a run as it goes, and the views of runs."""
