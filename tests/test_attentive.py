"""AttentiveCutMix: planted attention makes the expected cells known."""

import urllib.error

import pytest
import torch
import torchvision
from helpers import foreign_masks
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torchvision import tv_tensors

from torchvision_mix import AttentiveCutMix, attention, masks
from torchvision_mix.testing import check_mix_transform
from torchvision_mix.testing import strategies as mst


class Planted(nn.Module):
    """Returns planted feature maps and records how it was called."""

    def __init__(self, maps):
        super().__init__()
        self.maps = maps
        self.calls = []

    def forward(self, x):
        self.calls.append(
            {
                "shape": tuple(x.shape),
                "dtype": x.dtype,
                "training": self.training,
                "grad": torch.is_grad_enabled(),
                "max": float(x.max()) if x.numel() else 0.0,
                "x": x,
            }
        )
        return self.maps.to(x.device)


def expected_masks(maps, grid, k, height, width):
    heat = attention.heatmaps(maps, grid)
    return masks.grid_to_masks(masks.top_k_cells(heat.roll(1, 0), k), height, width)


@st.composite
def attentive_cases(draw):
    grid = draw(st.integers(1, 8))
    images, labels, num_classes = draw(mst.mix_inputs(min_side=grid, max_side=48))
    k = draw(st.integers(1, grid * grid))
    channels = draw(st.integers(1, 4))
    fmap = draw(st.sampled_from([grid, grid + 1, max(grid - 1, 1)]))
    seed = draw(mst.seeds())
    maps = torch.randn(images.shape[0], channels, fmap, fmap, generator=torch.Generator().manual_seed(seed))
    return images, labels, num_classes, grid, k, maps


@given(attentive_cases(), st.booleans(), st.booleans(), mst.seeds())
def test_pasted_region_is_exactly_the_donors_top_k_cells(case, inplace, per_sample, seed):
    images, labels, num_classes, grid, k, maps = case
    extractor = Planted(maps)
    mix = AttentiveCutMix(
        feature_extractor=extractor,
        grid_size=grid,
        top_k=k,
        num_classes=num_classes,
        inplace=inplace,
        per_sample=per_sample,
        generator=torch.Generator().manual_seed(seed),
    )
    before = images.clone()
    report = check_mix_transform(mix, images, labels, num_classes=num_classes, inplace=inplace)
    h, w = images.shape[-2:]
    expected = expected_masks(maps, grid, k, h, w)
    if images.shape[0] == 1:  # a batch of one is its own donor: nothing visibly changes
        expected = torch.zeros_like(expected)
    assert torch.equal(foreign_masks(report.images, before), expected)
    assert len(extractor.calls) == 1 and extractor.calls[0]["shape"][0] == images.shape[0]  # one forward a batch
    lam = masks.mask_fractions(expected, dtype=torch.float64)
    if images.shape[0] > 1:
        soft = torch.nn.functional.one_hot(labels, num_classes).double() if labels.ndim == 1 else labels.double()
        want = (1 - lam[:, None]) * soft + lam[:, None] * soft.roll(1, 0)
        torch.testing.assert_close(report.labels.double(), want, rtol=0, atol=1e-5)


def test_224_grid_7_top_6_is_exactly_six_49ths_in_aligned_32px_cells():
    maps = torch.rand(5, 16, 7, 7, generator=torch.Generator().manual_seed(0))
    images, labels = torch.rand(5, 3, 224, 224), torch.arange(5)
    out, soft = AttentiveCutMix(feature_extractor=Planted(maps), num_classes=5)(images, labels)
    pasted = foreign_masks(out, images)
    assert (pasted.flatten(1).sum(1) == 6 * 32 * 32).all()
    cells = pasted.reshape(5, 7, 32, 7, 32)
    assert (cells.all(dim=(2, 4)) == cells.any(dim=(2, 4))).all()  # every cell entirely in or out
    assert torch.equal(soft.max(1).values, torch.full((5,), 43 / 49))
    assert torch.equal(soft[torch.arange(5), (torch.arange(5) - 1) % 5], torch.full((5,), 6 / 49))


@pytest.mark.parametrize(("height", "width"), [(61, 61), (115, 115), (230, 230), (100, 75), (75, 100), (7, 300)])
def test_cells_tile_odd_and_non_square_sizes_without_gap_or_overlap(height, width):
    """Every cell pasted once across the batch: the masks must cover each pixel exactly once."""
    n = 49
    maps = torch.zeros(n, 1, 7, 7)
    maps.view(n, 49)[torch.arange(n), torch.arange(n)] = 1.0  # donor j attends only to cell j
    images = torch.rand(n, 1, height, width)
    out, soft = AttentiveCutMix(feature_extractor=Planted(maps), top_k=1, num_classes=n)(images, torch.arange(n))
    pasted = foreign_masks(out, images)
    assert torch.equal(pasted.sum(0), torch.ones(height, width, dtype=torch.int64))
    lam = soft[torch.arange(n), (torch.arange(n) - 1) % n]
    torch.testing.assert_close(lam, pasted.flatten(1).float().mean(1), rtol=0, atol=1e-6)


def test_heatmap_is_the_channel_mean_not_one_channel():
    maps = torch.zeros(2, 3, 7, 7)
    maps[:, 0, 0, 0] = 10.0  # the mean peaks at (0, 0) ...
    maps[:, 2, 6, 6] = 5.0  # ... the last channel at (6, 6)
    images = torch.rand(2, 3, 70, 70)
    out, _ = AttentiveCutMix(feature_extractor=Planted(maps), top_k=1, num_classes=2)(images, torch.arange(2))
    pasted = foreign_masks(out, images)
    assert pasted[:, :10, :10].all() and int(pasted.sum()) == 2 * 100


def test_heatmap_comes_from_the_donor_not_the_receiver():
    maps = torch.zeros(3, 1, 7, 7)
    for j, cell in enumerate([(0, 3), (5, 1), (2, 6)]):
        maps[j, 0, cell[0], cell[1]] = 1.0
    images = torch.rand(3, 3, 70, 70)
    out, _ = AttentiveCutMix(feature_extractor=Planted(maps), top_k=1, num_classes=3)(images, torch.arange(3))
    pasted = foreign_masks(out, images)
    for i, (r, c) in enumerate([(2, 6), (0, 3), (5, 1)]):  # receiver i gets donor i-1's cell
        assert pasted[i, r * 10 : r * 10 + 10, c * 10 : c * 10 + 10].all() and int(pasted[i].sum()) == 100


def test_off_diagonal_cells_are_chosen():
    chosen = set()
    for r in range(7):
        for c in range(7):
            maps = torch.zeros(2, 1, 7, 7)
            maps[:, 0, r, c] = 1.0
            images = torch.rand(2, 1, 28, 28)
            out, _ = AttentiveCutMix(feature_extractor=Planted(maps), top_k=1, num_classes=2)(images, torch.arange(2))
            ys, xs = foreign_masks(out, images)[0].nonzero().min(0).values.tolist()
            chosen.add((ys // 4, xs // 4))
    assert len(chosen) == 49


def test_lambda_varies_with_the_pasted_area():
    """λ is measured per sample, not fixed at k/g² nor copied from sample 0."""
    maps = torch.zeros(2, 1, 2, 2)
    maps[0, 0, 0, 0] = 1.0  # donor 0 → receiver 1: top-left cell, 3x3 pixels of a 5x5 image
    maps[1, 0, 1, 1] = 1.0  # donor 1 → receiver 0: bottom-right cell, 2x2 pixels
    images = torch.rand(2, 1, 5, 5)
    _, soft = AttentiveCutMix(feature_extractor=Planted(maps), grid_size=2, top_k=1, num_classes=2)(
        images, torch.arange(2)
    )
    torch.testing.assert_close(soft, torch.tensor([[21 / 25, 4 / 25], [9 / 25, 16 / 25]]))


def test_ties_break_by_row_major_index():
    maps = torch.ones(2, 1, 3, 3)
    images = torch.rand(2, 1, 9, 9)
    out, _ = AttentiveCutMix(feature_extractor=Planted(maps), grid_size=3, top_k=4, num_classes=2)(
        images, torch.arange(2)
    )
    cells = foreign_masks(out, images)[:, ::3, ::3]
    assert cells.flatten(1).tolist() == [[True] * 4 + [False] * 5] * 2


def test_extractor_runs_once_without_grad_in_eval_and_the_mode_is_restored():
    extractor = Planted(torch.rand(4, 2, 7, 7)).train()
    inner = nn.Linear(1, 1)
    extractor.inner = inner
    inner.eval()  # a submodule the caller had set to eval stays so
    mix = AttentiveCutMix(feature_extractor=extractor, num_classes=4)
    mix(torch.rand(4, 3, 28, 28, requires_grad=True), torch.arange(4))
    assert extractor.training and not inner.training
    (call,) = extractor.calls
    assert not call["training"] and not call["grad"]


def test_uint8_batches_reach_the_extractor_as_float_in_0_1_and_floats_unchanged():
    extractor = Planted(torch.rand(2, 1, 7, 7))
    images = torch.full((2, 3, 14, 14), 255, dtype=torch.uint8)
    AttentiveCutMix(feature_extractor=extractor, num_classes=2)(images, torch.arange(2))
    assert extractor.calls[0]["dtype"] == torch.float32 and extractor.calls[0]["max"] == 1.0
    floats = torch.rand(2, 3, 14, 14, dtype=torch.float64) * 7
    AttentiveCutMix(feature_extractor=extractor, num_classes=2)(floats, torch.arange(2))
    assert extractor.calls[1]["x"] is floats or torch.equal(extractor.calls[1]["x"], floats)


def test_preprocess_autocast_and_channels_last_are_applied():
    extractor = Planted(torch.rand(2, 1, 7, 7))
    mix = AttentiveCutMix(
        feature_extractor=extractor, num_classes=2, preprocess=lambda x: x * 0 + 3, channels_last=True, autocast=True
    )
    mix(torch.rand(2, 3, 14, 14), torch.arange(2))
    x = extractor.calls[0]["x"]
    assert float(x.max()) == 3.0 and x.is_contiguous(memory_format=torch.channels_last)


def test_video_uses_the_middle_frame_and_the_same_cells_on_every_frame():
    extractor = Planted(torch.rand(3, 1, 7, 7))
    video = tv_tensors.Video(torch.rand(3, 5, 3, 14, 14))
    out, _ = AttentiveCutMix(feature_extractor=extractor, num_classes=3)(video, torch.arange(3))
    assert torch.equal(extractor.calls[0]["x"], video[:, 2].as_subclass(torch.Tensor))
    diff = (out.as_subclass(torch.Tensor) != video.as_subclass(torch.Tensor)).any(2)
    assert all(torch.equal(diff[:, t], diff[:, 0]) for t in range(5)) and diff.any()


@pytest.mark.parametrize("key", ["attention", "heatmaps", "Attention_maps"])
def test_precomputed_attention_needs_no_forward_pass(key):
    def forbidden(x):
        raise AssertionError("the feature extractor must not run")

    heat = torch.rand(4, 7, 7)
    images = tv_tensors.Image(torch.rand(4, 3, 28, 28))
    sample = {"image": images, "label": torch.arange(4), key: heat}
    out = AttentiveCutMix(feature_extractor=forbidden, num_classes=4)(sample)
    assert out[key] is heat
    assert torch.equal(foreign_masks(out["image"], images), expected_masks(heat, 7, 6, 28, 28))


def test_precomputed_feature_maps_and_a_custom_attention_getter():
    maps = torch.rand(3, 8, 14, 14)
    images = torch.rand(3, 3, 28, 28)
    mix = AttentiveCutMix(num_classes=3, attention_getter=lambda inputs: inputs[2], feature_extractor=lambda x: 1 / 0)
    out_images, _, out_maps = mix(images, torch.arange(3), maps)
    assert out_maps is maps
    assert torch.equal(foreign_masks(out_images, images), expected_masks(maps, 7, 6, 28, 28))


@pytest.mark.parametrize("per_sample", [False, True])
def test_random_top_k_from_beta(per_sample):
    maps = torch.rand(6, 1, 7, 7)
    mix = AttentiveCutMix(
        feature_extractor=Planted(maps),
        top_k=None,
        alpha=1.0,
        per_sample=per_sample,
        num_classes=6,
        generator=torch.Generator().manual_seed(0),
    )
    counts = set()
    for _ in range(10):
        images = torch.rand(6, 1, 14, 14)
        out, _ = mix(images, torch.arange(6))
        n = (foreign_masks(out, images).flatten(1).sum(1) // 4).tolist()
        assert all(1 <= c <= 49 for c in n)
        if not per_sample:
            assert len(set(n)) == 1
        counts.update(n)
    assert len(counts) > 5


def test_no_host_sync_on_the_mixing_path():
    """On the meta device any .item()/.tolist()/.cpu() of a device tensor would raise."""
    images = torch.empty(4, 3, 32, 32, device="meta")
    labels = torch.empty(4, dtype=torch.int64, device="meta")
    extractor = Planted(torch.empty(4, 8, 7, 7, device="meta"))
    extractor.forward = lambda x: torch.empty(4, 8, 7, 7, device="meta")
    for per_sample in (False, True):
        for mix in (
            AttentiveCutMix(feature_extractor=extractor, num_classes=3, per_sample=per_sample, p=0.5),
            AttentiveCutMix(feature_extractor=extractor, num_classes=3, top_k=None, alpha=1.0, per_sample=per_sample),
        ):
            out, soft = mix(images, labels)
            assert out.device.type == "meta" and soft.shape == (4, 3)


def test_default_backbone_is_resnet50_up_to_layer4(monkeypatch):
    real = attention.feature_extractor
    monkeypatch.setattr(attention, "feature_extractor", lambda name: real(name, weights=None))
    mix = AttentiveCutMix(num_classes=2)
    images = torch.rand(2, 3, 224, 224)
    out, soft = mix(images, torch.arange(2))
    assert soft.shape == (2, 2)
    backbone = mix._default_extractor.backbone
    assert isinstance(backbone[-1], type(torchvision.models.resnet50().layer4))
    assert backbone(torch.rand(1, 3, 224, 224)).shape == (1, 2048, 7, 7)
    assert (foreign_masks(out, images).flatten(1).sum(1) == 6 * 32 * 32).all()


def test_offline_error_says_what_to_do(monkeypatch):
    def offline(**kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models, "get_model_builder", lambda name: offline)
    with pytest.raises(RuntimeError, match="weights_path=") as info:
        attention.feature_extractor("resnet50")
    assert "resnet50-" in str(info.value) and "feature_extractor" in str(info.value)


def test_feature_extractor_helper_options(tmp_path):
    net = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    loaded = attention.feature_extractor("resnet18", weights_path=path, normalize=False)
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x), nn.Sequential(*list(net.children())[:-2]).eval()(x))
    assert attention.feature_extractor(net, layer="layer3")(x).shape == (1, 256, 4, 4)
    assert attention.feature_extractor("mobilenet_v3_small", weights=None)(x).shape[1] == 576
    with pytest.raises(ValueError, match="Unknown torchvision model"):
        attention.feature_extractor("resnet-5000")
    with pytest.raises(ValueError, match="not a node"):
        attention.feature_extractor(net, layer="layer9")
    with pytest.raises(ValueError, match="Unknown weights"):
        attention.feature_extractor("resnet18", weights="NOPE")


def test_heatmaps_pool_other_sizes():
    feats = torch.arange(64.0).reshape(1, 1, 8, 8).expand(2, 3, 8, 8)
    heat = attention.heatmaps(feats, 4)
    torch.testing.assert_close(heat[0], nn.functional.avg_pool2d(feats[:1, :1], 2)[0, 0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"top_k": 0}, ValueError, r"top_k must be an int in \[1, 49\]"),
        ({"top_k": 50}, ValueError, r"\[1, 49\]"),
        ({"grid_size": 0}, ValueError, "grid_size must be an int >= 1"),
        ({"alpha": 1.0}, ValueError, "pass top_k=None"),
        ({"top_k": None}, ValueError, "top_k must be"),
        ({"feature_extractor": 3}, TypeError, "feature_extractor must be"),
        ({"preprocess": "x"}, TypeError, "preprocess must be"),
        ({"attention_getter": "x"}, ValueError, "attention_getter must be"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        AttentiveCutMix(**kwargs)


@pytest.mark.parametrize(
    ("extractor_out", "images", "match"),
    [
        (torch.rand(2, 7, 7), torch.rand(2, 3, 28, 28), r"feature maps \(B, C, h, w\) with B=2"),
        (torch.rand(3, 1, 7, 7), torch.rand(2, 3, 28, 28), r"with B=2, but returned shape \(3, 1, 7, 7\)"),
        ([1, 2], torch.rand(2, 3, 28, 28), "must return a tensor"),
        (torch.rand(2, 1, 7, 7), torch.rand(2, 3, 6, 28), r"grid \(7x7\) is larger than the images \(6x28\)"),
    ],
)
def test_bad_extractor_output_or_images(extractor_out, images, match):
    before = images.clone()
    mix = AttentiveCutMix(feature_extractor=lambda x: extractor_out, num_classes=2, inplace=True)
    with pytest.raises((ValueError, TypeError), match=match):
        mix(images, torch.arange(2))
    assert torch.equal(images, before)


def test_bad_precomputed_attention_and_device_mismatch():
    images = torch.rand(2, 3, 28, 28)
    mix = AttentiveCutMix(num_classes=2, feature_extractor=Planted(torch.rand(2, 1, 7, 7)))
    with pytest.raises(ValueError, match=r"with B=2, but got shape \(3, 7, 7\)"):
        mix({"image": images, "label": torch.arange(2), "attention": torch.rand(3, 7, 7)})
    with pytest.raises(TypeError, match="attention must be a tensor"):
        mix({"image": images, "label": torch.arange(2), "attention": [1.0]})
    on_meta = nn.Conv2d(3, 4, 3).to("meta")
    with pytest.raises(ValueError, match="move it first"):
        AttentiveCutMix(num_classes=2, feature_extractor=on_meta)(images, torch.arange(2))
