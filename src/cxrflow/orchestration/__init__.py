"""Starting pipeline runs: locally with kfp.local, on a cluster (submit, schedule), on new images.

The client side of the orchestrator: it compiles and submits `pipelines/`, so it sits above
them in the layers (ARCHITECTURE.md); nothing in the stages or the domain packages imports it.
"""
