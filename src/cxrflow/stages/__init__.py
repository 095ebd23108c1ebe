"""Stage entry points: one library call per pipeline stage, orchestrator-free.

Each function does the stage's work, records it in MLflow and writes its human-readable
summary; the KFP components in `components/` only map their inputs and outputs onto these.
"""
