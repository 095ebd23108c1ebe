"""The retraining gate: train only when the data changed since the champion encoder."""

from __future__ import annotations

import logging
from typing import Any

from cxrflow.registry.versions import version_by_alias
from cxrflow.tags import CHAMPION, ENCODER_MODEL, TAG_DATA_VERSION
from cxrflow.versioning.dvc import normalise_md5

log = logging.getLogger(__name__)


def champion_data_version(champion_model: str = ENCODER_MODEL, client: Any = None) -> str | None:
    """The data version the `champion` of `champion_model` was trained on (None: no champion)."""
    mv = version_by_alias(champion_model, CHAMPION, client)
    if mv is None:
        return None
    return normalise_md5(str(dict(mv.tags).get(TAG_DATA_VERSION, "")))


def data_changed(
    data_version: str, champion_model: str = ENCODER_MODEL, *, client: Any = None
) -> bool:
    """True unless the champion was trained on exactly `data_version` (True with no champion)."""
    return compare_with_champion(data_version, champion_model, client=client)[0]


def compare_with_champion(
    data_version: str, champion_model: str = ENCODER_MODEL, *, client: Any = None
) -> tuple[bool, str | None]:
    """(data changed?, the champion's data version or None), from one registry look-up."""
    if not data_version:
        raise ValueError("data_version: must not be empty")
    trained_on = champion_data_version(champion_model, client)
    changed = trained_on != normalise_md5(data_version)
    log.info(
        "data version %s, %s@%s trained on %s: %s",
        data_version[:12],
        champion_model,
        CHAMPION,
        (trained_on or "-")[:12] if trained_on is not None else "(no champion)",
        "changed" if changed else "unchanged, training can be skipped",
    )
    return changed, trained_on
