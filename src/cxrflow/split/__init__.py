"""Splitting a dataset by subject: hashed, stratified or official, frozen per data version."""

from cxrflow.split.assignment import (
    SPLIT_COLUMN,
    SPLITS_FILE,
    SPLITS_SCHEMA,
    SplitAssignmentError,
    assign_splits,
    empty_splits,
    official_subject_splits,
    read_splits,
    write_splits,
)
from cxrflow.split.config import (
    PAPER_60_20_20,
    PRESETS,
    SPLIT_80_10_10,
    SPLITS,
    SplitConfig,
    SplitMode,
    parse_ratios,
    preset,
)
from cxrflow.split.folds import stratified_subject_folds, subject_folds
from cxrflow.split.hashing import bucket, hash_split, hash_splits, split_of_bucket
from cxrflow.split.leakage import LeakageError, check_leakage, leaking_subjects
from cxrflow.split.report import (
    max_prevalence_deviation,
    prevalence_table,
    report_markdown,
    split_digest,
    split_report,
)
from cxrflow.split.stratified import (
    SubjectLabels,
    iterative_stratification,
    stratified_split,
    subject_labels,
)

__all__ = [
    "PAPER_60_20_20",
    "PRESETS",
    "SPLITS",
    "SPLITS_FILE",
    "SPLITS_SCHEMA",
    "SPLIT_80_10_10",
    "SPLIT_COLUMN",
    "LeakageError",
    "SplitAssignmentError",
    "SplitConfig",
    "SplitMode",
    "SubjectLabels",
    "assign_splits",
    "bucket",
    "check_leakage",
    "empty_splits",
    "hash_split",
    "hash_splits",
    "iterative_stratification",
    "leaking_subjects",
    "max_prevalence_deviation",
    "official_subject_splits",
    "parse_ratios",
    "preset",
    "prevalence_table",
    "read_splits",
    "report_markdown",
    "split_digest",
    "split_of_bucket",
    "split_report",
    "stratified_split",
    "stratified_subject_folds",
    "subject_folds",
    "subject_labels",
    "write_splits",
]
