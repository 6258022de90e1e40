"""Training-based techniques: the shared loop, fine-tuning, low-rank factorization,
distillation and quantization-aware training, measured end to end on the artifacts."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from optim import measure
from optim import plan as plans
from optim.build import Settings, build, evaluate
from optim.sources import Split, sample_source
from optim.techniques import QAT, Distill, FineTune, LowRank, Quantize, StructuredPrune
from optim.techniques._students import student
from optim.techniques.lowrank import factorize
from optim.techniques.qat import fake_quantize
from optim.techniques.quantize import quantize_array
from optim.train import fit, kd_loss, logits, random_shift, train_val_split
from sample_models import SAMPLES

FAST = Settings(min_seconds=0.05)


def _accuracy(source, plan, tmp_path) -> float:
    out_dir = tmp_path / hashlib.sha1(plans.key(plan).encode()).hexdigest()[:12]
    row, _ = evaluate(source, plan, out_dir, FAST, None)
    return row.accuracy


def _state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ the training loop


def test_validation_split_is_carved_from_train_only():
    source = sample_source("cancer_mlp")
    fit_part, val = train_val_split(source, seed=0)
    train = source.splits["train"]
    assert len(fit_part) + len(val) == len(train) and len(val) == round(0.15 * len(train))
    rows = {r.tobytes() for r in train.x}
    assert all(r.tobytes() in rows for r in np.concatenate([fit_part.x, val.x]))
    assert not {r.tobytes() for r in fit_part.x} & {r.tobytes() for r in val.x}
    again, _ = train_val_split(source, seed=0)
    np.testing.assert_array_equal(again.x, fit_part.x)


def test_fit_is_deterministic_leaves_its_input_and_never_reads_test():
    source = sample_source("cancer_mlp")
    torch.manual_seed(0)
    model = student("mlp", 1.0, source.input_shape, 2)  # untrained: every epoch changes it
    model[0].fit(torch.tensor(source.splits["train"].x))  # its input standardization
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = fit(model, source, epochs=2, lr=1e-3, seed=0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    test = source.splits["test"]
    poisoned = dataclasses.replace(  # NaN test inputs would poison anything trained on them
        source, splits={**source.splits, "test": Split(np.full_like(test.x, np.nan), test.y)}
    )
    b = fit(model, poisoned, epochs=2, lr=1e-3, seed=0)
    assert a is not model and not _state_equal(a, model) and _state_equal(a, b)
    assert not _state_equal(a, fit(model, source, epochs=2, lr=1e-3, seed=1))


def test_fit_trains_batchnorm_models_and_returns_eval_mode():
    source = sample_source("digits_cnn")
    model = student("other", 0.5, (1, 8, 8), 10)  # the generic student has BatchNorm
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    trained = fit(model, source, epochs=2, lr=3e-3)
    assert not any(m.training for m in trained.modules())
    val = train_val_split(source)[1]
    pred = logits(trained, torch.tensor(val.x)).argmax(1).numpy()
    assert (pred == val.y).mean() > 0.5  # from 10 % (chance) in two epochs


def test_random_shift_translates_each_image_and_zero_fills():
    x = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4).repeat(8, 1, 1, 1)  # (8, 1, 4, 4)
    out = random_shift(x, 1, torch.Generator().manual_seed(0))
    padded = F.pad(x[0], (1, 1, 1, 1))
    views = [padded[:, dy : dy + 4, dx : dx + 4] for dy in range(3) for dx in range(3)]
    for img in out:  # each one is the image moved by at most a pixel, zeros coming in
        assert any(torch.equal(img, v) for v in views)
    assert len({tuple(img.flatten().tolist()) for img in out}) > 1  # not all the same shift
    assert random_shift(x, 0, torch.Generator()) is x


def test_kd_loss_hand_computed():
    s, t, y = torch.tensor([[math.log(3.0), 0.0]]), torch.zeros(1, 2), torch.tensor([0])
    # teacher (0.5, 0.5), student (0.75, 0.25): KL = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25)
    kl = 0.5 * math.log(4 / 3)
    assert kd_loss(s, t, y, temperature=1.0, alpha=1.0).item() == pytest.approx(kl, rel=1e-6)
    assert kd_loss(s, t, y, 1.0, 0.0).item() == pytest.approx(F.cross_entropy(s, y).item())
    assert kd_loss(s, s, y, 4.0, 1.0).item() == pytest.approx(0.0, abs=1e-7)


# ------------------------------------------------------------------ fine-tuning


@pytest.mark.slow
def test_finetune_recovers_structured_pruning(tmp_path):
    source = sample_source("digits_cnn")
    base = _accuracy(source, (), tmp_path)
    pruned = _accuracy(source, (StructuredPrune(0.5),), tmp_path)
    tuned = _accuracy(source, (StructuredPrune(0.5), FineTune(3)), tmp_path)
    assert pruned < base - 0.1  # half the channels gone really does hurt (~74 %)
    assert tuned >= base - 0.03


# ------------------------------------------------------------------ low-rank


@pytest.mark.parametrize(
    "layer", [nn.Linear(24, 16), nn.Conv2d(6, 10, 3, stride=2, padding=1), nn.Conv2d(3, 8, 1)]
)
def test_full_rank_factorization_reproduces_the_layer(layer):
    torch.manual_seed(0)
    shape = (4, 24) if isinstance(layer, nn.Linear) else (4, layer.in_channels, 9, 9)
    x = torch.randn(shape)
    pair = factorize(layer, min(layer.weight.flatten(1).shape))
    with torch.no_grad():
        torch.testing.assert_close(pair(x), layer(x), atol=1e-4, rtol=0)


def test_rank_by_ratio_and_by_energy_hand_computed():
    s = torch.tensor([4.0, 2.0, 1.0, 1.0, 0.0])  # energies 16, 4, 1, 1, 0 of 22
    assert LowRank(0.5).rank(s) == 3  # ceil(2.5)
    assert LowRank(energy=0.9).rank(s) == 2  # 20/22 = 0.91 >= 0.9
    assert LowRank(energy=0.95).rank(s) == 3  # 21/22 = 0.955
    assert LowRank(energy=1.0).rank(s) == 4  # the zero singular value is never needed


def test_low_rank_keeps_the_classifier_and_skips_layers_it_would_grow():
    source = sample_source("cancer_mlp")
    ctx = plans.Context(source)
    model = source.build()
    same = plans.apply(model, (LowRank(1.0),), ctx)  # full rank never saves weights
    assert [type(m) for m in same.modules()] == [type(m) for m in model.modules()]
    small = plans.apply(model, (LowRank(0.25),), ctx)
    assert small[-1].weight.shape == model[-1].weight.shape  # the head is kept
    assert isinstance(small[1], nn.Sequential) and small[1][0].out_features == 8  # 30->64: r=8


def test_low_rank_exports_smaller_factors():
    source = sample_source("digits_cnn")
    base, base_flops = build(source, ())
    small, small_flops = build(source, (LowRank(0.5),))

    def params(graph) -> int:
        return sum(math.prod(t.dims) for t in graph.model.graph.initializer if t.data_type == 1)

    def convs(graph) -> int:
        return sum(node.op_type == "Conv" for node in graph.model.graph.node)

    assert convs(base) == 3 and convs(small) == 6  # each conv -> k x k to r, then 1x1
    assert small_flops < 0.65 * base_flops
    assert params(small) < 0.65 * params(base)


# ------------------------------------------------------------------ distillation


@pytest.mark.slow
def test_distillation_fits_the_student_to_the_teacher():
    source = sample_source("digits_cnn")
    calib = source.splits["calib"].x  # never trained on
    target = F.log_softmax(logits(source.build(), torch.tensor(calib)), -1)

    def kl(plan: tuple) -> float:  # KL(teacher || exported student) on the calib split
        graph, _ = build(source, plan)  # the exported student, as measured
        out = measure.predict(measure.session(graph.model.SerializeToString()), calib)
        return F.kl_div(
            F.log_softmax(torch.from_numpy(out), -1), target, reduction="batchmean",
            log_target=True,
        ).item()  # fmt: skip

    torch.manual_seed(0)
    untrained = student("cnn", 0.5, source.input_shape, 10)
    untrained_kl = F.kl_div(
        F.log_softmax(logits(untrained, torch.tensor(calib)), -1), target,
        reduction="batchmean", log_target=True,
    ).item()  # fmt: skip
    assert kl((Distill(0.5),)) < 0.05 * untrained_kl  # trained towards the teacher
    assert build(source, (Distill(0.5),))[1] < 0.3 * build(source, ())[1]  # FLOPs
    graph, _ = build(source, (Distill(0.5),))
    test = source.splits["test"]
    pred = measure.predict(measure.session(graph.model.SerializeToString()), test.x).argmax(1)
    assert (pred == test.y).mean() >= 0.95


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("family, name", [("resnet", "resnet18"), ("mobilenet", "mobilenet_v3")])
def test_students_are_the_teachers_family_at_width_and_depth(family, name):
    teacher, shape = SAMPLES[name].builder(), (3, 64, 64)  # the architecture; no weights needed
    assert _params(student(family, 1.0, shape, 10)) == _params(teacher)  # the same layout
    half = student(family, 0.5, shape, 10)
    shallow = student(family, 0.5, shape, 10, depth=0.5)
    assert _params(shallow) < _params(half) < 0.35 * _params(teacher)
    x = torch.zeros(2, *shape)
    assert shallow.eval()(x).shape == half.eval()(x).shape == (2, 10)
    blocks = sum(type(m).__name__ in ("BasicBlock", "InvertedResidual") for m in half.modules())
    kept = sum(type(m).__name__ in ("BasicBlock", "InvertedResidual") for m in shallow.modules())
    # resnet: 4 stages of 2 -> 1 each; mobilenet: stages of 1, 2, 3, 2, 3 -> 1 each
    assert (blocks, kept) == {"resnet": (8, 4), "mobilenet": (11, 5)}[family]
    three_quarters = student(family, 0.5, shape, 10, depth=0.75)  # rounded down, never to 100 %
    kept = sum(
        type(m).__name__ in ("BasicBlock", "InvertedResidual") for m in three_quarters.modules()
    )
    assert kept == {"resnet": 4, "mobilenet": 7}[family]  # mobilenet: 1, 1, 2, 1, 2


def test_a_depth_multiplier_needs_repeated_blocks():
    assert _params(student("transformer", 1.0, (1, 8, 8), 10, depth=0.5)) < 0.55 * _params(
        student("transformer", 1.0, (1, 8, 8), 10)
    )  # one encoder layer of two
    with pytest.raises(ValueError, match=r"`depth < 1` needs a family with repeated blocks"):
        student("cnn", 0.5, (1, 8, 8), 10, depth=0.5)


# ------------------------------------------------------------------ quantization-aware training


@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 3, 3)])
@pytest.mark.parametrize("bits", [2, 3, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_fake_quantize_rounds_exactly_like_quantize(shape, bits, per_channel):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(bits))
    expected = quantize_array(w.numpy(), bits, 0 if per_channel else None, True).dequantize()
    w.requires_grad_(True)
    q = fake_quantize(w, bits, per_channel)
    np.testing.assert_array_equal(q.detach().numpy(), expected)
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight-through


def test_qat_returns_plain_float_weights():
    source = sample_source("cancer_mlp")
    out = plans.apply(source.build(), (QAT(2, epochs=1),), plans.Context(source))
    layers = [m for m in out.modules() if isinstance(m, nn.Linear)]
    assert not any(parametrize.is_parametrized(m) for m in layers)
    assert all(len(torch.unique(m.weight[0])) > 3 for m in layers)  # not rounded to 3 levels


@pytest.mark.slow
def test_qat_beats_post_training_rounding(tmp_path):
    source = sample_source("digits_cnn")
    for bits, margin in ((3, 0.0), (2, 0.3)):  # 3-bit costs little, 2-bit ruins plain rounding
        ptq = _accuracy(source, (Quantize(bits),), tmp_path)
        qat = _accuracy(source, (QAT(bits), Quantize(bits)), tmp_path)
        assert qat > ptq + margin, (bits, ptq, qat)


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize(
    "cfg, message",
    [
        (lambda: FineTune(0), r"`epochs >= 1` must hold, but got epochs=0"),
        (lambda: FineTune(lr=0.0), r"`lr > 0` must hold, but got lr=0.0"),
        (lambda: LowRank(0.0), r"`0 < rank_ratio <= 1` must hold, but got rank_ratio=0.0"),
        (lambda: LowRank(energy=1.5), r"`0 < energy <= 1` must hold, but got energy=1.5"),
        (lambda: Distill(width=1.5), r"`0 < width <= 1` must hold, but got width=1.5"),
        (lambda: Distill(alpha=-0.1), r"`0 <= alpha <= 1` must hold, but got alpha=-0.1"),
        (lambda: Distill(temperature=0), r"`temperature > 0` must hold, but got temperature=0"),
        (lambda: Distill(depth=0), r"`0 < depth <= 1` must hold, but got depth=0"),
        (lambda: QAT(bits=1), r"`2 <= bits <= 8` must hold, but got bits=1"),
        (lambda: QAT(granularity="row"), r"`granularity` must be one of"),
    ],
)
def test_bad_configs_name_the_rule_and_value(cfg, message):
    with pytest.raises(ValueError, match=message):
        cfg()


def test_labels():
    labels = [c.label for c in (FineTune(3), LowRank(0.5), LowRank(energy=0.9), Distill(0.5))]
    assert labels == ["finetune 3ep", "low-rank 50%", "low-rank 90% energy", "distill 50% width"]
    assert Distill(0.5, depth=0.5).label == "distill 50% width, 50% depth"
    # settings off their defaults are named, so two different configs never share a label
    assert Distill(0.5, alpha=0.9).label == "distill 50% width (alpha 0.9)"
    assert Distill(0.5, alpha=0.0, temperature=2).label == "distill 50% width (labels only)"
    assert FineTune(3, lr=2e-3).label == "finetune 3ep (lr 0.002)"
    assert plans.label((QAT(3), Quantize(3))) == "qat int3 w/channel 3ep + int3 w/channel"
