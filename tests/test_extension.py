"""The public extension API: what a user's variant can have is what the built-in mixes use.

Every variant here is written as a user would, on MaskMix/BlendMix alone. Expected values come
from plain loops over the samples, not from the library's helpers.
"""

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import torchvision_mix._base as base
from torchvision_mix import BlendMix, CutMix, MaskMix, MixCollate, RandomMix
from torchvision_mix.testing import check_mix_transform

# --- the variants ---------------------------------------------------------------------------------------------------


class TopRows(MaskMix):
    """One mask for the batch: the top `rows` rows come from the partner."""

    def __init__(self, rows=2, **kwargs):
        super().__init__(**kwargs)
        self.rows = rows

    def make_masks(self, batch):
        mask = torch.zeros(1, batch.shape[-2], batch.shape[-1], dtype=torch.bool, device=batch.device)
        mask[:, : self.rows] = True
        return mask


class CornerBox(MaskMix):
    """A box mix: one random box (x1, y1, x2, y2) anchored at the top-left corner, per batch or per sample."""

    def make_boxes(self, batch):
        n = batch.shape[0] if self.per_sample else 1
        h, w = batch.shape[-2], batch.shape[-1]
        x2 = torch.randint(1, w + 1, (n,), generator=self.generator)
        y2 = torch.randint(1, h + 1, (n,), generator=self.generator)
        zeros = torch.zeros(n, dtype=torch.int64)
        return torch.stack([zeros, zeros, x2, y2], dim=1)


class FixedBlend(BlendMix):
    """Blend every sample by weights drawn uniformly from [0, high]."""

    def __init__(self, high=0.8, **kwargs):
        super().__init__(**kwargs)
        self.high = high

    def make_weights(self, batch):
        n = batch.shape[0] if self.per_sample else 1
        return torch.rand(n, dtype=torch.float64, generator=self.generator) * self.high


class SquaredLabel(TopRows):
    """A label rule: the partner's label weight is the square of its pixel share."""

    def label_weights(self, lam, applied, **extras):
        return lam * lam


class ScoredMask(MaskMix):
    """A label rule fed by make_masks: the mask hands over a score per sample."""

    def make_masks(self, batch):
        mask = torch.zeros(batch.shape[0], batch.shape[-2], batch.shape[-1], dtype=torch.bool)
        mask[:, :, :1] = True
        return {"masks": mask, "score": torch.linspace(0.1, 0.9, batch.shape[0], dtype=torch.float64)}

    def label_weights(self, lam, applied, score=None, **extras):
        return score


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def oracle_paste(x, masks):
    """out[i] = x[i - 1] where masks[i], else x[i], one pixel at a time."""
    out = x.clone()
    b, _, h, w = x.shape
    for i in range(b):
        for r in range(h):
            for c in range(w):
                if masks[i][r][c]:
                    out[i, :, r, c] = x[(i - 1) % b, :, r, c]
    return out


def one_hot_mix(labels, weights, k):
    b = len(labels)
    out = torch.zeros(b, k)
    for i in range(b):
        out[i, int(labels[i])] += 1 - float(weights[i])
        out[i, int(labels[(i - 1) % b])] += float(weights[i])
    return out


# --- one mask for the batch -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_one_mask_for_the_batch_is_measured_once_and_pasted_on_every_sample(batch, monkeypatch):
    measured = []
    real = base.mask_fractions
    monkeypatch.setattr(base, "mask_fractions", lambda m, **kw: measured.append(tuple(m.shape)) or real(m, **kw))
    x, labels = torch.rand(batch, 3, 5, 4), torch.arange(batch) % 3
    out, soft = TopRows(rows=2, num_classes=3)(x, labels)
    assert measured == [(1, 5, 4)]  # once, before the expansion, whatever the batch size
    masks = [[[r < 2 for _ in range(4)] for r in range(5)] for _ in range(batch)]
    assert torch.equal(out, oracle_paste(x, masks))
    assert torch.allclose(soft, one_hot_mix(labels, [8 / 20] * batch, 3))


def test_one_mask_with_per_sample_p_pastes_only_the_drawn_samples():
    mix = TopRows(rows=1, num_classes=4, p=0.5, per_sample=True, generator=generator(3))
    x, labels = torch.rand(16, 1, 3, 3), torch.arange(16) % 4
    drawn = torch.rand(16, generator=generator(3)) < 0.5  # the base draws p first, from the same generator
    out, soft = mix(x, labels)
    masks = [[[bool(drawn[i]) and r < 1 for _ in range(3)] for r in range(3)] for i in range(16)]
    assert 0 < int(drawn.sum()) < 16
    assert torch.equal(out, oracle_paste(x, masks))
    assert torch.allclose(soft, one_hot_mix(labels, [float(d) / 3 for d in drawn], 4))


# --- a box mix on the region-only path ------------------------------------------------------------------------------


def test_one_cpu_box_takes_the_region_only_paste(monkeypatch):
    calls = []
    real = base.paste_box
    monkeypatch.setattr(base, "paste_box", lambda x, box, **kw: calls.append(box) or real(x, box, **kw))
    x, labels = torch.rand(4, 3, 6, 7), torch.arange(4)
    out, soft = CornerBox(num_classes=4, generator=generator(1))(x, labels)
    g = generator(1)
    x2, y2 = int(torch.randint(1, 8, (1,), generator=g)), int(torch.randint(1, 7, (1,), generator=g))
    assert calls == [(0, 0, x2, y2)]
    masks = [[[r < y2 and c < x2 for c in range(7)] for r in range(6)] for _ in range(4)]
    assert torch.equal(out, oracle_paste(x, masks))
    assert torch.allclose(soft, one_hot_mix(labels, [x2 * y2 / 42] * 4, 4))


def test_per_sample_boxes_are_pasted_as_masks_with_their_own_areas(monkeypatch):
    monkeypatch.setattr(base, "paste_box", lambda *a, **k: pytest.fail("one box for many samples"))
    x, labels = torch.rand(5, 2, 6, 7), torch.arange(5)
    out, soft = CornerBox(num_classes=5, per_sample=True, generator=generator(2))(x, labels)
    g = generator(2)
    x2, y2 = torch.randint(1, 8, (5,), generator=g), torch.randint(1, 7, (5,), generator=g)
    masks = [[[r < int(y2[i]) and c < int(x2[i]) for c in range(7)] for r in range(6)] for i in range(5)]
    assert torch.equal(out, oracle_paste(x, masks))
    assert torch.allclose(soft, one_hot_mix(labels, [int(x2[i] * y2[i]) / 42 for i in range(5)], 5))


#: Per-sample boxes (x1, y1, x2, y2) on 6 x 7 images, as a user might return them: partly outside the image,
#: inverted in x, inverted in y, empty, the whole image and more, over the bottom-right corner.
WILD = [[-3, -2, 4, 3], [5, 1, 2, 4], [1, 5, 4, 2], [2, 2, 2, 5], [-10, -10, 16, 15], [5, 5, 12, 11]]


class WildBoxes(MaskMix):
    def make_boxes(self, batch):
        return torch.tensor(WILD * 2, dtype=torch.int32)[: batch.shape[0]]


def box_masks(boxes, drawn):
    return [
        [[d and x1 <= c < x2 and y1 <= r < y2 for c in range(7)] for r in range(6)]
        for (x1, y1, x2, y2), d in zip(boxes, drawn, strict=True)
    ]


def test_per_sample_boxes_are_clipped_and_lam_is_the_pixel_count_of_what_was_pasted():
    x, labels = torch.rand(8, 2, 6, 7), torch.arange(8)
    out, soft = WildBoxes(num_classes=8)(x, labels)
    masks = box_masks((WILD * 2)[:8], [True] * 8)
    assert torch.equal(out, oracle_paste(x, masks))
    counts = [sum(map(sum, m)) for m in masks]
    assert counts == [12, 0, 0, 0, 42, 2, 12, 0]
    assert torch.equal(soft, one_hot_mix(labels, [c / 42 for c in counts], 8))


def test_per_sample_p_empties_the_boxes_of_the_samples_not_drawn():
    x, labels = torch.rand(12, 1, 6, 7), torch.arange(12)
    out, soft = WildBoxes(num_classes=12, p=0.5, per_sample=True, generator=generator(4))(x, labels)
    drawn = (torch.rand(12, generator=generator(4)) < 0.5).tolist()
    masks = box_masks(WILD * 2, drawn)
    assert 0 < sum(sum(map(sum, m)) > 0 for m in masks) < sum(drawn)  # some drawn boxes are empty anyway
    assert torch.equal(out, oracle_paste(x, masks))
    assert torch.equal(soft, one_hot_mix(labels, [sum(map(sum, m)) / 42 for m in masks], 12))


def test_a_box_under_autograd_is_pasted_as_a_mask_with_gradients():
    x = torch.rand(3, 1, 4, 4, requires_grad=True)
    out, _ = CornerBox(num_classes=3, generator=generator(0))(x, torch.arange(3))
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # every output pixel comes from exactly one input pixel


# --- a blend --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
def test_a_blend_variant_rounds_uint8_to_the_nearest_level_and_mixes_labels_by_its_weight(per_sample):
    x = torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8, generator=generator(9))
    labels = torch.arange(6) % 4
    out, soft = FixedBlend(num_classes=4, per_sample=per_sample, generator=generator(4))(x, labels)
    w = torch.rand(6 if per_sample else 1, dtype=torch.float64, generator=generator(4)) * 0.8
    w = w.expand(6)
    assert out.dtype == torch.uint8
    for i in range(6):
        exact = (1 - float(w[i])) * x[i].double() + float(w[i]) * x[(i - 1) % 6].double()
        assert (out[i].double() - exact).abs().max() <= 0.5 + 1e-4
    assert torch.allclose(soft, one_hot_mix(labels, w, 4))
    assert len(set(w.tolist())) == (6 if per_sample else 1)


def test_a_blend_variant_honours_p_and_is_refused_for_segmentation_masks():
    from torchvision import tv_tensors

    from torchvision_mix import UnsupportedInputError

    x, labels = torch.rand(4, 3, 5, 5), torch.arange(4)
    out, soft = FixedBlend(num_classes=4, p=0.0)(x, labels)
    assert torch.equal(out, x) and torch.equal(soft, torch.eye(4))
    x, labels = torch.rand(8, 3, 5, 5), torch.arange(8)
    out, soft = FixedBlend(num_classes=8, p=0.5, per_sample=True, generator=generator(2))(x, labels)
    drawn = torch.rand(8, generator=generator(2)) < 0.5
    assert 0 < int(drawn.sum()) < 8
    for i in range(8):
        assert torch.equal(out[i], x[i]) != bool(drawn[i])
        assert (float(soft[i, i]) == 1.0) != bool(drawn[i])
    with pytest.raises(UnsupportedInputError, match="RandomMix"):
        FixedBlend(num_classes=4)(tv_tensors.Mask(torch.zeros(4, 5, 5, dtype=torch.uint8)), labels)


def test_a_blend_variant_pickles_with_its_generator_state():
    mix = FixedBlend(num_classes=3, per_sample=True, generator=generator(5))
    copy = pickle.loads(pickle.dumps(mix))
    x, labels = torch.rand(5, 3, 4, 4), torch.arange(5) % 3
    a, b = mix(x, labels), copy(x, labels)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert isinstance(copy, FixedBlend) and copy.high == 0.8


# --- the label-rule hook --------------------------------------------------------------------------------------------


def test_the_label_rule_hook_sets_the_label_weight_and_unmixed_samples_keep_their_label():
    x, labels = torch.rand(12, 1, 4, 4), torch.arange(12) % 3
    mix = SquaredLabel(rows=1, num_classes=3, p=0.5, per_sample=True, generator=generator(6))
    drawn = torch.rand(12, generator=generator(6)) < 0.5
    _, soft = mix(x, labels)
    assert torch.allclose(soft, one_hot_mix(labels, [float(d) * (1 / 4) ** 2 for d in drawn], 3))
    check_mix_transform(
        SquaredLabel(rows=1, num_classes=3),
        x,
        labels,
        num_classes=3,
        label_rule=lambda lam, mixed: lam * lam,
    )


def test_make_masks_can_hand_the_label_rule_what_it_needs():
    x, labels = torch.rand(5, 1, 3, 3), torch.arange(5)
    _, soft = ScoredMask(num_classes=5)(x, labels)
    scores = torch.linspace(0.1, 0.9, 5).tolist()
    assert torch.allclose(soft, one_hot_mix(labels, scores, 5))
    # Samples that were not mixed keep their own label whatever the rule says.
    _, soft = ScoredMask(num_classes=5, p=0.5, per_sample=True, generator=generator(1))(x, labels)
    drawn = (torch.rand(5, generator=generator(1)) < 0.5).tolist()
    assert 0 < sum(drawn) < 5
    assert torch.allclose(soft, one_hot_mix(labels, [s * d for s, d in zip(scores, drawn, strict=True)], 5))


def test_cutmix_label_rule_goes_through_the_public_hook():
    assert "label_weights" in CutMix.__dict__ and "_label_weights" not in CutMix.__dict__
    lam, applied = torch.tensor([0.2, 0.7, 0.0], dtype=torch.float64), torch.tensor([True, True, False])
    assert CutMix(label_rule="one_hot").label_weights(lam, applied).tolist() == [0.0, 1.0, 0.0]
    assert CutMix(label_rule="complete").label_weights(lam, applied).tolist() == [0.5, 0.5, 0.0]


# --- users' variants as RandomMix children and in a spawn DataLoader ------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
def test_users_mask_and_blend_variants_are_randommix_children(per_sample):
    mix = RandomMix(
        [TopRows(rows=2), CornerBox(), FixedBlend()], per_sample=per_sample, num_classes=4, generator=generator(7)
    )
    kinds = set()
    for seed in range(6):
        x, labels = torch.rand(9, 3, 6, 6, generator=generator(seed)), torch.arange(9) % 4
        report = check_mix_transform(mix, x, labels, num_classes=4)
        kinds |= {kind for kind in report.kinds}
    assert kinds >= {"paste", "blend"}


def test_users_variants_mix_in_spawn_workers():
    data = TensorDataset(torch.rand(16, 3, 6, 6), torch.arange(16) % 4)
    mix = RandomMix([TopRows(), FixedBlend()], per_sample=True, num_classes=4, generator=generator(8))
    loader = DataLoader(data, batch_size=8, num_workers=2, multiprocessing_context="spawn", collate_fn=MixCollate(mix))
    batches = list(loader)
    assert len(batches) == 2
    for (images, soft), start in zip(batches, (0, 8), strict=True):
        assert images.shape == (8, 3, 6, 6) and soft.shape == (8, 4)
        assert torch.allclose(soft.sum(1), torch.ones(8))
        assert not torch.equal(images, data.tensors[0][start : start + 8])


# --- mistakes in the hooks: named, before anything changes ----------------------------------------------------------


class BadBoxes(MaskMix):
    def __init__(self, boxes, **kwargs):
        super().__init__(**kwargs)
        self.boxes = boxes

    def make_boxes(self, batch):
        return self.boxes


class BadWeights(BlendMix):
    def __init__(self, weights, **kwargs):
        super().__init__(**kwargs)
        self.weights = weights

    def make_weights(self, batch):
        return self.weights


class BadRule(TopRows):
    def __init__(self, rule, **kwargs):
        super().__init__(**kwargs)
        self.rule = rule

    def label_weights(self, lam, applied, **extras):
        return self.rule(lam)


@pytest.mark.parametrize(
    ("mix", "error", "match"),
    [
        (BadBoxes(torch.zeros(4, 4)), TypeError, r"BadBoxes.make_boxes\(\) must return an integer tensor .*float32"),
        (
            BadBoxes(torch.zeros(3, 4, dtype=torch.long)),
            ValueError,
            r"shape \(4, 4\) or \(1, 4\), but returned .*\(3, 4\)",
        ),
        (BadWeights(torch.ones(4, dtype=torch.long)), ValueError, r"BadWeights.make_weights\(\) must return a float"),
        (BadWeights(torch.ones(3)), ValueError, r"shape \(4,\) or \(1,\), but returned .*\(3,\)"),
        (BadWeights(torch.full((4,), 1.5)), ValueError, r"BadWeights.make_weights\(\) must be in \[0, 1\]"),
        (BadRule(lambda lam: lam[:2]), ValueError, r"BadRule.label_weights\(\) must return a float tensor of shape"),
        (BadRule(lambda lam: lam + 2), ValueError, r"BadRule.label_weights\(\) must be in \[0, 1\]"),
    ],
)
def test_hook_mistakes_are_named_and_nothing_changes(mix, error, match):
    mix.num_classes, mix.inplace = 4, True
    x = torch.rand(4, 3, 5, 5)
    before = x.clone()
    with pytest.raises(error, match=match):
        mix(x, torch.arange(4))
    assert torch.equal(x, before)
