"""Versioned data: DVC versions of the dataset directory, and the retraining gate on them."""

from cxrflow.versioning.dvc import (
    DEFAULT_REMOTE_NAME,
    PARENT_FILE,
    DataVersion,
    VersioningError,
    checkout_version,
    commit_version,
    dvc_file_for,
    ensure_repo,
    normalise_md5,
    read_version,
    version_history,
)

__all__ = [
    "DEFAULT_REMOTE_NAME",
    "PARENT_FILE",
    "DataVersion",
    "VersioningError",
    "checkout_version",
    "commit_version",
    "dvc_file_for",
    "ensure_repo",
    "normalise_md5",
    "read_version",
    "version_history",
]
