"""The cohort plan: subjects, studies over time, findings per study and per-image DICOM choices.

Planning is cheap and sequential (one seeded stream per purpose); rendering and writing the
planned images is the expensive part and can run in any order or process.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

import numpy as np

from cxrflow.findings import FINDINGS
from cxrflow.phantom.identities import (
    Institution,
    PatientIdentity,
    Person,
    make_institutions,
    make_patient,
    make_person,
)
from cxrflow.phantom.seeding import derive_hex, derive_uid, rng_for

CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"
DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"
SOP_CLASS_UIDS = {"CR": CR_SOP_CLASS, "DX": DX_SOP_CLASS}

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
COMPRESSED_SYNTAXES = (RLE_LOSSLESS, JPEG_LS_LOSSLESS, JPEG_2000_LOSSLESS)

# Target prevalence per study (the brief's "roughly" numbers); about 40% of studies are normal.
PREVALENCE: dict[str, float] = {
    "aortic_enlargement": 0.20,
    "lung_opacity": 0.18,
    "cardiomegaly": 0.15,
    "pleural_thickening": 0.12,
    "pleural_effusion": 0.10,
    "pulmonary_fibrosis": 0.08,
    "chest_tube": 0.06,
    "pneumothorax": 0.05,
    "rib_fracture": 0.05,
    "tuberculosis": 0.04,
}
assert set(PREVALENCE) == set(FINDINGS)
# A fresh study is forced normal with this probability; the other findings' rates are inflated by
# 1/(1-HEALTHY) so that marginals stay near PREVALENCE and ~40% of studies end up normal.
HEALTHY = 0.20
# Chest tubes mostly treat an effusion or a pneumothorax.
TUBE_GIVEN_FLUID_OR_AIR = 0.35
TUBE_OTHERWISE = 0.015
# Findings that may resolve between studies; the others are chronic and persist.
ACUTE = ("lung_opacity", "pleural_effusion", "pneumothorax", "chest_tube")
P_CARRY_OVER = 0.6
P_ACUTE_RESOLVES = 0.35


@dataclass(frozen=True)
class Lesion:
    """One finding in one study, with the details that rendering and reports need."""

    finding: str
    side: str  # "left" | "right" | "bilateral" (patient's side)
    severity: int  # 1 mild/small, 2 moderate, 3 severe/large
    zone: str  # "upper" | "middle" | "lower"
    token: int  # seeds the lesion's shape, so that it persists between studies
    rib: int = 0  # rib index for a fracture


@dataclass(frozen=True)
class ImagePlan:
    """Everything needed to render and write one image file."""

    relpath: str
    subject: int
    study: int
    image: int
    view: str  # "PA" | "AP" | "LATERAL"
    sop_class: str  # "CR" | "DX"
    sop_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    private_uid: str
    series_number: int
    instance_number: int
    rows: int
    columns: int
    photometric: str
    bits_stored: int
    rescale_slope: float
    rescale_intercept: float
    transfer_syntax: str
    image_type: str  # "ORIGINAL\\PRIMARY" or "DERIVED\\PRIMARY"
    window_count: int  # 0 means a VOI LUT Sequence instead of a window
    burned_in_tag: bool  # write BurnedInAnnotation "NO" (real files often omit it)
    pixel_spacing_tag: bool
    name_in_comments: bool
    series_time: str
    acquisition_time: str
    content_time: str
    acquisition_tz: str  # "" or "+0100"
    referenced_frontal_uid: str = ""  # for a lateral: the frontal image of the same study
    faulty: str = ""  # "" for a good image, else the expected quarantine class


@dataclass(frozen=True)
class StudyPlan:
    """One study of one subject: date, identifiers, findings and images."""

    subject: int
    index: int
    date: dt.date
    study_time: str
    age_years: int
    weight_kg: float
    institution: int
    study_uid: str
    accession: str
    study_id: str
    requested_procedure_id: str
    sps_id: str
    referring: Person
    performing: Person
    operator: Person
    lesions: tuple[Lesion, ...]
    prior_lesions: tuple[Lesion, ...] | None  # None for a first study
    images: tuple[ImagePlan, ...] = ()
    name_in_description: bool = False

    def has(self, finding: str) -> bool:
        """Whether `finding` is present in this study."""
        return any(les.finding == finding for les in self.lesions)

    def labels(self) -> dict[str, int]:
        """0/1 label per finding."""
        present = {les.finding for les in self.lesions}
        return {f: int(f in present) for f in FINDINGS}


@dataclass(frozen=True)
class SubjectPlan:
    """One subject: identity, body and the studies over time."""

    index: int
    sex: str
    identity: PatientIdentity
    birth_date: dt.date
    height_m: float
    bmi: float
    folder: str
    studies: tuple[StudyPlan, ...] = field(default=())


@dataclass(frozen=True)
class CohortPlan:
    """The whole phantom: institutions, subjects and the faulty extras."""

    seed: int
    institutions: tuple[Institution, ...]
    subjects: tuple[SubjectPlan, ...]
    faulty: tuple[ImagePlan, ...]

    def images(self) -> list[tuple[SubjectPlan, StudyPlan, ImagePlan]]:
        """Every planned image with its subject and study, in a stable order."""
        return [(s, st, im) for s in self.subjects for st in s.studies for im in st.images]


def _choice(rng: np.random.Generator, options: tuple, weights: tuple[float, ...]):
    w = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


def _age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _time(rng: np.random.Generator, start_h: int = 7, end_h: int = 22) -> int:
    """Seconds after midnight."""
    return int(rng.integers(start_h * 3600, end_h * 3600))


def _fmt_time(seconds: int, frac: int | None = None) -> str:
    seconds %= 86400
    s = f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}"
    return s if frac is None else f"{s}.{frac:06d}"


def _new_lesion(rng: np.random.Generator, finding: str, side_hint: str | None = None) -> Lesion:
    side = "bilateral"
    if finding in ("lung_opacity", "tuberculosis"):
        side = _choice(rng, ("left", "right", "bilateral"), (0.4, 0.4, 0.2))
    elif finding in ("pleural_thickening", "pleural_effusion"):
        side = _choice(rng, ("left", "right", "bilateral"), (0.35, 0.35, 0.3))
    elif finding in ("pneumothorax", "rib_fracture"):
        side = _choice(rng, ("left", "right"), (0.5, 0.5))
    elif finding == "chest_tube":
        side = side_hint or _choice(rng, ("left", "right"), (0.5, 0.5))
    zone = _choice(rng, ("upper", "middle", "lower"), (0.25, 0.3, 0.45))
    if finding == "tuberculosis":
        zone = "upper"
    elif finding == "pulmonary_fibrosis":
        zone = "lower"
    severity = int(_choice(rng, (1, 2, 3), (0.35, 0.4, 0.25)))
    return Lesion(
        finding, side, severity, zone, int(rng.integers(2**31)), rib=int(rng.integers(3, 8))
    )


def _fresh_findings(rng: np.random.Generator) -> tuple[Lesion, ...]:
    if rng.random() < HEALTHY:
        return ()
    lesions: dict[str, Lesion] = {}
    for finding in FINDINGS:
        if finding == "chest_tube":
            continue
        if rng.random() < PREVALENCE[finding] / (1.0 - HEALTHY):
            lesions[finding] = _new_lesion(rng, finding)
    return _maybe_tube(rng, lesions)


def _maybe_tube(rng: np.random.Generator, lesions: dict[str, Lesion]) -> tuple[Lesion, ...]:
    target = lesions.get("pneumothorax") or lesions.get("pleural_effusion")
    p = TUBE_GIVEN_FLUID_OR_AIR if target else TUBE_OTHERWISE
    if "chest_tube" not in lesions and rng.random() < p:
        hint = target.side if target and target.side != "bilateral" else None
        lesions["chest_tube"] = _new_lesion(rng, "chest_tube", hint)
    return tuple(lesions[f] for f in FINDINGS if f in lesions)


def _evolve(rng: np.random.Generator, prior: tuple[Lesion, ...]) -> tuple[Lesion, ...]:
    """The next study's findings: mostly carried over (acute ones may resolve), else fresh."""
    if rng.random() >= P_CARRY_OVER:
        fresh = {les.finding: les for les in _fresh_findings(rng)}
        # Chronic findings rarely vanish: keep them even when the rest is resampled.
        for les in prior:
            if les.finding not in ACUTE and les.finding not in fresh and rng.random() < 0.8:
                fresh[les.finding] = les
        return tuple(fresh[f] for f in FINDINGS if f in fresh)
    kept: dict[str, Lesion] = {}
    for les in prior:
        if les.finding in ACUTE and rng.random() < P_ACUTE_RESOLVES:
            continue
        if rng.random() < 0.3:
            les = replace(les, severity=int(np.clip(les.severity + rng.choice((-1, 1)), 1, 3)))
        kept[les.finding] = les
    return tuple(kept[f] for f in FINDINGS if f in kept)


def _image_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    """Rows and columns: mostly portrait or square, some landscape-ish."""
    shape = _choice(rng, ("portrait", "square", "landscape"), (0.5, 0.3, 0.2))
    long = int(rng.integers(min_side + (max_side - min_side) // 3, max_side + 1))
    short = long if shape == "square" else round(long * float(rng.uniform(0.78, 0.95)))
    short = int(np.clip(short, min_side, max_side))
    return (long, short) if shape == "portrait" else (short, long)


def plan_cohort(
    seed: int,
    n_subjects: int,
    min_side: int,
    max_side: int,
    include_faulty: bool,
    available_syntaxes: tuple[str, ...],
) -> CohortPlan:
    """Plan the whole phantom deterministically from the seed."""
    rng_inst = rng_for(seed, "institutions")
    institutions = tuple(make_institutions(rng_inst, 4))
    staff = [
        [
            make_person(rng_inst, str(_choice(rng_inst, ("M", "F"), (0.5, 0.5))), doctor=d)
            for d in (True, True, True, False, False)
        ]
        for _ in institutions
    ]
    compressed = tuple(s for s in COMPRESSED_SYNTAXES if s in available_syntaxes)
    file_counter = int(rng_for(seed, "files").integers(100, 5000))
    subjects: list[SubjectPlan] = []
    for s in range(n_subjects):
        rng = rng_for(seed, "subject", s)
        sex = str(_choice(rng, ("M", "F"), (0.5, 0.5)))
        home = int(rng.integers(len(institutions)))
        identity = make_patient(rng, sex, institutions[home])
        height = float(np.clip(rng.normal(1.76 if sex == "M" else 1.63, 0.07), 1.45, 2.02))
        bmi = float(np.clip(rng.lognormal(np.log(26.0), 0.17), 16.5, 45.0))
        n_studies = int(_choice(rng, (1, 2, 3, 4), (0.35, 0.3, 0.22, 0.13)))
        first = dt.date(2012, 1, 1) + dt.timedelta(days=int(rng.integers(0, 11 * 365)))
        age0 = int(np.clip(round(20 + rng.beta(2.0, 1.8) * 70), 18, 92))
        birth = dt.date(first.year - age0, 1, 1) - dt.timedelta(days=int(rng.integers(0, 365)))
        # Nest the subject's folder one level deeper in some dumps.
        top = derive_hex(seed, "folder", s, length=8)
        folder = f"DICOM/{top}" if rng.random() < 0.35 else top
        subject = SubjectPlan(s, sex, identity, birth, round(height, 2), bmi, folder)
        studies: list[StudyPlan] = []
        day = first
        lesions: tuple[Lesion, ...] = ()
        for k in range(n_studies):
            if k:
                day = day + dt.timedelta(days=int(rng.integers(20, 900)))
            prior = lesions if k else None
            lesions = _fresh_findings(rng) if k == 0 else _evolve(rng, lesions)
            inst = home if rng.random() < 0.8 else int(rng.integers(len(institutions)))
            weight = round(float(bmi * height**2 + rng.normal(0, 2.0)), 1)
            study = StudyPlan(
                subject=s,
                index=k,
                date=day,
                study_time=_fmt_time(_time(rng)),
                age_years=_age_on(birth, day),
                weight_kg=weight,
                institution=inst,
                study_uid=derive_uid(seed, "study", s, k),
                accession=f"ACC{int(rng.integers(10**8, 10**9))}",
                study_id=f"{int(rng.integers(10**7, 10**8))}",
                requested_procedure_id=f"RP{int(rng.integers(10**6, 10**7))}",
                sps_id=f"SPS{int(rng.integers(10**6, 10**7))}",
                referring=staff[inst][int(rng.integers(0, 2))],
                performing=staff[inst][2],
                operator=staff[inst][int(rng.integers(3, 5))],
                lesions=lesions,
                prior_lesions=prior,
                name_in_description=bool(rng.random() < 0.3),
            )
            images, file_counter = _plan_images(
                seed, rng, subject, study, min_side, max_side, compressed, file_counter
            )
            studies.append(replace(study, images=images))
        subjects.append(replace(subject, studies=tuple(studies)))
    subjects = _ensure_variety(seed, subjects, compressed)
    faulty = _plan_faulty(seed, subjects, min_side) if include_faulty else ()
    return CohortPlan(seed, institutions, tuple(subjects), faulty)


_NAME_STYLES = ("IM{:06d}", "I{:07d}.dcm", "IMG{:05d}.DCM", "{:08X}", "CR{:06d}.dcm")


def _file_name(seed: int, subject: int, study: int, counter: int) -> str:
    style = _NAME_STYLES[int(rng_for(seed, "name_style", subject, study).integers(5))]
    return style.format(counter)


def _plan_images(
    seed: int,
    rng: np.random.Generator,
    subject: SubjectPlan,
    study: StudyPlan,
    min_side: int,
    max_side: int,
    compressed: tuple[str, ...],
    counter: int,
) -> tuple[tuple[ImagePlan, ...], int]:
    """One or two images per study (frontal, or frontal + lateral) with their DICOM choices."""
    inpatient = study.has("chest_tube") or study.has("pneumothorax")
    two = rng.random() < (0.3 if inpatient else 0.5)
    if two:
        views = ("PA", "LATERAL")
    else:
        views = (str(_choice(rng, ("PA", "AP"), (0.35, 0.65) if inpatient else (0.65, 0.35))),)
    sop_class = str(_choice(rng, ("CR", "DX"), (0.4, 0.6)))
    photometric = str(_choice(rng, ("MONOCHROME2", "MONOCHROME1"), (0.7, 0.3)))
    study_dir = derive_hex(seed, "study_dir", subject.index, study.index, length=6)
    series_base = int(rng.integers(1, 5))
    t0 = int(study.study_time[:2]) * 3600 + int(study.study_time[2:4]) * 60
    t0 += int(study.study_time[4:6])
    out: list[ImagePlan] = []
    frontal_uid = ""
    for i, view in enumerate(views):
        counter += int(rng.integers(1, 4))
        rows, cols = _image_size(rng, min_side, max_side)
        bits = int(_choice(rng, (12, 13, 14, 15, 16), (0.4, 0.05, 0.25, 0.1, 0.2)))
        slope = float(_choice(rng, (1.0, 0.5, 2.0), (0.72, 0.14, 0.14)))
        intercept = float(
            _choice(rng, (0.0, -1024.0, float(int(rng.integers(-2048, 2048)))), (0.6, 0.15, 0.25))
        )
        syntax = str(
            _choice(
                rng,
                (EXPLICIT_VR_LE, IMPLICIT_VR_LE, *compressed),
                (0.62, 0.08, *([0.30 / max(len(compressed), 1)] * len(compressed))),
            )
        )
        voi_ok = slope == 1.0 and intercept >= 0 and bits <= 14
        windows = 0 if voi_ok and rng.random() < 0.25 else int(_choice(rng, (1, 2), (0.88, 0.12)))
        series_t = t0 + int(rng.integers(60, 600)) + 90 * i
        acq_t = series_t + int(rng.integers(5, 60))
        sop_uid = derive_uid(seed, "sop", subject.index, study.index, i)
        name = _file_name(seed, subject.index, study.index, counter)
        plan = ImagePlan(
            relpath=f"{subject.folder}/{study_dir}/{name}",
            subject=subject.index,
            study=study.index,
            image=i,
            view=view,
            sop_class=sop_class,
            sop_instance_uid=sop_uid,
            series_instance_uid=derive_uid(seed, "series", subject.index, study.index, i),
            frame_of_reference_uid=derive_uid(seed, "for", subject.index, study.index),
            private_uid=derive_uid(seed, "private", subject.index, study.index, i),
            series_number=series_base + i,
            instance_number=1,
            rows=rows,
            columns=cols,
            photometric=photometric,
            bits_stored=bits,
            rescale_slope=slope,
            rescale_intercept=intercept,
            transfer_syntax=syntax,
            image_type="DERIVED\\PRIMARY" if rng.random() < 0.15 else "ORIGINAL\\PRIMARY",
            window_count=windows,
            burned_in_tag=bool(rng.random() < 0.6),
            pixel_spacing_tag=bool(rng.random() < 0.6),
            name_in_comments=bool(rng.random() < 0.35),
            series_time=_fmt_time(series_t),
            acquisition_time=_fmt_time(acq_t, int(rng.integers(0, 1000)) * 1000),
            content_time=_fmt_time(acq_t + int(rng.integers(1, 30))),
            acquisition_tz=study_tz(rng),
            referenced_frontal_uid=frontal_uid if view == "LATERAL" else "",
        )
        if view != "LATERAL":
            frontal_uid = sop_uid
        out.append(plan)
    return tuple(out), counter


def study_tz(rng: np.random.Generator) -> str:
    """Half of AcquisitionDateTime values carry a UTC offset."""
    return str(_choice(rng, ("", "+0100", "+0000", "-0500"), (0.5, 0.3, 0.1, 0.1)))


def _ensure_variety(
    seed: int, subjects: list[SubjectPlan], compressed: tuple[str, ...]
) -> list[SubjectPlan]:
    """Force the rare DICOM variants onto a few seeded images so that even tiny phantoms hold
    every variant (both photometrics, CR and DX, every codec, slope != 1, all views)."""
    flat = [
        (si, ki, ii)
        for si, s in enumerate(subjects)
        for ki, st in enumerate(s.studies)
        for ii, _ in enumerate(st.images)
    ]
    order = rng_for(seed, "variety").permutation(len(flat))
    overrides: list[dict] = [
        {"photometric": "MONOCHROME1", "sop_class": "CR", "bits_stored": 12},
        {"photometric": "MONOCHROME2", "sop_class": "DX", "bits_stored": 16},
        {"rescale_slope": 0.5, "rescale_intercept": -1024.0, "bits_stored": 14},
        {"rescale_slope": 2.0, "rescale_intercept": 0.0, "bits_stored": 15},
        {"transfer_syntax": IMPLICIT_VR_LE},
        {
            "transfer_syntax": EXPLICIT_VR_LE,
            "window_count": 0,
            "rescale_slope": 1.0,
            "rescale_intercept": 0.0,
            "bits_stored": 12,
        },
    ] + [{"transfer_syntax": ts} for ts in compressed]
    subjects = list(subjects)
    for n, idx in enumerate(order[: len(overrides)]):
        si, ki, ii = flat[int(idx)]
        _patch_image(subjects, si, ki, ii, overrides[n])
    # All three views: make sure some frontal is AP and some study has a lateral.
    views = {im.view for s in subjects for st in s.studies for im in st.images}
    if "AP" not in views:
        for si, s in enumerate(subjects):
            for ki, st in enumerate(s.studies):
                if len(st.images) == 1 or (ki == len(s.studies) - 1 and si == len(subjects) - 1):
                    _patch_image(subjects, si, ki, 0, {"view": "AP"})
                    break
            else:
                continue
            break
    if "LATERAL" not in views:
        _add_lateral(seed, subjects)
    return subjects


def _patch_image(subjects: list[SubjectPlan], si: int, ki: int, ii: int, changes: dict) -> None:
    s = subjects[si]
    st = s.studies[ki]
    images = list(st.images)
    images[ii] = replace(images[ii], **changes)
    studies = list(s.studies)
    studies[ki] = replace(st, images=tuple(images))
    subjects[si] = replace(s, studies=tuple(studies))


def _add_lateral(seed: int, subjects: list[SubjectPlan]) -> None:
    """Give the first single-image PA/AP study a lateral companion."""
    s = subjects[0]
    st = s.studies[0]
    frontal = replace(st.images[0], view="PA")
    name = frontal.relpath.rsplit("/", 1)
    lateral = replace(
        frontal,
        relpath=f"{name[0]}/L{name[1]}",
        image=1,
        view="LATERAL",
        sop_instance_uid=derive_uid(seed, "sop", s.index, st.index, 1),
        series_instance_uid=derive_uid(seed, "series", s.index, st.index, 1),
        private_uid=derive_uid(seed, "private", s.index, st.index, 1),
        series_number=frontal.series_number + 1,
        referenced_frontal_uid=frontal.sop_instance_uid,
    )
    studies = list(s.studies)
    studies[0] = replace(st, images=(frontal, lateral))
    subjects[0] = replace(s, studies=tuple(studies))


FAULTY_CLASSES = (
    "corrupt",
    "truncated",
    "not_dicom",
    "no_pixel_data",
    "burned_in_annotation",
    "secondary_capture",
    "for_processing",
    "not_chest",
    "not_monochrome",
)


def _plan_faulty(seed: int, subjects: list[SubjectPlan], min_side: int) -> tuple[ImagePlan, ...]:
    """One file per quarantine class (two non-DICOM files), filed among the good ones."""
    rng = rng_for(seed, "faulty")
    kinds = (*FAULTY_CLASSES, "not_dicom")
    used = {im.relpath for s in subjects for st in s.studies for im in st.images}
    out = []
    for n, kind in enumerate(kinds):
        s = subjects[int(rng.integers(len(subjects)))]
        st = s.studies[int(rng.integers(len(s.studies)))]
        base = st.images[0]
        folder = base.relpath.rsplit("/", 1)[0]
        counter = 900000 + int(rng.integers(0, 90000))
        name = _NAME_STYLES[int(rng.integers(len(_NAME_STYLES)))].format(counter)
        if kind == "not_dicom":
            name = ("Thumbs{:04d}" if n == len(kinds) - 1 else "{:08X}").format(counter)
        while f"{folder}/{name}" in used:  # astronomically rare, but never overwrite a file
            name = f"X{name}"
        used.add(f"{folder}/{name}")
        side = int(np.clip(min_side, 64, 512))
        out.append(
            replace(
                base,
                relpath=f"{folder}/{name}",
                image=90 + n,
                view=base.view if base.view != "LATERAL" else "PA",
                sop_instance_uid=derive_uid(seed, "faulty_sop", n),
                series_instance_uid=derive_uid(seed, "faulty_series", n),
                private_uid=derive_uid(seed, "faulty_private", n),
                series_number=90 + n,
                rows=side,
                columns=side,
                transfer_syntax=EXPLICIT_VR_LE,
                window_count=1,
                referenced_frontal_uid="",
                faulty=kind,
            )
        )
    return tuple(out)
