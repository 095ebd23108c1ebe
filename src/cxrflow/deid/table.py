"""PS3.15 Table E.1-1 as data: one rule per attribute, resolved to one action per option set.

The table lives in `table_e1_1.csv` beside this module (see TABLE_E1_1_SOURCE.md). Rules are
matched by tag, never by keyword, so elements with VR UN or unknown keywords are caught; the
table's masked rows (e.g. `50XXXXXX` curve data, `60XX4000` overlay comments) match whole
repeating groups.
"""

from __future__ import annotations

import csv
import enum
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

OPTION_COLUMNS: Final[tuple[str, ...]] = (
    "rtn_safe_priv",
    "rtn_uids",
    "rtn_dev_id",
    "rtn_inst_id",
    "rtn_pat_chars",
    "rtn_long_full_dates",
    "rtn_long_modif_dates",
    "clean_desc",
    "clean_struct_cont",
    "clean_graph",
)


class Action(enum.StrEnum):
    """A concrete action on one attribute, after the table's combined codes are resolved."""

    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"


# Combined codes depend on the attribute's type in the IOD (Type 1 needs a dummy, Type 2 an
# empty value, Type 3 may go). Without per-IOD module tables we take, for each combination,
# the action that keeps every IOD valid while disclosing nothing: a dummy or empty value is
# never more revealing than removal, and removal of a Type 1/2 attribute makes the file
# invalid.
_COMBINED: Final[dict[str, Action]] = {
    "X/Z": Action.EMPTY,
    "X/D": Action.DUMMY,
    "Z/D": Action.DUMMY,
    "X/Z/D": Action.DUMMY,
    "X/Z/U*": Action.UID,
    "X/Z/U": Action.UID,
}


def parse_code(code: str) -> Action:
    """Turn a table cell (`X`, `Z/D`, `X/Z/U*`, ...) into one concrete action."""
    code = code.strip()
    if code in _COMBINED:
        return _COMBINED[code]
    try:
        return Action(code.rstrip("*"))
    except ValueError as exc:
        raise ValueError(f"unknown Table E.1-1 action code {code!r}") from exc


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1."""

    tag: str  # 8 hex digits, upper case; X for wildcard nibbles
    name: str
    basic: str
    options: tuple[tuple[str, str], ...]  # (option column, code) for non-empty cells

    @property
    def is_masked(self) -> bool:
        return "X" in self.tag

    def matches(self, tag: int) -> bool:
        hex_tag = f"{tag:08X}"
        return all(p in ("X", h) for p, h in zip(self.tag, hex_tag, strict=True))

    def action(self, enabled_options: frozenset[str]) -> Action:
        """The action under the given options: an option's code overrides the basic profile.

        Where two enabled options disagree, cleaning wins over keeping: it is the more
        protective of the two and still what the option asks for.
        """
        codes = [code for col, code in self.options if col in enabled_options]
        if not codes:
            return parse_code(self.basic)
        actions = {parse_code(c) for c in codes}
        if Action.CLEAN in actions:
            return Action.CLEAN
        return actions.pop() if len(actions) == 1 else Action.CLEAN


@dataclass(frozen=True)
class ProfileTable:
    """All rules of Table E.1-1, indexed for lookup by tag."""

    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        exact = {r.tag: r for r in self.rules if not r.is_masked}
        object.__setattr__(self, "_exact", {int(t, 16): r for t, r in exact.items()})
        object.__setattr__(self, "_masked", tuple(r for r in self.rules if r.is_masked))

    def rule_for(self, tag: int) -> Rule | None:
        """The rule that covers `tag`, or None when the table does not list it."""
        rule = self._exact.get(tag)  # type: ignore[attr-defined]
        if rule is not None:
            return rule
        for masked in self._masked:  # type: ignore[attr-defined]
            if masked.matches(tag):
                return masked
        return None

    def __len__(self) -> int:
        return len(self.rules)


@cache
def load_profile_table() -> ProfileTable:
    """Load the packaged Table E.1-1."""
    text = resources.files("cxrflow.deid").joinpath("table_e1_1.csv").read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    rules = []
    for row in rows:
        tag = row["tag"].strip().upper()
        if len(tag) != 8:
            raise ValueError(f"Table E.1-1 row {row['name']!r} has a malformed tag {tag!r}")
        options = tuple(
            (col, row[col].strip()) for col in OPTION_COLUMNS if row.get(col, "").strip()
        )
        rules.append(Rule(tag=tag, name=row["name"], basic=row["basic"].strip(), options=options))
    return ProfileTable(rules=tuple(rules))
