"""The pipeline: its spec (``pipeline.yaml``), the export of a notebook into a pipeline
folder, one notebook per step, the contract the notebook leaves, and generated tests."""
