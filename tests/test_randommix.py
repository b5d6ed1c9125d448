"""RandomMix: per-sample and per-batch switching, labels, smoothing once, choice law, timm equivalence, errors."""

from __future__ import annotations

import pickle

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from torchvision_mix import CutMix, MaskMix, MixUp, RandomMix, UnsupportedInputError


def _classify(out, x):
    """Per sample, by plain loops: ("paste", box) / ("blend", w) / ("none", None), and the partner weight.

    Random float images differ at every pixel, so each output pixel's weight of the partner
    ``(out - x_i) / (x_{i-1} - x_i)`` is readable.
    """
    b = x.shape[0]
    result = []
    for i in range(b):
        own, partner = x[i].double(), x[(i - 1) % b].double()
        if b == 1:  # paired with itself: unchanged, and its label is its own whatever the weight
            assert torch.equal(out[i], x[i])
            result.append(("none", None, 0.0))
            continue
        eq_own = (out[i] == x[i]).all(dim=0)
        eq_partner = (out[i] == x[(i - 1) % b]).all(dim=0)
        if eq_own.all():
            result.append(("none", None, 0.0))
        elif (eq_own | eq_partner).all():
            ys, xs = torch.nonzero(~eq_own, as_tuple=True)
            box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
            area = (box[1] - box[0]) * (box[3] - box[2])
            assert area == int((~eq_own).sum()), f"sample {i}: the pasted pixels are not one rectangle"
            result.append(("paste", box, area / eq_own.numel()))
        else:
            d = partner - own
            w = float(((out[i].double() - own) * d).sum() / (d * d).sum())
            error = float((out[i].double() - (own + w * d)).abs().max())
            assert error < 1e-6, f"sample {i}: neither a paste nor a blend (off by {error})"
            result.append(("blend", w, w))
    return result


def _recipe(**kwargs):
    return RandomMix([CutMix(alpha=1.0), MixUp(alpha=0.8)], p=[0.5, 0.5], num_classes=7, **kwargs)


@pytest.mark.parametrize("batch", [1, 2, 9])
@pytest.mark.parametrize("seed", range(4))
def test_per_sample_each_sample_pasted_or_blended_and_labelled_by_its_weight(batch, seed):
    x = torch.rand(batch, 3, 12, 10, generator=torch.Generator().manual_seed(100 + seed))
    labels = torch.arange(batch) % 7
    out, soft = _recipe(per_sample=True, generator=torch.Generator().manual_seed(seed))(x, labels)
    for i, (_kind, _what, weight) in enumerate(_classify(out, x)):
        expected = torch.zeros(7, dtype=torch.float64)
        expected[int(labels[i])] += 1 - weight
        expected[int(labels[(i - 1) % batch])] += weight
        torch.testing.assert_close(soft[i].double(), expected, rtol=0, atol=1e-5)


def test_per_sample_mixes_both_kinds_in_one_batch_and_per_batch_one_kind():
    x = torch.rand(64, 3, 10, 10)
    mix = _recipe(per_sample=True, generator=torch.Generator().manual_seed(0))
    found = _classify(mix(x, torch.zeros(64, dtype=torch.long))[0], x)
    assert {"paste", "blend"} <= {k for k, _, _ in found}
    assert len({what for k, what, _ in found if k == "paste"}) > 10  # a box per sample
    assert len({round(what, 5) for k, what, _ in found if k == "blend"}) > 10  # a weight per sample
    for seed in range(6):
        out, _ = _recipe(generator=torch.Generator().manual_seed(seed))(x, torch.zeros(64, dtype=torch.long))
        found = _classify(out, x)
        assert len({k for k, _, _ in found}) == 1  # one mix for the whole batch
        assert len({round(what, 5) if isinstance(what, float) else what for _, what, _ in found}) == 1  # one box/weight


def test_choice_probabilities_are_followed():
    x = torch.rand(400, 1, 6, 6)
    labels = torch.zeros(400, dtype=torch.long)
    mix = RandomMix(
        [CutMix(), MixUp()], p=[1, 3], num_classes=2, per_sample=True, generator=torch.Generator().manual_seed(0)
    )
    kinds = [k for k, _, _ in _classify(mix(x, labels)[0], x)]
    blended = kinds.count("blend") / (kinds.count("blend") + kinds.count("paste"))
    assert abs(blended - 0.75) < 0.07
    only_cutmix = RandomMix([CutMix(), MixUp()], p=[1, 0], num_classes=2, per_sample=True)
    assert "blend" not in [k for k, _, _ in _classify(only_cutmix(x, labels)[0], x)]


def test_p_is_the_choice_probabilities_read_back_settable_and_checked():
    mix = RandomMix([CutMix(), MixUp()], p=[0.3, 0.7], mix_p=0.4, num_classes=2)
    assert mix.p == [0.3, 0.7] and mix.mix_p == 0.4  # as given, like v2.RandomChoice's p
    assert RandomMix([CutMix(), MixUp()], p=[1, 3]).p == [1.0, 3.0]
    assert RandomMix([CutMix(), MixUp(), CutMix()]).p == [1.0, 1.0, 1.0]
    mix.p = [0.0, 1.0]  # between batches: only MixUp from now on
    assert mix.p == [0.0, 1.0]
    x = torch.rand(32, 1, 6, 6)
    kinds = {k for k, _, _ in _classify(mix(x, torch.zeros(32, dtype=torch.long))[0], x)}
    assert kinds <= {"blend", "none"}
    mix.per_sample = True
    mix.p = [1.0, 0.0]
    kinds = {k for k, _, _ in _classify(mix(x, torch.zeros(32, dtype=torch.long))[0], x)}
    assert kinds <= {"paste", "none"} and "paste" in kinds
    refused = [([-0.1, 1.1], ">= 0"), ([1.0], "one probability per mix"), ([0, 0], "sum to 0"), (0.5, "per mix")]
    for bad, match in refused:
        with pytest.raises(ValueError, match=match):
            mix.p = bad
    assert mix.p == [1.0, 0.0]  # a refused value changes nothing


def test_repr_shows_the_options_in_force():
    mix = RandomMix(
        [CutMix(num_classes=5, label_smoothing=0.2, alpha=0.5), MixUp(alpha=0.8, inplace=True, p=0.1)],
        p=[0.3, 0.7],
        num_classes=7,
        label_smoothing=0.1,
        inplace=True,
    )
    text = repr(mix)
    head, children = text.split("(transforms)")
    for option in ("p=[0.3, 0.7]", "mix_p=1.0", "num_classes=7", "label_smoothing=0.1", "inplace=True"):
        assert option in head
    assert "CutMix(alpha=0.5" in children and "MixUp(alpha=0.8)" in children
    for overridden in ("num_classes", "label_smoothing", "inplace", "per_sample", "p="):
        assert overridden not in children, (overridden, children)
    assert "label_smoothing=0.2" in repr(CutMix(num_classes=5, label_smoothing=0.2))  # alone: all of them


def test_label_smoothing_is_applied_once():
    x, labels = torch.rand(8, 3, 6, 6), torch.arange(8) % 7
    mix = RandomMix([CutMix(label_smoothing=0.3), MixUp(label_smoothing=0.3)], num_classes=7, label_smoothing=0.1)
    _, soft = mix(x, labels)
    assert torch.allclose(soft.min(dim=1).values, torch.full((8,), 0.1 / 7))
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(8))


def test_children_need_no_num_classes_and_their_own_p_and_generator_are_replaced():
    x, labels = torch.rand(6, 3, 8, 8), torch.arange(6)
    child = CutMix(p=0.0, generator=torch.Generator().manual_seed(5))
    mix = RandomMix([child], num_classes=6, generator=torch.Generator().manual_seed(2))
    out, _ = mix(x, labels)
    assert not torch.equal(out, x)  # the child's p=0 does not apply inside
    again, _ = RandomMix([child], num_classes=6, generator=torch.Generator().manual_seed(2))(x, labels)
    assert torch.equal(out, again)  # only RandomMix's generator decides
    assert child.generator.initial_seed() == 5 and child.p == 0.0  # the user's child is untouched


@pytest.mark.parametrize("per_sample", [False, True])
def test_label_rules_of_children_are_kept(per_sample):
    x, labels = torch.rand(5, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4])
    mix = RandomMix([CutMix(label_rule="complete")], num_classes=5, per_sample=per_sample)
    _, soft = mix(x, labels)
    assert torch.allclose(soft.max(dim=1).values, torch.full((5,), 0.5))


def test_user_mask_mix_child_and_segmentation_masks():
    class LeftColumns(MaskMix):
        def make_masks(self, batch):
            m = torch.zeros(batch.shape[0], batch.shape[-2], batch.shape[-1], dtype=torch.bool, device=batch.device)
            m[..., :2] = True
            return m

    x = tv_tensors.Image(torch.rand(3, 3, 4, 4))
    seg = tv_tensors.Mask(torch.arange(3)[:, None, None].expand(3, 4, 4).clone())
    mix = RandomMix([LeftColumns(), CutMix()], p=[1, 0], num_classes=3)
    out = mix({"image": x, "mask": seg, "labels": torch.arange(3)})
    seg_out, soft = out["mask"], out["labels"]
    assert torch.equal(seg_out[:, :, :2], seg.roll(1, 0)[:, :, :2]) and torch.equal(seg_out[:, :, 2:], seg[:, :, 2:])
    assert torch.allclose(soft.max(dim=1).values, torch.full((3,), 0.5))
    with pytest.raises(UnsupportedInputError, match="cannot be blended"):
        _recipe()({"image": x, "mask": seg, "labels": torch.arange(3)})


def test_pickle_keeps_the_shared_generator():
    mix = _recipe(per_sample=True, generator=torch.Generator().manual_seed(4))
    copy = pickle.loads(pickle.dumps(mix))
    assert all(child.generator is copy.generator for child in copy.transforms)
    x, labels = torch.rand(5, 3, 6, 6), torch.arange(5)
    for _ in range(2):
        a, b = mix(x, labels), copy(x, labels)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_errors():
    with pytest.raises(ValueError, match="non-empty"):
        RandomMix([])
    with pytest.raises(TypeError, match="RandomErasing"):
        RandomMix([CutMix(), v2.RandomErasing()])
    with pytest.raises(ValueError, match="one probability per mix"):
        RandomMix([CutMix(), MixUp()], p=[1.0])
    with pytest.raises(ValueError, match=">= 0"):
        RandomMix([CutMix(), MixUp()], p=[1.0, -0.5])
    with pytest.raises(ValueError, match="sum to 0"):
        RandomMix([CutMix(), MixUp()], p=[0, 0])
    with pytest.raises(ValueError, match="p must be"):
        RandomMix([CutMix()], mix_p=2)
    with pytest.raises(ValueError, match="alpha"):
        RandomMix([MixUp(alpha=0)])


# ------------------------------------------------------------------------------------------------
# timm equivalence: the same targets (and pixels) as timm's Mixup for a forced lambda and box
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("seed", range(5))
def test_same_images_and_targets_as_timm_mixup(monkeypatch, mode, seed):
    """timm pairs i with B-1-i and we pair i with i-1: for a batch of two they are the same partner."""
    mixup = pytest.importorskip("timm.data.mixup")
    x = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(seed))
    target = torch.tensor([3, 8])
    ours = RandomMix(
        [MixUp(alpha=0.8), CutMix(alpha=1.0)],
        p=[0.5, 0.5],
        per_sample=(mode == "elem"),
        num_classes=10,
        label_smoothing=0.1,
        generator=torch.Generator().manual_seed(seed),
    )
    out, soft = ours(x, target)
    found = _classify(out, x)
    if mode == "batch":
        assert found[0][0] == found[1][0]
    lam = [1.0 - w for _, _, w in found]  # timm's lam is the sample's own weight
    use_cutmix = [kind == "paste" for kind, _, _ in found]
    boxes = [what if kind == "paste" else None for kind, what, _ in found]
    pasted = iter([box for box in boxes if box is not None])  # timm asks for a box for pasted samples only

    def forced_box(shape, lam_, ratio_minmax=None, correct_lam=True):
        box = next(pasted)
        return box, 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / (16 * 12)

    import numpy as np

    monkeypatch.setattr(mixup, "cutmix_bbox_and_lam", forced_box)
    theirs = mixup.Mixup(
        mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode=mode, label_smoothing=0.1, num_classes=10
    )
    if mode == "elem":
        monkeypatch.setattr(theirs, "_params_per_elem", lambda n: (np.array(lam, np.float32), np.array(use_cutmix)))
    else:
        monkeypatch.setattr(theirs, "_params_per_batch", lambda: (lam[0], use_cutmix[0]))
    x_timm = x.clone()
    x_timm, target_timm = theirs(x_timm, target)
    torch.testing.assert_close(x_timm, out, rtol=0, atol=1e-5)
    torch.testing.assert_close(target_timm, soft, rtol=0, atol=1e-5)
