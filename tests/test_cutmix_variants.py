"""The CutMix paper's ablation variants and its layer ablation recipe, against plain loops."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchvision_mix import CutMix, masks


def _pasted(out, x):
    """(B, H, W) bool by loops: the pixels of sample i that came from sample i - 1 (random floats differ)."""
    b = x.shape[0]
    return torch.stack([(out[i] != x[i]).any(dim=0) for i in range(b)])


def _rectangle(mask):
    """(y1, y2, x1, x2) of a mask that must be one filled rectangle, or None when empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() == 0:
        return None
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    assert (box[1] - box[0]) * (box[3] - box[2]) == ys.numel(), "the pasted pixels are not one rectangle"
    return box


def test_gaussian_centres_gather_around_the_image_centre():
    n, h, w = 20000, 61, 100
    g = torch.Generator().manual_seed(0)
    boxes = masks.sample_boxes(n, h, w, per_sample=True, center="gaussian", center_std=0.1, size=(1, 1), generator=g)
    cx, cy = boxes[:, 0].double(), boxes[:, 1].double()  # a 1x1 box sits on its centre
    assert abs(float(cx.mean()) - (w - 1) / 2) < 0.3 and abs(float(cy.mean()) - (h - 1) / 2) < 0.3
    assert abs(float(cx.std()) - 0.1 * w) < 0.03 * 0.1 * w * 3
    assert abs(float(cy.std()) - 0.1 * h) < 0.03 * 0.1 * h * 3
    assert int(boxes[:, :2].min()) >= 0 and int(boxes[:, 0].max()) < w and int(boxes[:, 1].max()) < h
    uniform = masks.sample_boxes(n, h, w, per_sample=True, size=(1, 1), generator=g)
    assert abs(float(uniform[:, 0].double().std()) - w / 12**0.5) < 1.0  # the default stays uniform


def test_gaussian_centre_cutmix_pastes_near_the_centre():
    x = torch.rand(400, 3, 40, 40)
    out, _ = CutMix(
        num_classes=2,
        per_sample=True,
        center="gaussian",
        center_std=0.05,
        box_size=4,
        generator=torch.Generator().manual_seed(1),
    )(x, torch.zeros(400, dtype=torch.long))
    centres = []
    for m in _pasted(out, x):
        y1, y2, x1, x2 = _rectangle(m)
        centres.append(((y1 + y2) / 2, (x1 + x2) / 2))
    cy, cx = torch.tensor(centres).T
    assert float((cy - 20).abs().max()) < 12 and float((cx - 20).abs().max()) < 12
    assert abs(float(cx.mean()) - 20) < 0.5


@pytest.mark.parametrize("box_size", [16, (5, 9)])
def test_fixed_size_boxes_and_their_exact_fraction(box_size):
    x, labels = torch.rand(64, 3, 32, 32), torch.arange(64) % 2
    out, soft = CutMix(num_classes=2, per_sample=True, box_size=box_size, generator=torch.Generator().manual_seed(2))(
        x, labels
    )
    h, w = (16, 16) if box_size == 16 else (5, 9)
    full = 0
    for i, m in enumerate(_pasted(out, x)):
        y1, y2, x1, x2 = _rectangle(m)
        assert y2 - y1 <= h and x2 - x1 <= w
        if y1 > 0 and y2 < 32 and x1 > 0 and x2 < 32:
            assert (y2 - y1, x2 - x1) == (h, w)  # away from the borders the box is whole
            full += 1
        fraction = (y2 - y1) * (x2 - x1) / 1024
        partner_class = int(labels[(i - 1) % 64])
        assert abs(float(soft[i, partner_class]) - fraction) < 1e-6
    assert full > 10


def test_fixed_box_larger_than_the_image_is_refused_before_anything_changes():
    x = torch.rand(4, 3, 8, 8)
    before = x.clone()
    with pytest.raises(ValueError, match="larger than the image"):
        CutMix(num_classes=4, box_size=9, inplace=True)(x, torch.arange(4))
    assert torch.equal(x, before)
    for bad in (0, (3, 0), (2, 2, 2), 2.5, True):
        with pytest.raises(ValueError, match="box_size must be"):
            CutMix(box_size=bad)


def test_scheduled_cutmix_by_setting_p():
    mix = CutMix(num_classes=3, generator=torch.Generator().manual_seed(0))
    x, labels = torch.rand(6, 3, 8, 8), torch.arange(6) % 3
    mixed_per_p = []
    for p in (0.0, 0.5, 1.0):
        mix.p = p
        mixed_per_p.append(sum(not torch.equal(mix(x, labels)[0], x) for _ in range(200)))
    assert mixed_per_p[0] == 0 and 60 < mixed_per_p[1] < 140 and mixed_per_p[2] >= 195
    with pytest.raises(ValueError, match="p must be"):
        mix.p = 1.5
    assert mix.p == 1.0 and "p=1.0" in repr(mix)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("rule", ["one_hot", "complete"])
def test_label_rules(rule, per_sample):
    x, labels = torch.rand(64, 3, 12, 12), torch.arange(64) % 4
    mix = CutMix(
        num_classes=4, label_rule=rule, per_sample=per_sample, p=0.7, generator=torch.Generator().manual_seed(3)
    )
    for _ in range(5):
        out, soft = mix(x, labels)
        pasted = _pasted(out, x)
        for i in range(64):
            fraction = float(pasted[i].double().mean())
            if rule == "complete" and fraction == 0:  # unmixed (1.0), or mixed by an empty box (0.5)
                assert float(soft[i].max()) in (0.5, 1.0)
                continue
            weight = (1.0 if fraction > 0.5 else 0.0) if rule == "one_hot" else 0.5
            expected = torch.zeros(4, dtype=torch.float64)
            expected[int(labels[i])] += 1 - weight
            expected[int(labels[(i - 1) % 64])] += weight
            torch.testing.assert_close(soft[i].double(), expected, rtol=0, atol=1e-6)


def test_complete_label_gives_half_to_every_mixed_sample_and_nothing_to_unmixed_ones():
    x, labels = torch.rand(200, 3, 8, 8), torch.arange(200) % 4
    _, soft = CutMix(
        num_classes=4, label_rule="complete", per_sample=True, p=0.5, generator=torch.Generator().manual_seed(4)
    )(x, labels)
    top = soft.max(dim=1).values
    assert set(top.tolist()) == {0.5, 1.0} and 60 < int((top == 0.5).sum()) < 140
    with pytest.raises(ValueError, match="label_rule"):
        CutMix(label_rule="area_squared")
    with pytest.raises(ValueError, match="center"):
        CutMix(center="corner")


def test_layer_ablation_recipe_pastes_feature_maps_and_mixes_labels_by_their_fraction():
    """The recipe of docs/cutmix.rst: CutMix on a feature map inside the network, checked by loops."""
    torch.manual_seed(0)
    stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    x, labels = torch.rand(5, 3, 20, 20), torch.tensor([0, 1, 2, 3, 4])
    features = stem(x)
    g = torch.Generator().manual_seed(7)
    boxes = masks.sample_boxes(5, 10, 10, per_sample=True, generator=g)
    m = masks.boxes_to_masks(boxes, 10, 10)
    mixed = masks.paste(features, m)
    soft = masks.mix_labels(labels, masks.mask_fractions(m), num_classes=5)
    for i in range(5):
        x1, y1, x2, y2 = boxes[i].tolist()
        for r in range(10):
            for c in range(10):
                source = (i - 1) % 5 if (y1 <= r < y2 and x1 <= c < x2) else i
                assert torch.equal(mixed[i, :, r, c], features[source, :, r, c])
        fraction = (x2 - x1) * (y2 - y1) / 100
        assert abs(float(soft[i, (i - 1) % 5]) - fraction) < 1e-6 or (i - 1) % 5 == i
    mixed.sum().backward()
    assert stem.weight.grad is not None and stem.weight.grad.abs().sum() > 0


def test_complete_label_counts_a_mixed_sample_whose_box_came_out_empty():
    """Tiny Beta draws give empty boxes; the paper's complete-label rule still gives them 0.5."""
    x, labels = torch.rand(100, 3, 8, 8), torch.arange(100) % 4
    out, soft = CutMix(num_classes=4, alpha=0.05, per_sample=True, label_rule="complete",
                       generator=torch.Generator().manual_seed(5))(x, labels)
    empty = ~_pasted(out, x).flatten(1).any(dim=1)
    assert int(empty.sum()) > 5
    assert torch.allclose(soft.max(dim=1).values, torch.full((100,), 0.5))
