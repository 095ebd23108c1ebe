"""The pipelines (DAGs) and their compiled YAML."""
