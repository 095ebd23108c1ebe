import itertools

import pytest

from cxrflow.deid.table import OPTION_COLUMNS, Action, load_profile_table, parse_code


def test_table_is_complete_and_every_attribute_has_an_action():
    table = load_profile_table()
    assert len(table) >= 450  # Table E.1-1 lists ~460 attributes; a truncated copy fails here
    for rule in table.rules:
        for n in range(len(OPTION_COLUMNS) + 1):
            for opts in itertools.combinations(OPTION_COLUMNS, n):
                assert isinstance(rule.action(frozenset(opts)), Action), rule


@pytest.mark.parametrize(
    ("tag", "basic", "with_options"),
    [
        (0x00100010, Action.EMPTY, Action.EMPTY),  # Patient's Name
        (0x00100020, Action.EMPTY, Action.EMPTY),  # Patient ID
        (0x00080018, Action.UID, Action.UID),  # SOP Instance UID
        (0x00080020, Action.EMPTY, Action.CLEAN),  # Study Date: shifted with Modified Dates
        (
            0x00101010,
            Action.REMOVE,
            Action.KEEP,
        ),  # Patient's Age: kept with Patient Characteristics
        (0x00100040, Action.EMPTY, Action.KEEP),  # Patient's Sex
        (0x00081030, Action.REMOVE, Action.CLEAN),  # Study Description: Clean Descriptors
        (0x00101000, Action.REMOVE, Action.REMOVE),  # Other Patient IDs
        (0x00181000, Action.DUMMY, Action.DUMMY),  # Device Serial Number (X/Z/D)
    ],
)
def test_known_rows(tag, basic, with_options):
    rule = load_profile_table().rule_for(tag)
    assert rule is not None
    assert rule.action(frozenset()) is basic
    assert (
        rule.action(frozenset({"rtn_pat_chars", "rtn_long_modif_dates", "clean_desc"}))
        is with_options
    )


def test_masked_rows_match_repeating_groups():
    table = load_profile_table()
    assert table.rule_for(0x50123456).name == "Curve Data"
    assert table.rule_for(0x60024000).name.startswith("Overlay Comments")
    assert table.rule_for(0x00280010) is None  # Rows is not in the table


def test_unknown_code_is_refused():
    with pytest.raises(ValueError, match=r"unknown Table E\.1-1 action code"):
        parse_code("Q")
