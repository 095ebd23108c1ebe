"""Orchestration: plan the cohort, render and write every file (optionally in parallel), then
write the ground truth."""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from cxrflow.findings import FINDINGS, label_column
from cxrflow.logs import progress_bar
from cxrflow.phantom.anatomy import Body, render_frontal, render_lateral
from cxrflow.phantom.config import PhantomConfig, PhantomSummary
from cxrflow.phantom.dicom_writer import build_dataset, encode, to_stored
from cxrflow.phantom.faulty import build_faulty
from cxrflow.phantom.ground_truth import GROUND_TRUTH_NAME, mask_to_png, write_ground_truth
from cxrflow.phantom.identities import Institution
from cxrflow.phantom.plan import (
    COMPRESSED_SYNTAXES,
    SOP_CLASS_UIDS,
    CohortPlan,
    ImagePlan,
    StudyPlan,
    SubjectPlan,
    plan_cohort,
)
from cxrflow.phantom.reports import write_report
from cxrflow.phantom.seeding import rng_for

log = logging.getLogger(__name__)

Task = tuple[int, str, SubjectPlan, StudyPlan, ImagePlan, Institution]


def available_syntaxes() -> tuple[str, ...]:
    """Compressed transfer syntaxes for which pydicom finds a working encoder here."""
    try:
        from pydicom.pixels import get_encoder
    except ImportError:  # pragma: no cover - pydicom < 3
        return ()
    out = []
    for uid in COMPRESSED_SYNTAXES:
        try:
            if get_encoder(uid).is_available:
                out.append(uid)
        except Exception:  # an unknown or broken plugin must not stop the phantom
            log.debug("no encoder for %s", uid, exc_info=True)
    return tuple(out)


def generate_phantom(
    out_dir: Path,
    subjects: int,
    seed: int = 0,
    *,
    min_side: int = 384,
    max_side: int = 896,
    include_faulty: bool = True,
    workers: int = 1,
    progress: bool = True,
) -> PhantomSummary:
    """Write a deterministic phantom PACS export and its ground truth under `out_dir`."""
    cfg = PhantomConfig(
        Path(out_dir), subjects, seed, min_side, max_side, include_faulty, workers, progress
    )
    return run(cfg)


def run(cfg: PhantomConfig) -> PhantomSummary:
    """Generate the phantom described by `cfg`."""
    syntaxes = available_syntaxes()
    missing = [s for s in COMPRESSED_SYNTAXES if s not in syntaxes]
    if missing:
        log.warning("no encoder for %s: those transfer syntaxes are skipped", ", ".join(missing))
    plan = plan_cohort(
        cfg.seed, cfg.subjects, cfg.min_side, cfg.max_side, cfg.include_faulty, syntaxes
    )
    out = cfg.out_dir
    if out.exists() and any(out.iterdir()):
        log.warning("%s is not empty: files of earlier runs are left in place", out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = _tasks(plan)
    relpaths = [t[4].relpath for t in tasks]
    if len(set(relpaths)) != len(relpaths):
        raise RuntimeError("planned file names collide; this is a bug in the planner")
    log.info(
        "phantom: %d subjects, %d files (seed %d) -> %s", cfg.subjects, len(tasks), cfg.seed, out
    )
    rows: list[dict[str, Any]] = []
    bar = progress_bar(total=len(tasks), desc="phantom", unit="file", disable=not cfg.progress)
    if cfg.workers > 1:
        with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
            for row in pool.map(_make_file, [(out, t) for t in tasks], chunksize=4):
                rows.append(row)
                bar.update()
    else:
        for t in tasks:
            rows.append(_make_file((out, t)))
            bar.update()
    bar.close()
    gt_path = out / GROUND_TRUTH_NAME
    write_ground_truth(rows, gt_path)
    summary = PhantomSummary(
        out_dir=out,
        n_subjects=len(plan.subjects),
        n_studies=sum(len(s.studies) for s in plan.subjects),
        n_images=sum(1 for r in rows if r["kind"] == "image"),
        n_faulty=sum(1 for r in rows if r["kind"] == "faulty"),
        ground_truth_path=gt_path,
    )
    log.info("phantom written: %s", summary.to_dict())
    return summary


def _tasks(plan: CohortPlan) -> list[Task]:
    tasks: list[Task] = []
    for subject, study, image in plan.images():
        tasks.append(
            (plan.seed, "image", subject, study, image, plan.institutions[study.institution])
        )
    for image in plan.faulty:
        subject = plan.subjects[image.subject]
        study = subject.studies[image.study]
        tasks.append(
            (plan.seed, "faulty", subject, study, image, plan.institutions[study.institution])
        )
    return tasks


def _make_file(arg: tuple[Path, Task]) -> dict[str, Any]:
    """Render, encode and write one file; return its ground-truth row."""
    out, (seed, kind, subject, study, image, inst) = arg
    rng_subject = rng_for(seed, "anatomy", subject.index)
    rng_image = rng_for(seed, "render", subject.index, study.index, image.image)
    rng_pixels = rng_for(seed, "pixels", subject.index, study.index, image.image)
    body = Body(subject.sex, study.weight_kg / subject.height_m**2, study.age_years)
    lesions = study.lesions if kind == "image" else ()
    mask = None
    ctr = None
    if image.view == "LATERAL":
        img = render_lateral(image.rows, image.columns, body, lesions, rng_subject, rng_image)
    else:
        img, mask, ctr = render_frontal(
            image.rows, image.columns, image.view, body, lesions, rng_subject, rng_image
        )
    row = _base_row(seed, subject, study, image)
    if kind == "image":
        px = to_stored(img, image, rng_pixels)
        ds, phi = build_dataset(subject, study, image, inst, px)
        data = encode(ds, image.transfer_syntax)
        row.update(
            kind="image",
            expected_quarantine=None,
            window_center=px.window_center,
            window_width=px.window_width,
            voi_lut=px.voi_lut is not None,
            phi_values=phi,
            mask_png=mask_to_png(mask) if mask is not None else None,
            cardiothoracic_ratio=round(ctr, 4) if ctr is not None else None,
        )
    else:
        data, phi, overrides = build_faulty(subject, study, image, inst, img, rng_pixels)
        row.update(
            kind="faulty",
            expected_quarantine=image.faulty,
            transfer_syntax=image.transfer_syntax if image.faulty != "not_dicom" else None,
            phi_values=phi,
            voi_lut=False,
            mask_png=None,
            cardiothoracic_ratio=None,
        )
        row.update(overrides)
        # Faulty files are quarantined, never labelled: no findings were drawn into them.
        row.update({label_column(f): 0 for f in FINDINGS}, report=None)
    path = out / image.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return row


def _base_row(
    seed: int, subject: SubjectPlan, study: StudyPlan, image: ImagePlan
) -> dict[str, Any]:
    ident = subject.identity
    report = write_report(
        rng_for(seed, "report", subject.index, study.index), study.lesions, study.prior_lesions
    )
    row: dict[str, Any] = {
        "relpath": image.relpath,
        "sop_instance_uid": image.sop_instance_uid,
        "series_instance_uid": image.series_instance_uid,
        "study_instance_uid": study.study_uid,
        "sop_class": image.sop_class,
        "sop_class_uid": SOP_CLASS_UIDS[image.sop_class],
        "transfer_syntax": image.transfer_syntax,
        "photometric": image.photometric,
        "bits_stored": image.bits_stored,
        "rows": image.rows,
        "columns": image.columns,
        "rescale_slope": image.rescale_slope,
        "rescale_intercept": image.rescale_intercept,
        "subject": subject.index,
        "study_index": study.index,
        "view": image.view,
        "study_date": study.date.strftime("%Y%m%d"),
        "patient_id": ident.patient_id,
        "patient_name": ident.person.pn,
        "birth_date": subject.birth_date.strftime("%Y%m%d"),
        "accession_number": study.accession,
        "mrn": ident.mrn,
        "referenced_frontal_uid": image.referenced_frontal_uid or None,
        "sex": subject.sex,
        "age_years": study.age_years,
        "weight_kg": study.weight_kg,
        "height_m": subject.height_m,
        "report": report,
    }
    labels = study.labels()
    for f in FINDINGS:
        row[label_column(f)] = labels[f]
    return row
