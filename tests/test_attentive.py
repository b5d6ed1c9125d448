"""AttentiveCutMix: planted attention makes the expected cells known."""

import inspect
import os
import pickle
import re
import urllib.error
import warnings

import pytest
import torch
import torchvision
from helpers import foreign_masks
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from torchvision_mix import AttentiveCutMix, attention, masks
from torchvision_mix._scoring import DefaultExtractor
from torchvision_mix.testing import MixCheckError, check_mix_transform
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


def ceil_div(a, b):
    return -(-a // b)


def reference_heatmap(fmap, grid):
    """One sample's heatmap, by plain loops: channel mean, then adaptive average pooling to the grid.

    ``fmap`` is nested lists ``[C][h][w]`` (a feature map) or ``[h][w]`` (a heatmap). Output cell
    ``(r, c)`` averages input rows ``floor(r * h / g)`` to ``ceil((r + 1) * h / g)`` (excluded),
    and likewise the columns: adaptive pooling's definition, and the identity when ``h == g``.
    """
    if isinstance(fmap[0][0], list):
        channels, h, w = len(fmap), len(fmap[0]), len(fmap[0][0])
        fmap = [[sum(fmap[ch][y][x] for ch in range(channels)) / channels for x in range(w)] for y in range(h)]
    h, w = len(fmap), len(fmap[0])
    heat = []
    for r in range(grid):
        y0, y1 = r * h // grid, ceil_div((r + 1) * h, grid)
        row = []
        for c in range(grid):
            x0, x1 = c * w // grid, ceil_div((c + 1) * w, grid)
            window = [fmap[y][x] for y in range(y0, y1) for x in range(x0, x1)]
            row.append(sum(window) / len(window))
        heat.append(row)
    return heat


def reference_cells(heat, k):
    """The k highest cells (r, c): sorted by value descending, then by row-major index ascending."""
    grid = len(heat)
    ranked = sorted(((heat[r][c], r * grid + c) for r in range(grid) for c in range(grid)), key=lambda t: (-t[0], t[1]))
    return [divmod(index, grid) for _, index in ranked[:k]]


def expected_masks(maps, grid, k, height, width):
    """Attentive CutMix's masks by plain Python, independent of the library's heatmaps/top_k_cells/grid_to_masks.

    Receiver ``i`` takes the top ``k`` (or ``k[i]``) cells of donor ``i - 1``'s heatmap; cell row
    ``r`` covers pixel rows ``ceil(r * H / g)`` up to ``ceil((r + 1) * H / g)``, and likewise the columns.
    """
    maps = maps.double().tolist()
    batch = len(maps)
    ks = [k] * batch if isinstance(k, int) else [int(v) for v in k]
    out = torch.zeros(batch, height, width, dtype=torch.bool)
    for i in range(batch):
        heat = reference_heatmap(maps[(i - 1) % batch], grid)
        for r, c in reference_cells(heat, ks[i]):
            y0, y1 = ceil_div(r * height, grid), ceil_div((r + 1) * height, grid)
            x0, x1 = ceil_div(c * width, grid), ceil_div((c + 1) * width, grid)
            out[i, y0:y1, x0:x1] = True
    return out


def test_the_reference_itself_on_a_hand_made_case():
    """The test's own reference, checked by hand: pooling a 3x3 map to 2x2, ties, cells of a 5x3 image."""
    maps = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 5.0]]])[None]  # (1, 1, 3, 3)
    heat = reference_heatmap(maps[0].tolist(), 2)
    assert heat == [[1.0, 0.5], [0.5, 1.5]]  # overlapping windows: rows/columns 0-1 and 1-2
    assert heat == nn.functional.adaptive_avg_pool2d(maps[0], 2)[0].tolist()  # torch's definition of the pooling
    assert reference_cells(heat, 2) == [(1, 1), (0, 0)]
    assert reference_cells([[1, 2], [2, 0]], 2) == [(0, 1), (1, 0)]  # a tie: the lower index first
    mask = expected_masks(maps, 2, 1, 5, 3)[0]
    assert mask.int().tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 1]]  # rows 3-4, column 2


@st.composite
def attentive_cases(draw):
    grid = draw(st.integers(1, 8))
    case = draw(mst.mix_inputs(images=mst.image_batches(heights=st.integers(grid, 48), widths=st.integers(grid, 48))))
    images, labels, num_classes = case.images, case.labels, case.num_classes
    k = draw(st.integers(1, grid * grid))
    channels = draw(st.sampled_from([1, 2, 4]))  # powers of two: the channel means of integers are exact
    sizes = st.sampled_from([grid, grid + 1, grid + 3, 2 * grid])  # never coarser than the grid
    fh, fw = draw(sizes), draw(sizes)
    spread = draw(st.sampled_from([1, 3, 1000]))  # small spreads make many exact ties
    generator = torch.Generator().manual_seed(draw(mst.seeds()))
    maps = torch.randint(-spread, spread + 1, (images.shape[0], channels, fh, fw), generator=generator).float()
    extractor_size = draw(st.none() | st.tuples(st.integers(1, 40), st.integers(1, 40)))
    return images, labels, num_classes, grid, k, maps, extractor_size


@given(attentive_cases(), st.booleans(), st.booleans(), mst.seeds())
def test_pasted_region_is_exactly_the_donors_top_k_cells(case, inplace, per_sample, seed):
    images, labels, num_classes, grid, k, maps, extractor_size = case
    extractor = Planted(maps)
    mix = AttentiveCutMix(
        feature_extractor=extractor,
        extractor_size=extractor_size,
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
    assert extractor.calls[0]["shape"][-2:] == (extractor_size or (h, w))
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


@pytest.mark.parametrize("grid", [7, (3, 5)])
def test_heatmaps_are_exactly_the_channel_mean(grid):
    """Random maps: every channel, the first and the last included, disagrees with the mean."""
    size = (grid, grid) if isinstance(grid, int) else grid
    f = torch.randn(4, 5, *size, generator=torch.Generator().manual_seed(0))
    assert torch.equal(attention.heatmaps(f, grid), f.mean(1))
    for channel in range(5):
        assert not torch.equal(attention.heatmaps(f, grid), f[:, channel])


def test_the_mix_pastes_the_peak_of_the_channel_mean_not_of_one_channel():
    maps = torch.zeros(2, 3, 7, 7)
    maps[:, 0, 6, 6] = 5.0  # channel 0 (and the channel max) peak at (6, 6)
    maps[:, 1, 0, 0] = 4.0  # the mean peaks at (0, 0): 8/3 against 5/3 and 4.5/3
    maps[:, 2, 0, 0] = 4.0
    maps[:, 2, 3, 3] = 4.5  # the last channel peaks at (3, 3)
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


def test_preprocess_and_channels_last_are_applied():
    extractor = Planted(torch.rand(2, 1, 7, 7))
    mix = AttentiveCutMix(
        feature_extractor=extractor, num_classes=2, preprocess=lambda x: x * 0 + 3, channels_last=True
    )
    mix(torch.rand(2, 3, 14, 14), torch.arange(2))
    x = extractor.calls[0]["x"]
    assert float(x.max()) == 3.0 and x.is_contiguous(memory_format=torch.channels_last)


class AutocastRecorder(nn.Module):
    """Records whether autocast is on while it runs, and the dtype its convolution computes in."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=2, stride=2)
        self.seen = []

    def forward(self, x):
        y = self.conv(x)
        self.seen.append((torch.is_autocast_enabled(x.device.type), y.dtype))
        return y


@pytest.mark.parametrize("autocast", [False, True])
def test_autocast_runs_the_extractor_in_bfloat16_on_the_cpu(autocast):
    extractor = AutocastRecorder()
    mix = AttentiveCutMix(feature_extractor=extractor, num_classes=2, autocast=autocast)
    images, _ = mix(torch.rand(2, 3, 14, 14), torch.arange(2))
    assert extractor.seen == ([(True, torch.bfloat16)] if autocast else [(False, torch.float32)])
    assert images.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")  # only the extractor, and left off


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


@pytest.mark.parametrize("shape", [(4, 7, 7), (4, 5, 14, 14)])
def test_a_third_positional_tensor_is_the_attention(shape):
    def forbidden(x):
        raise AssertionError("the feature extractor must not run")

    heat = torch.rand(*shape)
    images = torch.rand(4, 3, 28, 28)
    out, soft, out_heat = AttentiveCutMix(feature_extractor=forbidden, num_classes=4)(images, torch.arange(4), heat)
    assert out_heat is heat and soft.shape == (4, 4)
    assert torch.equal(foreign_masks(out, images), expected_masks(heat, 7, 6, 28, 28))
    # A third value that is not a tensor is passed through, and the extractor computes the attention.
    maps = torch.rand(4, 2, 7, 7)
    out, _, name = AttentiveCutMix(feature_extractor=Planted(maps), num_classes=4)(images, torch.arange(4), "ids")
    assert name == "ids" and torch.equal(foreign_masks(out, images), expected_masks(maps, 7, 6, 28, 28))


def test_precomputed_attention_with_nan_is_refused_on_the_cpu():
    heat = torch.rand(2, 7, 7)
    heat[1, 3, 3] = float("nan")
    images = torch.rand(2, 3, 28, 28)
    before = images.clone()
    with pytest.raises(ValueError, match="attention holds NaN"):
        AttentiveCutMix(feature_extractor=lambda x: 1 / 0, num_classes=2, inplace=True)(images, torch.arange(2), heat)
    assert torch.equal(images, before)


def test_grey_images_reach_the_default_extractor_as_rgb_and_other_channel_counts_are_refused(monkeypatch):
    planted = Planted(torch.rand(3, 4, 7, 7))
    monkeypatch.setattr(DefaultExtractor, "build", lambda self: planted)
    grey = torch.rand(3, 1, 28, 28)
    out, _ = AttentiveCutMix(num_classes=3)(grey, torch.arange(3))
    (call,) = planted.calls
    assert call["shape"] == (3, 3, 28, 28) and out.shape == grey.shape
    assert all(torch.equal(call["x"][:, c], grey[:, 0]) for c in range(3))  # R = G = B = grey
    assert torch.equal(foreign_masks(out, grey), expected_masks(planted.maps, 7, 6, 28, 28))
    for channels in (2, 4):
        images = torch.rand(3, channels, 28, 28)
        before = images.clone()
        with pytest.raises(ValueError, match=rf"RGB or grey images, but got {channels} channels"):
            AttentiveCutMix(num_classes=3, inplace=True)(images, torch.arange(3))
        assert torch.equal(images, before) and len(planted.calls) == 1
    # Your own extractor takes whatever it takes.
    own = Planted(torch.rand(3, 4, 7, 7))
    AttentiveCutMix(feature_extractor=own, num_classes=3)(torch.rand(3, 4, 28, 28), torch.arange(3))
    assert own.calls[0]["shape"] == (3, 4, 28, 28)


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
    counts, varied_within_a_batch = set(), False
    for _ in range(10):
        images = torch.rand(6, 1, 14, 14)
        out, _ = mix(images, torch.arange(6))
        pasted = foreign_masks(out, images)
        n = (pasted.flatten(1).sum(1) // 4).tolist()
        assert all(1 <= c <= 49 for c in n)
        assert torch.equal(pasted, expected_masks(maps, 7, n, 14, 14))  # each sample: its donor's top n[i] cells
        if not per_sample:
            assert len(set(n)) == 1
        varied_within_a_batch |= len(set(n)) > 1
        counts.update(n)
    assert len(counts) > 5
    assert varied_within_a_batch == per_sample  # per_sample: one top_k per sample, not one per batch


def test_the_coarse_map_check_reads_shapes_only():
    """On the meta device any .item()/.tolist()/.cpu() of a device tensor would raise (the mixing path of
    every mix is checked there in test_contract.py)."""
    images = torch.empty(4, 3, 32, 32, device="meta")
    labels = torch.empty(4, dtype=torch.int64, device="meta")
    normalising = attention.FeatureExtractor(nn.Conv2d(3, 8, kernel_size=32, stride=32)).to("meta")  # 1x1 maps
    with pytest.raises(ValueError, match="extractor_size=224"):
        AttentiveCutMix(feature_extractor=normalising, num_classes=3)(images, labels)


def test_default_backbone_is_resnet50_up_to_layer4():
    mix = AttentiveCutMix(num_classes=2, weights=None)  # untrained: no download
    images = torch.rand(2, 3, 224, 224)
    out, soft = mix(images, torch.arange(2))
    assert soft.shape == (2, 2)
    backbone = mix._scorer.default.module.backbone
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
        ({"extractor_size": 0}, ValueError, "extractor_size must be"),
        ({"extractor_size": (224,)}, ValueError, "extractor_size must be"),
        ({"extractor_size": (224, 0)}, ValueError, "extractor_size must be"),
        ({"extractor_size": True}, ValueError, "extractor_size must be"),
        ({"extractor_size": "224"}, ValueError, "extractor_size must be"),
        ({"weights": "NOPE"}, ValueError, "Unknown weights 'NOPE' for resnet50"),
        ({"weights_path": 3}, TypeError, "weights_path must be a path"),
        ({"normalize": 1}, TypeError, "normalize must be True or False"),
        ({"feature_extractor": nn.Identity(), "normalize": False}, ValueError, "configure the default"),
        ({"feature_extractor": nn.Identity(), "weights": None}, ValueError, "configure the default"),
        ({"feature_extractor": nn.Identity(), "weights_path": "r.pth"}, ValueError, "configure the default"),
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


# --- feature maps coarser than the grid, and extractor_size ----------------------------------------------------------


@pytest.mark.parametrize(
    ("map_size", "hint"),
    [((1, 1), "extractor_size=224,"), ((7, 3), "extractor_size=(32, 75),"), ((3, 7), "=(75, 32),")],
)
def test_a_feature_map_coarser_than_the_grid_raises_and_says_what_to_do(map_size, hint):
    """A 1x1 map (a ResNet on 32x32 CIFAR images) pooled to 7x7 is constant: every sample would get the same cells."""
    images = torch.rand(4, 3, 32, 32)
    before = images.clone()
    maps = torch.rand(4, 8, *map_size)
    mix = AttentiveCutMix(feature_extractor=Planted(maps), num_classes=4, inplace=True)
    with pytest.raises(ValueError, match=r"coarser than the 7x7 grid") as info:
        mix(images, torch.arange(4))
    message = str(info.value)
    assert hint in message and message.count("=") == 1  # one cause, one fix: the size that gives a 7x7 map
    assert torch.equal(images, before)


def test_precomputed_attention_coarser_than_the_grid_raises():
    mix = AttentiveCutMix(num_classes=2)
    images = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"precomputed attention maps are 1x1, coarser than the 7x7 grid"):
        mix({"image": images, "label": torch.arange(2), "attention": torch.rand(2, 64, 1, 1)})
    with pytest.raises(ValueError, match=r"are 7x6, coarser"):
        mix({"image": images, "label": torch.arange(2), "attention": torch.rand(2, 7, 6)})


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("size", "want"), [(224, (224, 224)), ((100, 60), (100, 60))])
def test_extractor_size_gives_the_extractor_a_resized_copy_and_the_cells_the_original(dtype, size, want):
    maps = torch.randint(-3, 4, (4, 2, 7, 7), generator=torch.Generator().manual_seed(0)).float()
    extractor = Planted(maps)
    images = torch.rand(4, 3, 32, 30)
    images = (images * 255).to(dtype) if dtype == torch.uint8 else images.to(dtype)
    before = images.clone()
    out, _ = AttentiveCutMix(feature_extractor=extractor, extractor_size=size, num_classes=4)(images, torch.arange(4))
    assert torch.equal(images, before)  # the batch itself is not resized
    (call,) = extractor.calls
    floats = images.float() / 255 if dtype == torch.uint8 else images
    resized = nn.functional.interpolate(floats, size=want, mode="bilinear", align_corners=False, antialias=False)
    assert call["shape"] == (4, 3, *want) and torch.equal(call["x"], resized)
    assert out.shape == images.shape
    assert torch.equal(foreign_masks(out, images), expected_masks(maps, 7, 6, 32, 30))


def test_cifar_recipe_with_a_real_resnet():
    torch.manual_seed(0)
    extractor = attention.feature_extractor("resnet18", weights=None)
    images, labels = torch.rand(4, 3, 32, 32), torch.arange(4)
    with pytest.raises(ValueError, match=r"1x1 feature maps for 32x32 images.*extractor_size=224"):
        AttentiveCutMix(feature_extractor=extractor, num_classes=10)(images, labels)
    out, _ = AttentiveCutMix(feature_extractor=extractor, extractor_size=224, num_classes=10)(images, labels)
    pasted = foreign_masks(out, images)
    bounds = [0, 5, 10, 14, 19, 23, 28, 32]  # ceil(k * 32 / 7)
    cells = torch.tensor(
        [[[bool(p[bounds[r], bounds[c]]) for c in range(7)] for r in range(7)] for p in pasted]
    )  # (4, 7, 7): each cell's top-left pixel
    rebuilt = torch.zeros_like(pasted)
    for i, r, c in cells.nonzero().tolist():
        rebuilt[i, bounds[r] : bounds[r + 1], bounds[c] : bounds[c + 1]] = True
    assert torch.equal(rebuilt, pasted)  # whole cells of the original 32x32 image
    assert cells.flatten(1).sum(1).tolist() == [6, 6, 6, 6]
    assert len({tuple(c.flatten().tolist()) for c in cells}) > 1  # not the same strip for every sample


# --- normalising twice ----------------------------------------------------------------------------------------------


def _normalising(normalize=True):
    return attention.FeatureExtractor(nn.Conv2d(3, 4, kernel_size=4, stride=4), normalize=normalize)  # 28 -> 7x7


def test_a_normalising_extractor_warns_once_about_a_batch_normalised_already():
    normalized = v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])(torch.rand(4, 3, 28, 28))
    mix = AttentiveCutMix(feature_extractor=_normalising(), num_classes=4)
    with pytest.warns(UserWarning, match=r"normalised twice: pass normalize=False") as record:
        mix(normalized, torch.arange(4))
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mix(normalized, torch.arange(4))  # once per transform
        mix(torch.rand(4, 3, 28, 28), torch.arange(4))
        AttentiveCutMix(feature_extractor=_normalising(False), num_classes=4)(normalized, torch.arange(4))
        AttentiveCutMix(feature_extractor=_normalising(), num_classes=4)(torch.rand(4, 3, 28, 28), torch.arange(4))
        uint8 = (torch.rand(4, 3, 28, 28) * 255).to(torch.uint8)
        AttentiveCutMix(feature_extractor=_normalising(), num_classes=4)(uint8, torch.arange(4))
    with pytest.warns(UserWarning, match=r"got a batch in \[0, 25\d\].*floats in \[0, 255\]"):  # another transform
        AttentiveCutMix(feature_extractor=_normalising(), num_classes=4)(uint8.float(), torch.arange(4))
    with pytest.warns(UserWarning, match="normalize=False"):  # a preprocess that normalises counts too
        AttentiveCutMix(feature_extractor=_normalising(), num_classes=4, preprocess=v2.Normalize([0.5] * 3, [0.1] * 3))(
            uint8, torch.arange(4)
        )


def test_normalize_false_reaches_the_default_extractor():
    mix = AttentiveCutMix(num_classes=2, weights=None, normalize=False, grid_size=2, top_k=2)
    normalized = v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])(torch.rand(2, 3, 64, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mix(normalized, torch.arange(2))
    assert mix._scorer.default.module.normalize is False


# --- the default extractor offline ----------------------------------------------------------------------------------


def test_offline_default_fails_once_and_names_only_arguments_it_takes(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert torch.hub.get_dir().startswith(str(tmp_path))  # an empty cache: the weights must be downloaded
    attempts = []

    def offline(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    mix = AttentiveCutMix(num_classes=2, grid_size=2, top_k=2)
    images, labels = torch.rand(2, 3, 64, 64), torch.arange(2)
    messages = []
    for _ in range(3):
        with pytest.raises(RuntimeError) as info:
            mix(images, labels)
        messages.append(str(info.value))
    worker = pickle.loads(pickle.dumps(mix))  # a DataLoader worker's copy remembers the failure too
    with pytest.raises(RuntimeError) as info:
        worker(images, labels)
    messages.append(str(info.value))
    assert len(attempts) == 1 and "resnet50-" in attempts[0]
    assert len(set(messages)) == 1
    message = messages[0]
    assert "AttentiveCutMix(weights_path='resnet50.pth')" in message and os.path.join(str(tmp_path), "hub") in message
    assert "mix(images, labels, attention)" in message  # the way out that needs no network
    assert "resnet50-" in message and "remembered" in message
    named = set(re.findall(r"\b(\w+)=", message))
    assert named and named <= set(inspect.signature(AttentiveCutMix).parameters)
    # ... and the hint is right: weights_path= loads a local file without a download
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    _, soft = AttentiveCutMix(num_classes=2, grid_size=2, top_k=2, weights_path=path)(images, labels)
    assert soft.shape == (2, 2) and len(attempts) == 1


def test_a_bad_weights_file_is_remembered_too(tmp_path, monkeypatch):
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: loads.append(args) or real_load(*args, **kwargs))
    mix = AttentiveCutMix(num_classes=2, grid_size=2, top_k=2, weights_path=tmp_path / "missing.pth")
    for _ in range(3):
        with pytest.raises(RuntimeError, match=r"could not build its default feature extractor .*missing\.pth"):
            mix(torch.rand(2, 3, 64, 64), torch.arange(2))
    assert len(loads) == 1  # tried once


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.uint8])
def test_every_image_dtype_meets_a_float32_extractor(dtype):
    """A float32 module gets the batch in its own dtype (half-precision batches failed in the conv before)."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, kernel_size=8, stride=8)
    images = (torch.rand(4, 3, 64, 64) * (255 if dtype == torch.uint8 else 1)).to(dtype)
    out, labels = AttentiveCutMix(feature_extractor=net, num_classes=4)(images, torch.arange(4))
    assert out.dtype == dtype and labels.shape == (4, 4)


# --- label_rule="attention" -----------------------------------------------------------------------------------------


def test_attention_label_rule_gives_the_share_of_the_donors_attention_that_was_pasted():
    """Label weight: the sum over pasted cells of max(heat, 0) * cell area, over that sum on all cells (loops)."""
    b, g, k, h, w = 5, 3, 2, 10, 11  # 10 and 11 do not divide by 3: cells of unequal areas
    heat = torch.rand(b, g, g, generator=torch.Generator().manual_seed(0)) - 0.2  # some negative cells
    heat[3] = -1.0  # a donor without positive attention: its area stands in
    images, labels = torch.rand(b, 3, h, w), torch.arange(b)
    mix = AttentiveCutMix(grid_size=g, top_k=k, label_rule="attention", num_classes=b)
    out, soft, _ = mix(images, labels, heat)

    def bounds(size):
        return [-(-i * size // g) for i in range(g + 1)]  # ceil(i * size / g)

    rows, cols = bounds(h), bounds(w)
    for i in range(b):
        donor = (i - 1) % b
        order = sorted(range(g * g), key=lambda c: (-float(heat[donor].flatten()[c]), c))
        pasted = set(order[:k])
        mass = {
            c: max(float(heat[donor].flatten()[c]), 0.0)
            * (rows[c // g + 1] - rows[c // g])
            * (cols[c % g + 1] - cols[c % g])
            for c in range(g * g)
        }
        area = sum((rows[c // g + 1] - rows[c // g]) * (cols[c % g + 1] - cols[c % g]) for c in pasted) / (h * w)
        total = sum(mass.values())
        share = sum(mass[c] for c in pasted) / total if total > 0 else area
        assert abs(float(soft[i, donor]) - share) < 1e-6, (i, float(soft[i, donor]), share)
        assert abs(float(soft[i, i]) - (1 - share)) < 1e-6
        foreign = foreign_masks(out[i : i + 1], images[i : i + 1])[0]
        assert int(foreign.sum()) == round(area * h * w)  # the pixels are the area rule's
    # The default stays the area.
    _, by_area, _ = AttentiveCutMix(grid_size=g, top_k=k, num_classes=b)(images, labels, heat)
    assert not torch.allclose(by_area, soft)


def test_attention_label_rule_is_checked_and_zero_for_unmixed_samples():
    with pytest.raises(ValueError, match="label_rule must be one of"):
        AttentiveCutMix(label_rule="saliency")
    heat = torch.rand(8, 2, 2)
    mix = AttentiveCutMix(
        grid_size=2,
        top_k=1,
        label_rule="attention",
        num_classes=8,
        p=0.5,
        per_sample=True,
        generator=torch.Generator().manual_seed(0),
    )
    _, soft, _ = mix(torch.rand(8, 3, 4, 4), torch.arange(8), heat)
    drawn = torch.rand(8, generator=torch.Generator().manual_seed(0)) < 0.5
    assert 0 < int(drawn.sum()) < 8
    for i in range(8):
        assert (float(soft[i, i]) == 1.0) == (not bool(drawn[i]))


def test_the_kit_checks_the_attention_label_rule_through_a_callable_with_indices():
    b, g = 6, 4
    heat = torch.rand(b, g, g, generator=torch.Generator().manual_seed(2))
    images, labels = torch.rand(b, 3, 16, 16), torch.arange(b)
    mix = AttentiveCutMix(grid_size=g, top_k=5, label_rule="attention", num_classes=b)

    def share(fraction, mixed, *, sample, partner):
        h = heat[partner].flatten()
        top = sorted(range(g * g), key=lambda c: (-float(h[c]), c))[:5]
        return float(sum(h[c] for c in top) / h.sum()) if mixed else 0.0  # equal cells: area factors cancel

    check_mix_transform(mix, images, labels, heat, num_classes=b, label_rule=share, require_pairing="previous")
    with pytest.raises(MixCheckError, match="but the fraction of its pixels is"):
        check_mix_transform(mix, images, labels, heat, num_classes=b)  # by area it is wrong
