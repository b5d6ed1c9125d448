"""MixUp: the blend and its labels against plain loops, the law of lam, p, per_sample, dtypes, errors."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

import torchvision_mix._mixes.mixup as mixup_module
from torchvision_mix import MixUp, UnsupportedInputError, masks


def _force_lam(monkeypatch, values):
    """Make MixUp draw these partner weights (its only random draw besides p)."""
    values = torch.tensor(values, dtype=torch.float64)

    def fake_sample_beta(n, *, alpha, generator=None):
        assert n in (1, len(values))
        return values[:n].clone()

    monkeypatch.setattr(mixup_module, "sample_beta", fake_sample_beta)


def _expected_pixels(images, w):
    """Plain loops in float64: out[i] = (1 - w_i) * x_i + w_i * x_{i-1}."""
    x = images.double()
    out = torch.empty_like(x)
    b = x.shape[0]
    for i in range(b):
        out[i] = (1 - w[i]) * x[i] + w[i] * x[(i - 1) % b]
    return out


def _expected_labels(labels, w, k, eps=0.0):
    b = labels.shape[0]
    rows = []
    for i in range(b):
        row = [eps / k] * k
        row[int(labels[i])] += (1 - eps) * (1 - w[i])
        row[int(labels[(i - 1) % b])] += (1 - eps) * w[i]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8])
@pytest.mark.parametrize("inplace", [False, True])
def test_blend_and_labels_match_plain_loops(monkeypatch, batch, dtype, inplace):
    w = [0.3, 0.75, 0.1, 0.5, 0.9][:batch]
    _force_lam(monkeypatch, w)
    g = torch.Generator().manual_seed(0)
    if dtype == torch.uint8:
        images = torch.randint(0, 256, (batch, 3, 6, 5), dtype=torch.uint8, generator=g)
    else:
        images = torch.rand(batch, 3, 6, 5, generator=g).to(dtype)
    labels = torch.tensor([0, 2, 1, 3, 2][:batch])
    original = images.clone()
    out, soft = MixUp(num_classes=4, per_sample=True, inplace=inplace, label_smoothing=0.1)(images, labels)
    exact = _expected_pixels(original, w)
    if dtype == torch.uint8:
        assert (out.double() - exact).abs().max() <= 0.5 + 1e-6  # rounded to the nearest grey level
    else:
        tol = {torch.float16: 1e-3, torch.bfloat16: 8e-3}.get(dtype, 1e-6)
        assert (out.double() - exact).abs().max() <= tol
    assert out.dtype == dtype and out.shape == original.shape
    assert (out.data_ptr() == images.data_ptr()) == inplace
    if not inplace:
        assert torch.equal(images, original)
    torch.testing.assert_close(soft.double(), _expected_labels(labels, w, 4, eps=0.1), rtol=0, atol=1e-6)


def test_one_weight_per_batch_without_per_sample(monkeypatch):
    _force_lam(monkeypatch, [0.25])
    images = torch.rand(4, 3, 5, 5)
    out, labels = MixUp(num_classes=4)(images, torch.arange(4))
    torch.testing.assert_close(out.double(), _expected_pixels(images, [0.25] * 4), rtol=0, atol=1e-6)
    assert labels.max(dim=1).values.tolist() == [0.75] * 4


@pytest.mark.parametrize("alpha", [0.2, 1.0, 3.0])
def test_lam_follows_beta_alpha_alpha(alpha):
    """Mean 1/2 and variance 1 / (4 (2 alpha + 1)) of the drawn partner weights (ignoring alpha fails)."""
    n = 6000
    images = torch.zeros(n, 1, 1, 1)
    labels = torch.arange(n) % 2  # every partner has the other class: the weight is readable
    _, soft = MixUp(alpha=alpha, num_classes=2, per_sample=True, generator=torch.Generator().manual_seed(1))(
        images, labels
    )
    w = soft[torch.arange(n), 1 - labels].double()
    var = 1 / (4 * (2 * alpha + 1))
    assert abs(float(w.mean()) - 0.5) < 4 * (var / n) ** 0.5
    assert abs(float(w.var()) - var) < 0.12 * var
    assert w.unique().numel() > n // 2  # one weight per sample


@pytest.mark.parametrize("kind", [tv_tensors.Image, tv_tensors.Video, None])
def test_types_and_memory_format_kept(kind):
    shape = (3, 2, 3, 6, 6) if kind is tv_tensors.Video else (3, 3, 6, 6)
    images = torch.rand(shape)
    if kind is None:
        images = images.contiguous(memory_format=torch.channels_last)
    elif kind is tv_tensors.Image:
        images = kind(images.contiguous(memory_format=torch.channels_last))
    else:
        images = kind(images)
    out, _ = MixUp(num_classes=3)(images, torch.arange(3))
    assert type(out) is type(images)
    if images.ndim == 4:
        assert out.is_contiguous(memory_format=torch.channels_last)


def test_dict_with_pass_through_keys():
    images = tv_tensors.Image(torch.rand(4, 3, 5, 5))
    sample = {"image": images, "label": torch.arange(4), "name": "batch-1", "meta": torch.ones(2)}
    out = MixUp(num_classes=4)(sample)
    assert out["name"] == "batch-1" and out["meta"] is sample["meta"]
    assert out["label"].shape == (4, 4) and isinstance(out["image"], tv_tensors.Image)


def test_segmentation_masks_are_refused_before_anything_changes():
    images = torch.rand(4, 3, 5, 5)
    before = images.clone()
    with pytest.raises(UnsupportedInputError, match="cannot be blended"):
        masks = tv_tensors.Mask(torch.zeros(4, 5, 5, dtype=torch.long))
        MixUp(num_classes=3, inplace=True)(images, masks, torch.arange(4))
    assert torch.equal(images, before)


def test_errors():
    with pytest.raises(ValueError, match="alpha"):
        MixUp(alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        MixUp(alpha=-1)
    with pytest.raises(ValueError, match="p must be"):
        MixUp(p=1.5)
    with pytest.raises(TypeError, match="bool"):
        MixUp(num_classes=2)(torch.zeros(2, 1, 3, 3, dtype=torch.bool), torch.arange(2))
    with pytest.raises(ValueError):  # torchvision's code catches ValueError for PIL images
        MixUp(num_classes=2)(v2.functional.to_pil_image(torch.rand(3, 4, 4)))


@pytest.mark.parametrize(
    ("shape", "channels_last"),
    [((64, 3, 40, 40), False), ((64, 3, 40, 40), True), ((2, 3, 300, 301), False), ((2, 3, 300, 301), True)],
    ids=["sample-blocks", "sample-blocks-cl", "column-blocks", "column-blocks-cl"],
)
@pytest.mark.parametrize("inplace", [False, True])
def test_integer_blends_in_blocks_equal_the_whole_batch_blend(shape, channels_last, inplace):
    """uint8 is blended a block at a time (to bound the float32 temporaries): every block, whole, in order."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(shape, generator=g) * 255).to(torch.uint8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.rand(shape[0], generator=torch.Generator().manual_seed(1))
    partner = x.roll(1, 0)
    whole = torch.lerp(x.float(), partner.float(), w.reshape(-1, 1, 1, 1)).round().clamp(0, 255).to(torch.uint8)
    given = x.clone()
    out = masks.blend(given, w, inplace=inplace)
    assert torch.equal(out, whole)
    assert (out is given) == inplace
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.uint8, torch.int8, torch.int16])
@pytest.mark.parametrize("how", ["cyclic", "partner", "inplace", "inplace partner"])
@pytest.mark.parametrize(
    ("shape", "channels_last"),
    [
        ((1, 3, 32, 40), False),
        ((2, 3, 32, 40), True),
        ((67, 3, 32, 40), False),
        ((67, 3, 32, 40), True),
        ((2, 3, 300, 301), False),
        ((2, 3, 300, 301), True),
    ],
)
def test_apply_pastes_and_blends_in_blocks_sample_by_sample(dtype, how, shape, channels_last):
    """apply(masks=, weights=) in one pass over blocks (67 x 3 x 32 x 40: blocks of 17 samples, the first split
    off; integer samples larger than a block: pasted, then blended by columns): every sample is its mask's paste
    over its own blend, computed here a sample at a time."""
    batch, _, height, width = shape
    g = torch.Generator().manual_seed(batch)
    x = (torch.rand(shape, generator=g) * 255 - (128 if dtype == torch.int8 else 0)).to(dtype)
    if dtype == torch.int16:  # the whole int16 range
        x = (torch.rand(shape, generator=g) * 65535 - 32768).round().to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    m = torch.rand(batch, height, width, generator=g) < torch.rand(batch, 1, 1, generator=g)
    w = torch.rand(batch, generator=g) * (torch.arange(batch) % 3 != 2)  # every third sample pasted only
    partner = torch.randperm(batch, generator=g) if "partner" in how else None
    before = x.clone()
    out = masks.apply(x, masks=m, weights=w, partner=partner, inplace="inplace" in how)
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    for i in range(batch):
        j = (i - 1) % batch if partner is None else int(partner[i])
        own, other = before[i].to(wide), before[j].to(wide)
        blended = torch.lerp(own, other, w[i].to(wide))
        if not dtype.is_floating_point:
            blended = blended.round()
        assert torch.equal(out[i], torch.where(m[i], other, blended).to(dtype)), i
    assert (out is x) == ("inplace" in how)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    if "inplace" not in how:
        assert torch.equal(x, before)
