"""DICOM de-identification by PS3.15 Annex E (Basic Application Level Confidentiality Profile)."""

from cxrflow.deid.profile import Deidentifier, DeidOptions, DeidReport
from cxrflow.deid.table import Action, ProfileTable, load_profile_table
from cxrflow.deid.text import KnownIdentifiers, ScrubResult, scrub_dataset_report, scrub_report

__all__ = [
    "Action",
    "DeidOptions",
    "DeidReport",
    "Deidentifier",
    "KnownIdentifiers",
    "ProfileTable",
    "ScrubResult",
    "load_profile_table",
    "scrub_dataset_report",
    "scrub_report",
]
