"""SSLMetaArch: the teacher is built as upstream's (no drop path, always in eval mode)."""

import torch
from timm.layers import DropPath

from cxrflow.ssl.meta_arch import SSLMetaArch
from tests.ssl.conftest import micro_config, random_batch


def _drop_rates(module: torch.nn.Module) -> list[float]:
    return [m.drop_prob for m in module.modules() if isinstance(m, DropPath)]


def _model(**changes) -> SSLMetaArch:
    torch.manual_seed(0)
    return SSLMetaArch(micro_config(drop_path_rate=0.1, **changes))


def test_teacher_has_no_drop_path_and_stays_in_eval_mode() -> None:
    model = _model(centering="sinkhorn_knopp")
    model.train()
    assert not any(m.training for m in model.teacher.modules())
    assert model.student.training and model.student["backbone"].blocks[0].training
    assert _drop_rates(model.teacher) == []
    depth = model.student["backbone"].n_blocks
    assert _drop_rates(model.student["backbone"]) == [0.1] * (2 * depth)
    batch = random_batch(model.cfg)
    first_cls, first_patches = model.teacher_targets(batch, 0.04)
    second_cls, second_patches = model.teacher_targets(batch, 0.04)
    for a, b in zip(first_cls, second_cls, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(first_patches, second_patches)
    # the student does drop paths in train mode
    backbone = model.student["backbone"]
    a = backbone.forward_features(batch["global_crops"])["x_norm_clstoken"]
    b = backbone.forward_features(batch["global_crops"])["x_norm_clstoken"]
    assert not torch.equal(a, b)
    model.eval()
    assert not any(m.training for m in model.modules())


def test_teacher_starts_as_the_student_and_ema_pairs_parameters_by_name() -> None:
    model = _model(ibot_separate_head=True)
    student = dict(model.student.named_parameters())
    teacher = dict(model.teacher.named_parameters())
    assert student.keys() == teacher.keys()
    for name, p in teacher.items():
        assert torch.equal(p, student[name]) and not p.requires_grad, name
    before = {n: p.detach().clone() for n, p in teacher.items()}
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(torch.randn_like(p))
    model.update_teacher(0.75)
    for name, p in teacher.items():
        expected = 0.75 * before[name] + 0.25 * student[name]
        torch.testing.assert_close(p, expected, rtol=1e-6, atol=1e-6, msg=name)
