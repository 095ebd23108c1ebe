"""Why a multi-node stage did not deliver: the launcher's errors (all `LaunchError`s)."""

from __future__ import annotations


class LaunchError(RuntimeError):
    """The distributed job could not be created, did not succeed, or left no outputs."""


class JobFailedError(LaunchError):
    """The job reached its Failed condition."""


class JobTimeoutError(LaunchError):
    """The job did not finish within the time limit."""


class EncoderMissingError(LaunchError):
    """The job succeeded but its exported encoder is not on the shared volume."""


class ReportModelMissingError(LaunchError):
    """The job succeeded but the saved report model or its metrics are not on the shared volume."""
