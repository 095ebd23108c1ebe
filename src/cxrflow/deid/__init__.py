"""DICOM de-identification by PS3.15 Annex E (Basic Application Level Confidentiality Profile)."""

from cxrflow.deid.profile import Deidentifier, DeidOptions, DeidReport
from cxrflow.deid.table import Action, ProfileTable, load_profile_table

__all__ = [
    "Action",
    "DeidOptions",
    "DeidReport",
    "Deidentifier",
    "ProfileTable",
    "load_profile_table",
]
