"""Typed configuration and result of the ingestion + de-identification stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cxrflow.ingest.burned_in import BurnedInTextCheck
from cxrflow.ingest.limits import ResourceLimits


@dataclass(frozen=True)
class ScopeRules:
    """Which DICOM images the stage accepts; everything else is quarantined with a reason.

    Defaults fit chest radiography: CR/DX, ORIGINAL or DERIVED\\PRIMARY images of the chest,
    monochrome, FOR PRESENTATION, no burned-in annotation declared.
    """

    modalities: tuple[str, ...] = ("CR", "DX")
    sop_classes: tuple[str, ...] = (
        "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
        "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    )
    body_parts: tuple[str, ...] = ("CHEST", "THORAX", "LUNG", "")
    refuse_secondary: bool = True
    refuse_burned_in_annotation: bool = True
    refuse_for_processing: bool = True
    # BurnedInAnnotation is absent from most real chest radiographs: accept absent for CR/DX.
    accept_missing_burned_in_annotation: bool = True


@dataclass(frozen=True)
class IngestConfig:
    """Parameters of one ingestion run."""

    input_dir: Path
    output_dir: Path
    ground_truth: Path | None = None
    max_side: int = 1024
    png_bits: Literal[8, 16] = 16
    write_dicom: bool = False
    workers: int = 1
    rules: ScopeRules = field(default_factory=ScopeRules)
    burned_in_text: BurnedInTextCheck = field(default_factory=BurnedInTextCheck)
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.max_side < 16:
            raise ValueError(f"max_side must be at least 16 (got {self.max_side})")
        if self.png_bits not in (8, 16):
            raise ValueError(f"png_bits must be 8 or 16 (got {self.png_bits})")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1 (got {self.workers})")


@dataclass(frozen=True)
class IngestResult:
    """Counts and output paths of one ingestion run; `found == written + skipped + quarantined`."""

    run_id: str
    found: int
    written: int
    skipped_existing: int
    quarantined: int
    output_dir: Path
    manifest_path: Path
    quarantine_path: Path
    audit_path: Path
    key_fingerprint: str
    profile: str

    @property
    def reconciles(self) -> bool:
        return self.found == self.written + self.skipped_existing + self.quarantined

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
