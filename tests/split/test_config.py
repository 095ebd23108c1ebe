import pytest

from cxrflow.split import PAPER_60_20_20, SPLIT_80_10_10, SplitConfig, parse_ratios, preset


@pytest.mark.parametrize(
    "ratios",
    [(0.7, 0.2, 0.2), (0.5, 0.5, 0.0), (1.2, -0.1, -0.1), (0.5, 0.5), (0.7, 0.15, 0.1500011)],
)
def test_wrong_ratios_are_refused_naming_ratios(ratios):
    with pytest.raises(ValueError, match="ratios"):
        SplitConfig(ratios=ratios)


def test_ratios_within_the_tolerance_are_accepted():
    assert SplitConfig(ratios=(0.7, 0.15, 0.1500001)).ratios[2] == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("field", "value"),
    [("mode", "random"), ("folds", 1), ("folds", 2.5), ("seed", ""), ("official_column", "")],
)
def test_other_bad_parameters_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        SplitConfig(**{field: value})


def test_presets():
    assert PAPER_60_20_20.ratios == (0.6, 0.2, 0.2)
    assert SPLIT_80_10_10.ratios == (0.8, 0.1, 0.1)
    assert preset("60/20/20", mode="stratified") == SplitConfig(
        ratios=(0.6, 0.2, 0.2), mode="stratified"
    )
    with pytest.raises(ValueError, match="preset"):
        preset("50/25/25")


def test_parse_ratios():
    assert parse_ratios("0.7,0.15,0.15") == (0.7, 0.15, 0.15)
    assert parse_ratios("60/20/20") == pytest.approx((0.6, 0.2, 0.2))
    with pytest.raises(ValueError, match="ratios"):
        parse_ratios("0.5,0.5")
