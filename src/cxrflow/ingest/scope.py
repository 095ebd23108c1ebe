"""Which DICOM images the stage accepts: a documented, configurable rule set.

Each rule returns a reason (for the quarantine list) when an image is out of scope. Reasons
name the attribute and the rule only, never a value read from the header: a free-text
attribute (BodyPartExamined, ImageType) can hold a name or a date of birth.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from cxrflow.ingest.config import ScopeRules

SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
# Raw detector data: Digital X-Ray / Mammography / Intra-oral Image Storage - For Processing.
FOR_PROCESSING_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1.1.1",
        "1.2.840.10008.5.1.4.1.1.1.2.1",
        "1.2.840.10008.5.1.4.1.1.1.3.1",
    }
)


def out_of_scope_reason(ds: Dataset, rules: ScopeRules) -> tuple[str, str] | None:
    """(reason class, reason) when `ds` must be refused, else None."""
    sop_class = str(ds.get("SOPClassUID", "")).strip()
    modality = str(ds.get("Modality", "")).strip().upper()
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary_capture", "SOPClassUID is a Secondary Capture SOP class"
    image_type = [str(v).strip().upper() for v in (ds.get("ImageType") or [])]
    if rules.refuse_secondary and len(image_type) > 1 and image_type[1] == "SECONDARY":
        return "secondary_capture", "ImageType second value is SECONDARY"
    if rules.refuse_for_processing:
        intent = str(ds.get("PresentationIntentType", "")).strip().upper()
        if intent == "FOR PROCESSING" or sop_class in FOR_PROCESSING_SOP_CLASSES:
            return "for_processing", "a FOR PROCESSING image (raw detector data)"
    if sop_class not in rules.sop_classes:
        return "sop_class", f"SOPClassUID {_absent_or(sop_class, 'is not accepted')}"
    if modality not in rules.modalities:
        return "modality", f"Modality {_absent_or(modality, 'is not accepted')}"
    burned = ds.get("BurnedInAnnotation")
    if rules.refuse_burned_in_annotation:
        if burned is not None and str(burned).strip().upper() == "YES":
            return "burned_in_annotation", "BurnedInAnnotation is YES"
        if burned is None and not rules.accept_missing_burned_in_annotation:
            return "burned_in_annotation", "BurnedInAnnotation is absent"
    body_part = str(ds.get("BodyPartExamined", "")).strip().upper()
    if body_part not in rules.body_parts:
        return "not_chest", "BodyPartExamined is not a chest body part"
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return (
            "not_monochrome",
            f"PhotometricInterpretation {_absent_or(photometric, 'is not monochrome')}",
        )
    return None


def _absent_or(value: str, rule: str) -> str:
    return rule if value else "is absent"
