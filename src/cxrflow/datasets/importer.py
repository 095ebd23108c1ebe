"""Import public datasets into a dataset directory, under the same contracts as ingested data.

`import_dataset(source, config, key)` imports one dataset; `import_datasets(sources, config,
key, evaluation=...)` imports several into one directory (the paper's Multi-CXR when the
sources are its five datasets: each source filtered by the recipe, and every subject of the
`evaluation` datasets left out, `multi_cxr.build_pretraining_manifest`).

What lands in `config.output_dir` is what the DICOM ingest stage writes (cxrflow.ingest.run),
committed by the same code (`cxrflow.ingest.commit.commit_outcomes`: one-writer lock,
roll-forward journal, atomic tables):

- `images/<subject>/<image>.png`: every image decoded (DICOM through the standard's LUT chain
  as ingest does, PNG/JPEG as stored, a 16-bit PNG stretched to its own range as ingest does a
  DICOM without a window), downscaled to `max_side`, written as a `png_bits` grayscale PNG.
  Images are never referenced in place: the data contract (and DVC, which versions the
  directory) needs every image under the dataset root with a pseudonymous name.
- `masks/<subject>/<image>.png`: where the adapter describes masks (CANDID-PTX, VinDr-RibCXR,
  CheXmask lungs and ImaGenome zones), the packed 16-bit PNG ingest writes (bit i =
  `MASK_STRUCTURES[i]`), drawn at the source image's size and resized with the image (nearest
  neighbour); `mask_path` names it. A spec that cannot be drawn quarantines the image
  (`unreadable_mask`) rather than import it without its mask.
- `manifest.parquet`: the adapter's rows with keyed pseudonyms in place of the dataset's ids
  (HMAC of the namespaced id, `chexpert:patient00001`, in ingest's `subject`/`study`/`image`
  domains, so the same subject always gets the same pseudonym and never lands in two splits),
  `image_path`/`image_sha256`/`width`/`height` of the written PNG, `source_dataset` the adapter
  name, `ingest_run` this import's run id, `study_date` shifted by the subject's keyed offset
  (as ingest shifts DICOM dates), sex and age read from the DICOM header where the metadata
  has none. Extra columns after the schema: the adapter's (`official_split`, `labels_other`,
  `labels_uncertain`, `labels_implied`, `boxes`, `report_full`, ...) except mask specifications.
  `official_split` is the dataset's published split (null where it has none): the split
  stage's `official` mode keeps it and hashes the rest by subject; its other modes split
  everything by subject.
- `quarantine.parquet`, `audit.parquet`, `ingest_state.parquet`, `runs/<run id>.json`: as
  ingest. An image the metadata lists but the release lacks is quarantined (`missing`), one
  that cannot be decoded too (`unreadable_image`, `unsupported_pixels`, `degenerate_pixels`),
  under a keyed file key; the returned summary names them by their path under the dataset's
  root (for the operator; no table in the directory holds a source path). A re-run skips the
  images whose bytes and metadata row are unchanged and retries the missing ones.

The returned `ImportSummary` reconciles the counts: per dataset, listed = written + already
imported + missing + unreadable + duplicates; subjects and per-finding label counts listed by
the metadata and imported; the adapter's notes (files a release lacks, what was derived).
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import logging
import multiprocessing as mp
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pydicom
from PIL import Image

from cxrflow import __version__
from cxrflow.datasets.common import normalize_sex, notes, parse_age
from cxrflow.datasets.masks import MASK_SPEC_COLUMN, packed_mask
from cxrflow.datasets.multi_cxr import MULTI_CXR, PretrainingSource, build_pretraining_manifest
from cxrflow.datasets.registry import get_adapter, load_dataset
from cxrflow.deid import Deidentifier
from cxrflow.deid.dates import shift_date
from cxrflow.ingest.commit import (
    AUDIT_ACTIONS,
    QUARANTINE_FILE,
    STATE_FILE,
    STATE_SCHEMA,
    commit_outcomes,
    dataset_lock,
    read_table,
    recover,
)
from cxrflow.ingest.pixels import (
    DegeneratePixels,
    PixelError,
    check_display,
    display_image,
    encode_png,
    resize_longest,
    resize_mask,
)
from cxrflow.ingest.worker import Outcome
from cxrflow.keys import SecretKey
from cxrflow.logs import progress_bar
from cxrflow.manifest import LABEL_COLUMNS, MANIFEST_FILE, MANIFEST_SCHEMA, read_manifest
from cxrflow.manifest import write_manifest as _write_manifest

log = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom")
MISSING_REASON = "image file listed in the metadata was not found"
# Adapter columns that stay out of the manifest: mask specifications name source files.
DROPPED_EXTRAS = frozenset({MASK_SPEC_COLUMN})
NO_SPLIT = "none"


@dataclass(frozen=True)
class Source:
    """One public dataset: its adapter name, the folder of its release, the adapter's options."""

    name: str
    root: Path
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_adapter(self.name)  # an unknown name fails here, listing the known ones
        object.__setattr__(self, "root", Path(self.root))
        if not self.root.is_dir():
            raise FileNotFoundError(f"root of {self.name}: {self.root} is not a directory")


@dataclass(frozen=True)
class ImportConfig:
    """Where and how to write the imported images (the ingest stage's image settings)."""

    output_dir: Path
    max_side: int = 1024
    png_bits: Literal[8, 16] = 16
    workers: int = 1
    show_progress: bool = True
    lock_timeout_s: float = 0  # 0: fail at once when another writer holds the directory

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.max_side < 16:
            raise ValueError(f"max_side must be at least 16 (got {self.max_side})")
        if self.png_bits not in (8, 16):
            raise ValueError(f"png_bits must be 8 or 16 (got {self.png_bits})")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1 (got {self.workers})")


@dataclass(frozen=True)
class LabelCount:
    """Images positive, negative and not annotated for one finding."""

    positive: int
    negative: int
    unannotated: int


@dataclass(frozen=True)
class DatasetSummary:
    """One dataset's reconciled counts; `missing`/`unreadable` name files under its root."""

    dataset: str
    metadata_rows: int  # images the metadata lists
    excluded: int  # left out by the recipe or as evaluation subjects (import_datasets)
    listed: int  # images to import: metadata_rows - excluded
    written: int
    skipped_existing: int  # unchanged since an earlier import
    missing: tuple[str, ...]
    unreadable: tuple[tuple[str, str], ...]  # (image path, reason class)
    duplicates: int
    subjects_listed: int
    subjects_imported: int
    labels_listed: dict[str, LabelCount]
    labels_imported: dict[str, LabelCount]
    notes: tuple[str, ...]

    @property
    def imported(self) -> int:
        return self.written + self.skipped_existing

    @property
    def reconciles(self) -> bool:
        lost = len(self.missing) + len(self.unreadable) + self.duplicates
        return self.metadata_rows - self.excluded == self.listed == self.imported + lost


# What an import does to identities, for the de-identification tag every model version carries:
# the images come de-identified by their publishers and keep no header (PNG re-encoding), and
# cxrflow replaces the datasets' ids and dates as ingest does.
IMPORT_DEID_PROFILE = (
    "public dataset release, de-identified by its publisher; cxrflow: keyed (HMAC) subject, "
    "study and image pseudonyms, dates shifted by the subject's keyed offset, pixels re-encoded "
    "as PNG without any header"
)


@dataclass(frozen=True)
class ImportSummary:
    """What an import did: the run, the key that made the pseudonyms, per-dataset counts."""

    run_id: str
    output_dir: Path
    key_fingerprint: str
    datasets: tuple[DatasetSummary, ...]
    subjects_by_official_split: dict[str, int]  # "none": left to the split stage

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / MANIFEST_FILE

    @property
    def reconciles(self) -> bool:
        return all(d.reconciles for d in self.datasets)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (paths as strings, label counts as objects)."""
        d = asdict(self)
        d["output_dir"] = str(self.output_dir)
        d["reconciles"] = self.reconciles
        for ds, summary in zip(d["datasets"], self.datasets, strict=True):
            ds["missing"] = list(ds["missing"])
            ds["unreadable"] = [list(u) for u in ds["unreadable"]]
            ds["notes"] = list(ds["notes"])
            ds["reconciles"] = summary.reconciles
        return d


class ImagesNotFoundError(FileNotFoundError):
    """A dataset's metadata lists images and none of them is under its root (a wrong root)."""


def check_images_found(summary: ImportSummary, sources: Sequence[Source]) -> None:
    """Refuse an import where a dataset's every listed image is missing: its root is not the
    release's folder, and a run that went on would train on nothing."""
    roots = {s.name: s.root for s in sources}
    for d in summary.datasets:
        if d.listed and len(d.missing) == d.listed:  # none written or imported before
            raise ImagesNotFoundError(
                f"{d.dataset}: none of the {d.listed} images its metadata lists is under "
                f"{roots.get(d.dataset, '?')} (e.g. {d.missing[0]}); the root must be the folder "
                "that holds the metadata files and the image paths they list"
            )


# The worker ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    """One listed image: where it is, the PHI-free names it gets, its manifest row so far."""

    path: Path
    file_key: str
    known_digest: str | None
    row: dict[str, Any]
    metadata: bytes  # the source row, canonical JSON: a changed label re-imports the image
    mask_spec: str | None = None  # the adapter's JSON mask spec (cxrflow.datasets.masks)


def _decode(data: bytes, suffix: str) -> tuple[np.ndarray, dict[str, Any]]:
    """A display image in [0, 1] and the DICOM header's demographics (empty for PNG/JPEG)."""
    if suffix in DICOM_SUFFIXES:
        ds = pydicom.dcmread(io.BytesIO(data))
        header = {"sex": ds.get("PatientSex"), "age": ds.get("PatientAge")}
        return display_image(ds), header
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            values = np.asarray(im, dtype=np.float32)
            # Stored values of a 16-bit PNG span the detector's range, rarely 0..65535:
            # stretched to their own range, as ingest does a DICOM without a VOI window.
            lo, hi = float(values.min()), float(values.max())
            img = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
        else:
            gray = im if im.mode == "L" else im.convert("L")
            img = np.asarray(gray, dtype=np.float32) / 255.0
    return img.astype(np.float32), {}


def _stage(out: Path, rel: str, data: bytes, file_key: str) -> tuple[str, str]:
    """Write `data` beside its final path under a temporary name (the commit renames it)."""
    final = out / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.{file_key}.part")
    tmp.write_bytes(data)
    return str(tmp), str(final)


def _quarantined(task: _Task, digest: str, reason_class: str, reason: str) -> Outcome:
    return Outcome(task.file_key, digest, "quarantined", reason_class, reason)


def _convert(task: _Task, config: ImportConfig) -> Outcome | None:
    """The outcome of one image; None when it is unchanged since the last import."""
    try:
        data = task.path.read_bytes()
    except FileNotFoundError:
        # No digest: never matches the state, so the next run looks for the file again.
        return _quarantined(task, "", "missing", MISSING_REASON)
    except OSError as exc:
        return _quarantined(task, "", "unreadable_image", f"cannot be read ({type(exc).__name__})")
    digest = hashlib.sha256(data + b"\x00" + task.metadata).hexdigest()
    if digest == task.known_digest:
        return None
    try:
        img, header = _decode(data, task.path.suffix.lower())
        source_shape = (int(img.shape[0]), int(img.shape[1]))
        img = resize_longest(img, config.max_side)
        check_display(img)
    except DegeneratePixels as exc:
        return _quarantined(task, digest, "degenerate_pixels", str(exc))
    except PixelError as exc:
        return _quarantined(task, digest, "unsupported_pixels", str(exc))
    except Exception as exc:  # a truncated or foreign file: quarantined, the import goes on
        reason = f"image cannot be decoded ({type(exc).__name__})"
        return _quarantined(task, digest, "unreadable_image", reason)
    mask_png = None
    if task.mask_spec:
        try:
            mask_png = _mask_png(task.mask_spec, source_shape, img.shape)
        except Exception as exc:  # a malformed spec: the image is not imported without its mask
            reason = f"mask cannot be drawn ({type(exc).__name__}: {exc})"
            return _quarantined(task, digest, "unreadable_mask", reason[:300])
    png = encode_png(img, config.png_bits)
    row = dict(task.row)
    rel = f"images/{row['subject_id']}/{row['image_id']}.png"
    staged = [_stage(config.output_dir, rel, png, task.file_key)]
    if mask_png is not None:
        row["mask_path"] = f"masks/{row['subject_id']}/{row['image_id']}.png"
        staged.append(_stage(config.output_dir, row["mask_path"], mask_png, task.file_key))
    row.update(
        image_path=rel,
        image_sha256=hashlib.sha256(png).hexdigest(),
        width=int(img.shape[1]),
        height=int(img.shape[0]),
    )
    if row.get("sex") is None and header.get("sex"):
        row["sex"] = normalize_sex(str(header["sex"]))
    if row.get("age_years") is None and header.get("age"):
        row["age_years"] = parse_age(str(header["age"]))
    audit: dict[str, Any] = {"file_key": task.file_key, "image_id": row["image_id"]}
    audit.update({a: 0 for a in AUDIT_ACTIONS})
    audit.update({f"{a}_attributes": [] for a in AUDIT_ACTIONS})
    return Outcome(task.file_key, digest, "written", row=row, audit=audit, staged=staged)


def _mask_png(spec: str, source_shape: tuple[int, int], shape: tuple[int, ...]) -> bytes:
    """The spec's packed mask, drawn at its own size (else the source image's), resized to the
    written image's `shape` in one nearest-neighbour step."""
    packed = resize_mask(packed_mask(spec, source_shape), (int(shape[0]), int(shape[1])))
    buf = io.BytesIO()
    Image.fromarray(packed).save(buf, format="PNG")
    return buf.getvalue()


_worker_config: ImportConfig | None = None


def _init_worker(config: ImportConfig) -> None:
    global _worker_config
    _worker_config = config


def _work(task: _Task) -> tuple[str, Outcome | None]:
    assert _worker_config is not None
    return task.file_key, _convert(task, _worker_config)


def _run(tasks: list[_Task], config: ImportConfig) -> Iterator[tuple[str, Outcome | None]]:
    if config.workers == 1 or len(tasks) < 2:
        yield from ((t.file_key, _convert(t, config)) for t in tasks)
        return
    with mp.get_context("fork").Pool(config.workers, _init_worker, (config,)) as pool:
        yield from pool.imap_unordered(_work, tasks, chunksize=8)


# Rows, pseudonyms, counts -------------------------------------------------------------------


def _value(v: Any) -> Any:
    """A JSON- and Arrow-friendly scalar (None for every kind of missing)."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _metadata_bytes(row: Mapping[str, Any]) -> bytes:
    return json.dumps(row, sort_keys=True, default=str, separators=(",", ":")).encode()


def _pseudonymous_row(row: Mapping[str, Any], deid: Deidentifier, run_id: str) -> dict[str, Any]:
    """The manifest-schema row of an adapter row, its dataset ids replaced by keyed pseudonyms."""
    key = deid.key
    subject = str(row["subject_id"])
    out = {name: _value(row.get(name)) for name in MANIFEST_SCHEMA.names}
    out.update(
        subject_id=deid.subject_pseudonym(subject),
        study_id=key.pseudonym("study", str(row["study_id"])),
        image_id=key.pseudonym("image", str(row["image_id"])),
        ingest_run=run_id,
        mask_path=None,  # set where the adapter describes a mask and it is drawn (_convert)
    )
    date = out.get("study_date")
    if date:
        # Dates of the manifest are shifted by the subject's keyed offset, as ingest does.
        out["study_date"] = shift_date(str(date).replace("-", ""), deid.date_shift(subject))
    for col in LABEL_COLUMNS:
        out[col] = None if out[col] is None else int(out[col])
    return out


def _mask_spec(raw: Mapping[str, Any]) -> str | None:
    """The adapter row's mask spec, None where it describes no mask."""
    spec = raw.get(MASK_SPEC_COLUMN)
    return spec if isinstance(spec, str) and spec else None


def _label_counts(frame: pd.DataFrame) -> dict[str, LabelCount]:
    return {
        col.removeprefix("label_"): LabelCount(
            positive=int((frame[col] == 1).sum()),
            negative=int((frame[col] == 0).sum()),
            unannotated=int(frame[col].isna().sum()),
        )
        for col in LABEL_COLUMNS
    }


def _file_key(key: SecretKey, dataset: str, image_path: str) -> str:
    """The PHI-free name of a source image: a keyed hash of its dataset and path."""
    return key.pseudonym("file", f"{dataset}/{image_path}", length=24)


def _run_id(file_keys: Sequence[str]) -> str:
    # The same listing gives the same id, as ingest's run ids do.
    return "import-" + hashlib.sha256("\n".join(file_keys).encode()).hexdigest()[:16]


# The import ---------------------------------------------------------------------------------


def import_dataset(source: Source, config: ImportConfig, key: SecretKey) -> ImportSummary:
    """Import one public dataset (all of its listed images) into `config.output_dir`."""
    frame = _load(source)
    log.info("%s: the metadata lists %d images", source.name, len(frame))
    return _import(
        {source.name: frame}, {source.name: frame}, {source.name: source.root}, config, key
    )


def import_datasets(
    sources: Sequence[Source],
    config: ImportConfig,
    key: SecretKey,
    *,
    evaluation: Sequence[Source] = (),
    recipe: Sequence[PretrainingSource] | None = MULTI_CXR,
) -> ImportSummary:
    """Import several datasets into one directory, as one pre-training set.

    Each source named in `recipe` is filtered by it (views, official split: the paper's
    Multi-CXR by default; `recipe=None` keeps every row); every subject (and image) of the
    `evaluation` datasets is left out (only their metadata is read, nothing of them is written).
    """
    names = [s.name for s in sources]
    if not sources:
        raise ValueError("no datasets to import")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"dataset given more than once: {', '.join(dup)}")
    frames = {s.name: _load(s) for s in sources}
    held_out = [_load(s) for s in evaluation]
    for s in sources:
        log.info("%s: the metadata lists %d images", s.name, len(frames[s.name]))
    combined = build_pretraining_manifest(frames, held_out, recipe=recipe)
    # Each source keeps its own columns (the concatenation gave it the others' extras, empty).
    kept = {
        n: combined.loc[combined["source_dataset"] == n, list(frames[n].columns)] for n in names
    }
    return _import(frames, kept, {s.name: s.root for s in sources}, config, key)


def _load(source: Source) -> pd.DataFrame:
    """The adapter's frame; an option the adapter does not take is named."""
    try:
        return load_dataset(source.name, source.root, **dict(source.options))
    except TypeError as exc:
        known = ", ".join(
            n for n in inspect.signature(get_adapter(source.name).load).parameters if n != "root"
        )
        raise ValueError(
            f"{source.name}: bad adapter option in {dict(source.options)} "
            f"(its options: {known or 'none'})"
        ) from exc


def _import(
    listed: Mapping[str, pd.DataFrame],
    kept: Mapping[str, pd.DataFrame],
    roots: Mapping[str, Path],
    config: ImportConfig,
    key: SecretKey,
) -> ImportSummary:
    out = config.output_dir
    out.mkdir(parents=True, exist_ok=True)
    with dataset_lock(out, config.lock_timeout_s):
        if recover(out):
            log.info("rolled forward the commit a killed run left in the output directory")
        return _import_locked(listed, kept, roots, config, key)


def _import_locked(
    listed: Mapping[str, pd.DataFrame],
    kept: Mapping[str, pd.DataFrame],
    roots: Mapping[str, Path],
    config: ImportConfig,
    key: SecretKey,
) -> ImportSummary:
    out = config.output_dir
    deid = Deidentifier(key)
    state = read_table(out / STATE_FILE, STATE_SCHEMA)
    known = dict(zip(state["file_key"], state["content_digest"], strict=True))

    # One task a listed image, in dataset then image order (the run id depends on it).
    entries: list[tuple[str, str, str, dict[str, Any]]] = []  # (dataset, path, file key, row)
    for name, frame in kept.items():
        for raw in frame.sort_values("image_id", kind="stable").to_dict("records"):
            rel = str(raw["image_path"])
            entries.append((name, rel, _file_key(key, name, rel), raw))
    run_id = _run_id([fk for _, _, fk, _ in entries])
    tasks = [
        _Task(
            path=roots[name] / rel,
            file_key=fk,
            known_digest=known.get(fk) or None,
            row=_pseudonymous_row(raw, deid, run_id),
            metadata=_metadata_bytes({k: _value(v) for k, v in raw.items()}),
            mask_spec=_mask_spec(raw),
        )
        for name, rel, fk, raw in entries
    ]
    log.info("importing %d images of %s into %s", len(tasks), ", ".join(kept), out)

    results: dict[str, Outcome | None] = {}
    for fk, outcome in progress_bar(
        _run(tasks, config),
        total=len(tasks),
        desc="import",
        unit="image",
        disable=not config.show_progress,
    ):
        results[fk] = outcome
    outcomes = [o for o in results.values() if o is not None]
    record = {
        "cxrflow_version": __version__,
        "source": "public datasets",
        "datasets": {n: {"listed": len(kept[n]), "root_name": roots[n].name} for n in kept},
        "found": len(tasks),
        "skipped_existing": sum(o is None for o in results.values()),
        "key_fingerprint": key.fingerprint(),
        "max_side": config.max_side,
        "png_bits": config.png_bits,
    }
    commit_outcomes(
        out, run_id, outcomes, place=lambda o: list(o.staged), discard=_discard, record=record
    )
    manifest = _add_extras(out, kept, deid)
    duplicate_keys = _duplicates(out, run_id)

    summaries = []
    by_key = {fk: (name, rel) for name, rel, fk, _ in entries}
    imported_ids = set(manifest["image_id"])
    for name in kept:
        frame = kept[name]
        mine = [fk for fk, (n, _) in by_key.items() if n == name]
        missing, unreadable, dups = [], [], 0
        for fk in mine:
            o = results[fk]
            rel = by_key[fk][1]
            if fk in duplicate_keys:
                dups += 1
            elif o is None or o.status == "written":
                continue
            elif o.reason_class == "missing":
                missing.append(rel)
            else:
                unreadable.append((rel, o.reason_class))
        ids = frame["image_id"].astype(str).map(lambda i: key.pseudonym("image", i))
        in_dataset = frame[ids.isin(imported_ids).to_numpy()]
        written = (
            sum(1 for fk in mine if (o := results[fk]) is not None and o.status == "written") - dups
        )
        summary = DatasetSummary(
            dataset=name,
            metadata_rows=len(listed[name]),
            excluded=len(listed[name]) - len(frame),
            listed=len(frame),
            written=written,
            skipped_existing=sum(results[fk] is None for fk in mine),
            missing=tuple(sorted(missing)),
            unreadable=tuple(sorted(unreadable)),
            duplicates=dups,
            subjects_listed=int(frame["subject_id"].nunique()),
            subjects_imported=int(in_dataset["subject_id"].nunique()),
            labels_listed=_label_counts(frame),
            labels_imported=_label_counts(in_dataset),
            notes=tuple(notes(listed[name])),
        )
        _log_summary(summary)
        summaries.append(summary)

    splits = _official_splits(manifest, {s for f in kept.values() for s in f["source_dataset"]})
    result = ImportSummary(
        run_id=run_id,
        output_dir=out,
        key_fingerprint=key.fingerprint(),
        datasets=tuple(summaries),
        subjects_by_official_split=splits,
    )
    if not result.reconciles:  # pragma: no cover - a bug, not an input problem
        raise RuntimeError(f"import counts do not reconcile: {result.to_dict()}")
    return result


def _discard(outcome: Outcome) -> None:
    """Drop the staged PNG of an image that will not enter the dataset (a duplicate)."""
    for tmp, _ in outcome.staged:
        Path(tmp).unlink(missing_ok=True)


def _duplicates(out: Path, run_id: str) -> set[str]:
    """File keys this run quarantined as duplicates of an image already in the dataset."""
    path = out / QUARANTINE_FILE
    if not path.is_file():
        return set()
    q = pd.read_parquet(path)
    return set(q.loc[(q["ingest_run"] == run_id) & (q["reason_class"] == "duplicate"), "file_key"])


def _add_extras(out: Path, kept: Mapping[str, pd.DataFrame], deid: Deidentifier) -> pd.DataFrame:
    """Put the adapters' extra columns on the manifest rows of these datasets; the manifest.

    `commit_outcomes` writes the schema's columns only. This pass runs on every import (under
    the same lock) over every listed image, so a run killed between the two writes is made
    whole by the next.
    """
    path = out / MANIFEST_FILE
    if not path.is_file():
        return read_manifest(path)
    manifest = read_manifest(path)
    extras: dict[str, dict[str, Any]] = {}
    for frame in kept.values():
        cols = [c for c in frame.columns if c not in MANIFEST_SCHEMA.names]
        cols = [c for c in cols if c not in DROPPED_EXTRAS]
        for raw in frame[["image_id", *cols]].to_dict("records"):
            pid = deid.key.pseudonym("image", str(raw.pop("image_id")))
            extras[pid] = {c: _value(v) for c, v in raw.items()}
    if not extras:
        return manifest
    columns = sorted({c for e in extras.values() for c in e})
    rows = manifest["image_id"].map(extras)
    hit = rows.notna()
    if not hit.any():
        return manifest
    for col in columns:
        if col not in manifest.columns:
            manifest[col] = pd.Series(None, index=manifest.index, dtype=object)
        else:
            manifest[col] = manifest[col].astype(object)
        manifest.loc[hit, col] = [r.get(col) for r in rows[hit]]
    _write_manifest(manifest, path)
    return manifest


def _official_splits(manifest: pd.DataFrame, datasets: set[str]) -> dict[str, int]:
    """Subjects of these datasets by official split ("none": left to the split stage)."""
    rows = manifest[manifest["source_dataset"].isin(datasets)]
    if "official_split" in rows.columns:
        official = rows["official_split"].astype(object)
        split = official.where(official.notna(), NO_SPLIT)
    else:
        split = pd.Series(NO_SPLIT, index=rows.index)
    counts = Counter(
        pd.DataFrame({"s": rows["subject_id"], "split": split}).drop_duplicates()["split"]
    )
    return dict(sorted(counts.items()))


def _log_summary(s: DatasetSummary) -> None:
    log.info(
        "%s: listed %d (of %d in the metadata, %d excluded) = written %d + already imported %d "
        "+ missing %d + unreadable %d + duplicates %d; subjects %d of %d",
        s.dataset,
        s.listed,
        s.metadata_rows,
        s.excluded,
        s.written,
        s.skipped_existing,
        len(s.missing),
        len(s.unreadable),
        s.duplicates,
        s.subjects_imported,
        s.subjects_listed,
    )
    if s.missing:
        log.warning(
            "%s: %d listed image files not found, e.g. %s",
            s.dataset,
            len(s.missing),
            ", ".join(s.missing[:5]),
        )
    if s.unreadable:
        log.warning(
            "%s: %d images could not be decoded, e.g. %s",
            s.dataset,
            len(s.unreadable),
            ", ".join(f"{p} ({r})" for p, r in s.unreadable[:5]),
        )
    for note in s.notes:
        log.warning("%s", note)
