"""The facts a model card states, as typed data: read from MLflow and the evaluation, never typed.

Every field is either a recorded value or explicitly unknown (`None` / `"not recorded"`): the
card's sentences (`cxrflow.modelcard.claims`) are computed from these and nothing else.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cxrflow.data_terms import binding_terms

log = logging.getLogger(__name__)


# Fewer positives than this: an AUROC/AUPRC moves by whole points with one case, so it is
# reported but called not interpretable (and never "better than chance").
MIN_POSITIVES = 10
# Fewer images than this in a group: its fairness score is shown but not interpretable.
MIN_GROUP_IMAGES = 10
# A demographic probe this far (accuracy points) above the majority-class rate, and above it
# by more than its fold standard deviation, is called "strongly" encoded.
STRONG_MARGIN = 0.10
Z95 = 1.959964  # two-sided 95% normal quantile

ProvenanceKind = Literal["synthetic", "real", "mixed", "unknown"]
_LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+\-]*$")


@dataclass(frozen=True)
class License:
    """A Hub license: a lowercase SPDX-style id, or `other` with its name and link."""

    id: str
    name: str = ""
    link: str = ""

    def __post_init__(self) -> None:
        if not _LICENSE_ID.match(self.id):
            raise ValueError(f"license {self.id!r}: use a lowercase SPDX id (e.g. apache-2.0)")
        if self.id == "other" and not (self.name and self.link):
            raise ValueError("license 'other' needs license_name and license_link")
        if self.id != "other" and (self.name or self.link):
            raise ValueError(f"license_name/license_link go with 'other' only, not {self.id!r}")

    @classmethod
    def of(cls, value: License | str) -> License:
        """A `License` from itself or an id (`other` alone is refused: it says nothing)."""
        return value if isinstance(value, License) else cls(value.strip().lower())

    def describe(self) -> str:
        """One line for the card's text."""
        return f"{self.name} (see {self.link})" if self.id == "other" else self.id


# The project's own license (pyproject.toml); weights made by cxrflow from random or DINOv2
# (Apache-2.0) weights on data without a use agreement can carry it.
PROJECT_LICENSE = License("apache-2.0")


@dataclass(frozen=True)
class Provenance:
    """Whether the images are synthetic or of real patients, and which record says so."""

    kind: ProvenanceKind
    source: str = ""  # the generator or dataset name, when recorded
    evidence: str = "not recorded"

    @classmethod
    def parse(cls, value: str, evidence: str) -> Provenance:
        """`synthetic[:name]`, `real[:name]` or `mixed[:names]` as recorded; else unknown."""
        kind, _, source = value.strip().partition(":")
        if kind not in ("synthetic", "real", "mixed"):
            return cls("unknown", value.strip(), f"{evidence} (unrecognised value)")
        return cls(kind, source.strip(), evidence)  # type: ignore[arg-type]

    @property
    def has_synthetic(self) -> bool:
        """Some or all of the images are generated phantoms."""
        return self.kind in ("synthetic", "mixed")

    @property
    def sources(self) -> tuple[str, ...]:
        """The recorded source names (datasets, the phantom generator, `dicom`)."""
        return tuple(s.strip() for s in self.source.split(",") if s.strip())


def weights_license(sources: Iterable[str], default: License = PROJECT_LICENSE) -> License:
    """`default`, unless a public dataset among `sources` (the weights' training data, their
    parents' included) binds them by its terms.

    Then `other`, named after those datasets and linked to the first one's terms (the card's
    text lists them all). A site's own images leave the licence to the site: cxrflow cannot
    know its governance, and the card's text says so.
    """
    public = {s: t for s, t in binding_terms(sources).items() if t.link}
    if not public:
        return default
    names = sorted(public)
    slug = re.sub(r"[^a-z0-9.+-]+", "-", "dataset-terms-" + "-".join(names).lower())
    return License("other", slug, public[names[0]].link)


@dataclass(frozen=True)
class Initialisation:
    """Where the encoder's training started, as the pre-training stage tagged it."""

    requested: str = ""  # random, champion, models:/..., path
    source: str = ""  # random, hf, torch_hub, timm (the resolved format)
    sha256: str = ""
    parent_model: str = ""
    note: str = ""
    departures: dict[str, str] = field(default_factory=dict)

    @property
    def recorded(self) -> bool:
        return bool(self.source or self.requested)

    @property
    def random(self) -> bool:
        """True when training started from random weights (whatever was asked for)."""
        return self.source == "random" or (not self.source and self.requested == "random")

    @property
    def continual(self) -> bool:
        """Continual pre-training: only from recorded, non-random weights."""
        return bool(self.source) and not self.random


@dataclass(frozen=True)
class Architecture:
    """The backbone: ViT size, patch, width, depth, heads, parameters."""

    name: str  # vit_tiny, vit_base, ...
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    num_register_tokens: int
    parameters: int | None
    evidence: str

    @property
    def label(self) -> str:
        """ViT-B/14 style."""
        size = {"vit_tiny": "Ti", "vit_small": "S", "vit_base": "B", "vit_large": "L"}
        return f"ViT-{size.get(self.name, self.name)}/{self.patch_size}"


@dataclass(frozen=True)
class InputSpec:
    """What the encoder takes: one definition, `cxrflow.models.preprocessing`."""

    image_size: int
    channels: int = 3  # grey replicated on three channels
    mean: float | None = None
    std: float | None = None
    bit_depths: tuple[int, ...] = (8, 16)  # PNG depths `load_image` scales by their own range
    evidence: str = ""


@dataclass(frozen=True)
class Compute:
    """What pre-training used: device, steps, batch, wall time of the stage run."""

    device: str = "not recorded"
    steps: int | None = None
    batch_size: int | None = None
    wall_seconds: float | None = None
    amp: str = ""


@dataclass(frozen=True)
class BinaryResult:
    """One finding's linear-probe AUPRC/AUROC (0-1, mean and std over repeats) with counts."""

    finding: str
    auprc: float
    auprc_std: float | None
    auroc: float
    auroc_std: float | None
    positives: int | None = None
    labelled: int | None = None

    @property
    def interpretable(self) -> bool | None:
        """None when the counts are not recorded."""
        return None if self.positives is None else self.positives >= MIN_POSITIVES

    @property
    def prevalence(self) -> float | None:
        if self.positives is None or not self.labelled:
            return None
        return self.positives / self.labelled

    def auroc_interval(self) -> tuple[float, float] | None:
        """Hanley-McNeil 95% interval of the AUROC from the counts (None without them)."""
        if self.positives is None or self.labelled is None or math.isnan(self.auroc):
            return None
        n1, n0 = self.positives, self.labelled - self.positives
        if n1 < 1 or n0 < 1:
            return None
        a = self.auroc
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)
        half = Z95 * math.sqrt(max(var, 0.0))
        return max(0.0, a - half), min(1.0, a + half)


@dataclass(frozen=True)
class DemographicProbe:
    """Accuracy of predicting a demographic from frozen features vs the majority-class rate."""

    target: str
    accuracy: float
    std: float | None
    majority_rate: float | None = None
    majority_class: str = ""
    images: int | None = None
    evidence: str = ""

    @property
    def margin(self) -> float | None:
        """Accuracy minus the majority rate (what guessing the commonest class scores)."""
        return None if self.majority_rate is None else self.accuracy - self.majority_rate


@dataclass(frozen=True)
class IntervalResult:
    """A report-generation metric: median and 95% bootstrap interval over N test images."""

    metric: str
    median: float
    low: float
    high: float
    n: int | None = None


@dataclass(frozen=True)
class GroupResult:
    """A fairness stratum's worst group against the average of groups."""

    task: str
    metric: str
    attribute: str
    overall: float
    average: float
    worst_group: str
    worst: float
    worst_images: int | None
    groups: tuple[tuple[str, int, float], ...]

    @property
    def gap(self) -> float:
        return self.average - self.worst


# ------------------------------------------------------------------ readers


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _int(value: Any) -> int | None:
    f = _float(value)
    return None if f is None else round(f)


def classification_results(metrics: Mapping[str, float]) -> list[BinaryResult]:
    """Per-finding results (macro last); counts from `cls.positives.*`/`cls.labelled.*`."""
    findings = sorted(
        {k.split(".", 2)[2] for k in metrics if k.startswith("cls.auprc.")} - {"macro"}
    )
    out = []
    for f in [*findings, "macro"]:
        auprc = _float(metrics.get(f"cls.auprc.{f}"))
        if auprc is None:
            continue
        out.append(
            BinaryResult(
                finding=f,
                auprc=auprc,
                auprc_std=_float(metrics.get(f"cls.auprc_std.{f}")),
                auroc=_float(metrics.get(f"cls.auroc.{f}")) or math.nan,
                auroc_std=_float(metrics.get(f"cls.auroc_std.{f}")),
                positives=_int(metrics.get(f"cls.positives.{f}")),
                labelled=_int(metrics.get(f"cls.labelled.{f}")),
            )
        )
    return out


def _cohort_counts(cohort: Mapping[str, Any] | None, prefix: str) -> dict[str, int] | None:
    """`{group: images}` of the cohort table's `all` column for rows `<prefix> <group>`."""
    if not cohort:
        return None
    columns = list(cohort["columns"])
    if "all" not in columns:
        return None
    col = columns.index("all")
    out: dict[str, int] = {}
    for row in cohort["rows"]:
        label = str(row[0])
        if not label.startswith(prefix + " ") or label.endswith(" unknown"):
            continue
        value = _int(row[col])
        if value is None:  # a suppressed "<k" count: the rate cannot be computed
            return None
        out[label.removeprefix(prefix + " ")] = value
    return out or None


def demographic_probes(
    metrics: Mapping[str, float], cohort: Mapping[str, Any] | None = None
) -> list[DemographicProbe]:
    """Table 5's probes with the majority-class rate they must beat.

    The rate is `demo.majority.<target>` when the heads recorded it; for sex and age it is
    otherwise derived from the cohort table's counts over all splits (the probe's default
    cross-validation covers train, val and test, the images with a known value).
    """
    out = []
    for key in sorted(k for k in metrics if k.startswith("demo.accuracy.")):
        target = key.removeprefix("demo.accuracy.")
        acc = _float(metrics[key])
        if acc is None:
            continue
        rate, klass, images, evidence = _float(metrics.get(f"demo.majority.{target}")), "", None, ""
        images = _int(metrics.get(f"demo.images.{target}"))
        if rate is not None:
            evidence = "recorded by the heads stage"
        elif target in ("sex", "age"):
            counts = _cohort_counts(cohort, target)
            if counts and sum(counts.values()):
                klass, top = max(counts.items(), key=lambda kv: kv[1])
                images = sum(counts.values())
                rate = top / images
                evidence = "derived from the cohort table (all splits, known values)"
        out.append(
            DemographicProbe(
                target,
                acc,
                _float(metrics.get(f"demo.accuracy_std.{target}")),
                rate,
                klass,
                images,
                evidence or "majority rate not recorded",
            )
        )
    return out


def report_results(evaluation: Mapping[str, Any]) -> list[IntervalResult]:
    """Report generation's `report.<metric>.median|low|high` with N from Table 2's caption."""
    metrics = evaluation.get("metrics", {})
    n = None
    for t in evaluation.get("tables", []):
        if t.get("key") == "table2_report_generation":
            m = re.search(r"\(N = (\d+)\)", t.get("caption", ""))
            n = int(m.group(1)) if m else None
    names = sorted({k.split(".")[1] for k in metrics if re.fullmatch(r"report\.[^.]+\.median", k)})
    out = []
    for name in names:
        values = [_float(metrics.get(f"report.{name}.{p}")) for p in ("median", "low", "high")]
        if all(v is not None for v in values):
            out.append(IntervalResult(name, *values, n=n))  # type: ignore[arg-type]
    return out


def fairness_results(evaluation: Mapping[str, Any]) -> list[GroupResult]:
    """The evaluation's C.6 strata with the worst group's size."""
    out = []
    for r in evaluation.get("fairness", []) or []:
        groups = tuple((str(g["group"]), int(g["images"]), float(g["mean"])) for g in r["groups"])
        worst_n = next((n for g, n, _ in groups if g == r.get("worst_group")), None)
        worst, average = _float(r.get("worst")), _float(r.get("average"))
        if worst is None or average is None:
            continue
        out.append(
            GroupResult(
                task=str(r["task"]),
                metric=str(r["metric"]),
                attribute=str(r["attribute"]),
                overall=_float(r.get("overall")) or math.nan,
                average=average,
                worst_group=str(r.get("worst_group", "")),
                worst=worst,
                worst_images=worst_n,
                groups=groups,
            )
        )
    return out


def initialisation(tags: Mapping[str, str]) -> Initialisation:
    """The encoder's start from `cxrflow.init_from` and `cxrflow.init.*` (no file names)."""
    from cxrflow.tags import TAG_INIT_FROM, TAG_INIT_PREFIX

    init = {
        k.removeprefix(TAG_INIT_PREFIX): v for k, v in tags.items() if k.startswith(TAG_INIT_PREFIX)
    }
    departures = {
        k.removeprefix("departure."): v for k, v in init.items() if k.startswith("departure.")
    }
    requested = tags.get(TAG_INIT_FROM, "")
    if "/" in requested and not requested.startswith("models:/"):
        requested = "path"  # a weights path can name a person's folder: never in a card
    return Initialisation(
        requested=requested,
        source=init.get("source", ""),
        sha256=init.get("sha256", ""),
        parent_model=init.get("model", ""),
        note=init.get("note", ""),
        departures=departures,
    )
