"""Versioned data: DVC versions of the dataset directory, and the retraining gate on them."""

from cxrflow.versioning.checkout import checkout_version
from cxrflow.versioning.dvc import (
    DEFAULT_REMOTE_NAME,
    PARENT_FILE,
    REMOTE_ENV_VAR,
    DataVersion,
    VersioningError,
    commit_version,
    default_remote,
    dvc_file_for,
    dvc_project_for,
    ensure_repo,
    normalise_md5,
    read_version,
)
from cxrflow.versioning.history import (
    MissingParent,
    VersionHistory,
    known_version,
    version_history,
)

__all__ = [
    "DEFAULT_REMOTE_NAME",
    "PARENT_FILE",
    "REMOTE_ENV_VAR",
    "DataVersion",
    "MissingParent",
    "VersionHistory",
    "VersioningError",
    "checkout_version",
    "commit_version",
    "default_remote",
    "dvc_file_for",
    "dvc_project_for",
    "ensure_repo",
    "known_version",
    "normalise_md5",
    "read_version",
    "version_history",
]
