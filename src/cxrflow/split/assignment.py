"""The frozen split assignment kept with a dataset version (`splits.parquet`).

Once a subject has a split it keeps it: later ingests only add subjects, and new subjects
are hashed, so a model evaluated on a version's test split never saw those subjects in
training on any other version.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxrflow.split.config import SPLITS, SplitConfig
from cxrflow.split.hashing import bucket, hash_splits
from cxrflow.split.stratified import stratified_split

log = logging.getLogger(__name__)

SPLITS_FILE = "splits.parquet"
SPLIT_COLUMN = "split"
# "filled": a new subject moved into a split that hashing left empty (see `fill_empty_splits`)
METHODS: tuple[str, ...] = ("hash", "stratified", "official", "filled")
SPLITS_SCHEMA = pa.schema(
    [
        pa.field("subject_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("assigned_in", pa.string(), nullable=False),
    ]
)


class SplitAssignmentError(ValueError):
    """The manifest or the frozen assignment cannot be split as asked."""


def empty_splits() -> pd.DataFrame:
    """A frozen assignment with no subjects."""
    return SPLITS_SCHEMA.empty_table().to_pandas()


def validate_splits(frozen: pd.DataFrame) -> pd.DataFrame:
    """Check a frozen assignment's columns and values; return it in canonical order."""
    missing = [c for c in SPLITS_SCHEMA.names if c not in frozen.columns]
    if missing:
        raise SplitAssignmentError(f"frozen assignment is missing columns: {', '.join(missing)}")
    out = frozen[list(SPLITS_SCHEMA.names)].astype(str)
    dup = out["subject_id"].duplicated(keep=False)
    if dup.any():
        raise SplitAssignmentError(
            f"frozen assignment lists {out.loc[dup, 'subject_id'].nunique()} subjects twice"
        )
    bad = sorted(set(out["split"]) - set(SPLITS))
    if bad:
        raise SplitAssignmentError(f"frozen assignment has unknown splits: {', '.join(bad)}")
    bad = sorted(set(out["method"]) - set(METHODS))
    if bad:
        raise SplitAssignmentError(f"frozen assignment has unknown methods: {', '.join(bad)}")
    return out.sort_values("subject_id", kind="stable").reset_index(drop=True)


def read_splits(path: Path) -> pd.DataFrame:
    """Read and check `splits.parquet`."""
    return validate_splits(pq.read_table(path).to_pandas())


def write_splits(frozen: pd.DataFrame, path: Path) -> None:
    """Write atomically, sorted by subject_id so that equal content gives equal bytes."""
    table = pa.Table.from_pandas(validate_splits(frozen), preserve_index=False)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table.cast(SPLITS_SCHEMA), tmp, compression="zstd")
    tmp.replace(path)


def official_subject_splits(manifest: pd.DataFrame, column: str) -> pd.Series:
    """The official split of each subject that has one (Series indexed by subject_id)."""
    if column not in manifest.columns:
        raise SplitAssignmentError(f"official mode needs the manifest column {column!r}")
    values = manifest[column].astype("string").str.strip().str.lower()
    known = values.notna() & (values != "")
    bad = sorted(set(values[known]) - set(SPLITS))
    if bad:
        raise SplitAssignmentError(
            f"column {column!r} has values other than {'/'.join(SPLITS)}: {', '.join(bad[:5])}"
        )
    pairs = pd.DataFrame(
        {"subject_id": manifest.loc[known, "subject_id"].astype(str), "split": values[known]}
    ).drop_duplicates()
    counts = pairs["subject_id"].value_counts()
    torn = counts[counts > 1]
    if len(torn):
        raise SplitAssignmentError(
            f"{len(torn)} subjects have images in more than one official split "
            f"(column {column!r}), e.g. {', '.join(sorted(torn.index)[:5])}"
        )
    return pairs.set_index("subject_id")["split"].astype(object).sort_index()


def _origin(manifest: pd.DataFrame, subjects: pd.Index, given: str) -> pd.Series:
    """Where each new subject was assigned: the given id, else its (first) ingest_run."""
    if given:
        return pd.Series(given, index=subjects, dtype=object)
    if "ingest_run" not in manifest.columns:
        return pd.Series("", index=subjects, dtype=object)
    runs = manifest.groupby(manifest["subject_id"].astype(str))["ingest_run"].min()
    return runs.reindex(subjects).fillna("").astype(str)


def _warn_official_changes(official: pd.Series, known: pd.Series) -> None:
    """Log known subjects whose official split differs from their frozen one."""
    shared = official.reindex(known.index).dropna()
    changed = int((shared != known.reindex(shared.index)).sum())
    if changed:
        log.warning(
            "%d known subjects have an official split other than their frozen one; "
            "the frozen split is kept",
            changed,
        )


def fill_empty_splits(
    known: pd.Series, new: pd.Series, method: pd.Series, config: SplitConfig
) -> tuple[pd.Series, pd.Series]:
    """Move new subjects into splits that would otherwise have no subject at all.

    Hashing 16 subjects at 70/15/15 leaves val empty 7% of the time (0.85^16), and a pipeline
    then fails at the heads stage after pre-training. Each empty split takes the new subject,
    from a split that keeps at least one subject, whose hash bucket lies nearest to the empty
    split's interval: deterministic for a given set of subjects; frozen subjects and subjects
    with an official split never move.
    """
    new, method = new.copy(), method.copy()
    for name in SPLITS:
        if (known == name).any() or (new == name).any():
            continue
        counts = pd.concat([known, new]).value_counts()
        # a dataset's official split is kept as published
        donors = [s for s in new.index if counts[new[s]] > 1 and method[s] != "official"]
        if not donors:
            log.warning("split %s is empty and no new subject can move into it", name)
            continue
        lo = sum(config.ratios[: SPLITS.index(name)])
        hi = lo + config.ratios[SPLITS.index(name)]
        centre = (lo + hi) / 2
        chosen = min(donors, key=lambda s: (abs(bucket(s, config.seed) - centre), s))
        log.info("split %s was empty: new subject moved there from %s", name, new[chosen])
        new[chosen], method[chosen] = name, "filled"
    return new, method


def assign_splits(
    manifest_df: pd.DataFrame, config: SplitConfig, frozen: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give every manifest row its subject's split; returns (manifest with split, frozen).

    Subjects in `frozen` keep their split. New subjects are hashed, except on a first split
    (no frozen subjects yet) in stratified mode, and in official mode where the manifest's
    official column gives them one; a split left without any subject takes one new subject
    that has no official split (`fill_empty_splits`). Frozen subjects absent from the manifest
    are kept.
    """
    if "subject_id" not in manifest_df.columns:
        raise SplitAssignmentError("manifest has no subject_id column")
    if manifest_df["subject_id"].isna().any():
        raise SplitAssignmentError("manifest has rows without a subject_id")
    frozen = empty_splits() if frozen is None else validate_splits(frozen)
    subject_ids = manifest_df["subject_id"].astype(str)
    subjects = pd.Index(sorted(subject_ids.unique()), name="subject_id")
    known = frozen.set_index("subject_id")["split"]
    new = subjects.difference(known.index)

    split = pd.Series(index=new, dtype=object)
    method = pd.Series(index=new, dtype=object)
    if config.mode == "official":  # checked on every run, not only when subjects are new
        official = official_subject_splits(manifest_df, config.official_column)
        _warn_official_changes(official, known)
    if len(new):
        if config.mode == "official":
            has = new.intersection(official.index)
            rest = new.difference(has)
            hashed = hash_splits(rest, config.seed, config.ratios)
            split = pd.concat([official.reindex(has), hashed])
            method = pd.Series("official", index=has, dtype=object).combine_first(
                pd.Series("hash", index=rest, dtype=object)
            )
        elif config.mode == "stratified" and known.empty:
            new_rows = manifest_df[subject_ids.isin(new)]
            split = stratified_split(new_rows, config.ratios, config.seed, config.label_columns)
            method = pd.Series("stratified", index=new, dtype=object)
        else:
            if config.mode == "stratified":
                log.info("frozen assignment exists: %d new subjects are hashed", len(new))
            split = hash_splits(new, config.seed, config.ratios)
            method = pd.Series("hash", index=new, dtype=object)
    if len(new):
        split, method = fill_empty_splits(known, split.reindex(new), method.reindex(new), config)
    log.info("%d subjects kept their frozen split, %d new", len(subjects) - len(new), len(new))

    added = pd.DataFrame(
        {
            "subject_id": new.astype(str),
            "split": split.reindex(new).to_numpy(),
            "method": method.reindex(new).to_numpy(),
            "assigned_in": _origin(manifest_df, new, config.assigned_in).to_numpy(),
        }
    )
    updated = validate_splits(pd.concat([frozen, added], ignore_index=True))
    lookup = updated.set_index("subject_id")["split"]
    out = manifest_df.copy()
    out[SPLIT_COLUMN] = subject_ids.map(lookup).astype(object).to_numpy()
    return out, updated
