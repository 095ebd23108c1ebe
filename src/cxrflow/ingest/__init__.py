"""Ingestion and de-identification of DICOM chest radiographs."""

from cxrflow.ingest.config import IngestConfig, IngestResult, ScopeRules
from cxrflow.ingest.run import locate_files, run_ingest

__all__ = ["IngestConfig", "IngestResult", "ScopeRules", "locate_files", "run_ingest"]
