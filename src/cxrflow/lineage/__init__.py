"""Lineage audit: from a model to its data, code and ingestion; from a subject to its models."""

from cxrflow.lineage.data import data_lineage
from cxrflow.lineage.model import model_lineage
from cxrflow.lineage.store import read_version_manifest
from cxrflow.lineage.subject import (
    SubjectQuery,
    patient_lineage,
    subject_lineage,
    subject_pseudonym,
)
from cxrflow.lineage.tree import LineageNode, NodeKind

__all__ = [
    "LineageNode",
    "NodeKind",
    "SubjectQuery",
    "data_lineage",
    "model_lineage",
    "patient_lineage",
    "read_version_manifest",
    "subject_lineage",
    "subject_pseudonym",
]
