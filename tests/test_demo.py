"""The demo's closing words on pre-training are computed from the logged losses."""

from cxrflow.demo import explain_pretraining


def test_a_rising_loss_with_a_falling_kl_is_explained_by_the_teacher() -> None:
    text = explain_pretraining(
        {
            "loss": (7.0, 9.1),
            "dino_loss": (6.93, 8.0),
            "dino_teacher_entropy": (6.9, 7.9),
            "dino_kl": (0.03, 0.01),
        },
        80,
    )
    assert text.startswith("loss 7.00 -> 9.10 over 80 steps")
    assert (
        "teacher entropy (6.90 -> 7.90)" in text and "KL(teacher || student) (0.03 -> 0.01)" in text
    )
    assert "got closer" in text


def test_a_rising_kl_is_not_called_learning() -> None:
    text = explain_pretraining(
        {
            "loss": (7.0, 9.0),
            "dino_loss": (6.9, 8.0),
            "dino_teacher_entropy": (6.9, 6.0),
            "dino_kl": (0.0, 2.0),
        },
        80,
    )
    assert "not caught up" in text and "got closer" not in text


def test_without_the_terms_only_the_loss_is_stated() -> None:
    assert explain_pretraining({"loss": (7.0, 3.7)}, 300) == "loss 7.00 -> 3.70 over 300 steps"
    assert explain_pretraining({}, 300) == "pre-training logged no loss"
