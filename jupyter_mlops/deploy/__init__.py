"""Handing a pipeline to a production engine: Airflow DAGs and Kubeflow Pipelines."""
