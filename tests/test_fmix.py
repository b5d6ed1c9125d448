"""FMix: masks recomputed from the same random draws with NumPy's FFT and Python's sort."""

import math

import numpy as np
import pytest
import torch
from helpers import foreign_masks, seeded
from torchvision import tv_tensors

import torchvision_mix._core.build as build
from torchvision_mix import FMix, masks
from torchvision_mix._core import _kernels
from torchvision_mix.testing import strategies as mst


def numpy_noise(parts, height, width, decay_power):
    """The FMix noise from the spectrum's real and imaginary parts ``(n, H, W // 2 + 1, 2)``, in float64."""
    spectrum = parts[..., 0].double().numpy() + 1j * parts[..., 1].double().numpy()
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freq = np.sqrt(fy**2 + fx**2)
    scale = 1.0 / np.maximum(freq, 1.0 / max(height, width)) ** decay_power
    return np.fft.irfftn(spectrum * scale, s=(height, width), axes=(1, 2))


def top_count_by_sorting(noise, count):
    """The ``count`` highest pixels, ties to the lower flat index, by Python's sort (NaN last)."""
    flat = [float(v) for v in np.asarray(noise).reshape(-1)]
    order = sorted(range(len(flat)), key=lambda j: (math.isnan(flat[j]), -flat[j] if flat[j] == flat[j] else 0, j))
    mask = np.zeros(len(flat), dtype=bool)
    mask[order[:count]] = True
    return mask.reshape(np.asarray(noise).shape), flat, order


def expected_fmix(seed, batch, height, width, *, per_sample, p=1.0, alpha=1.0, decay_power=3.0):
    """Replay the generator stream (p draws, spectra, then t ~ Beta(1, 1) = U(0, 1)) in plain code."""
    assert alpha == 1.0
    g = torch.Generator().manual_seed(seed)
    if per_sample:
        applied = torch.ones(batch, dtype=torch.bool) if p == 1.0 else torch.rand(batch, generator=g) < p
    else:
        applied = torch.ones(batch, dtype=torch.bool)
    n = batch if per_sample else 1
    parts = torch.randn(n, height, width // 2 + 1, 2, generator=g)
    t = torch.rand(n, dtype=torch.float64, generator=g)
    counts = [round(float(v) * height * width) for v in t]  # round half to even, like torch
    noise = numpy_noise(parts, height, width, decay_power)
    out = np.zeros((batch, height, width), dtype=bool)
    gaps = []
    for i in range(batch):
        k = i if per_sample else 0
        mask, flat, order = top_count_by_sorting(noise[k], counts[k])
        if 0 < counts[k] < len(flat):  # the margin between the last pixel taken and the first left
            gaps.append(flat[order[counts[k] - 1]] - flat[order[counts[k]]])
        out[i] = mask & bool(applied[i])
    spread = float(np.ptp(noise))
    return torch.from_numpy(out), counts, min(gaps, default=spread) / spread


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("batch", "height", "width"), [(4, 12, 17), (3, 16, 16), (5, 9, 30), (2, 1, 40), (1, 8, 8)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_is_the_top_count_of_the_numpy_noise(per_sample, batch, height, width, seed):
    images = torch.rand(batch, 3, height, width)
    out, soft = seeded(FMix, seed, num_classes=batch, per_sample=per_sample)(images, torch.arange(batch))
    expected, counts, gap = expected_fmix(seed, batch, height, width, per_sample=per_sample)
    assert gap > 1e-5  # far from a float32 rounding tie: the float64 reference ranks like float32
    if batch == 1:  # its own partner: nothing visibly changes, the label is one-hot
        assert torch.equal(out, images) and torch.equal(soft, torch.ones(1, 1))
        return
    assert torch.equal(foreign_masks(out, images), expected)
    # λ is exactly count / (H * W): the label weight of the partner i - 1.
    lam = soft[torch.arange(batch), (torch.arange(batch) - 1) % batch].double()
    want = torch.tensor([counts[i if per_sample else 0] / (height * width) for i in range(batch)], dtype=torch.float64)
    torch.testing.assert_close(lam, want, rtol=0, atol=1e-7)


def test_per_sample_p_gating_replays_the_stream():
    images = torch.rand(9, 2, 10, 13)
    out, _ = seeded(FMix, 4, num_classes=9, per_sample=True, p=0.5)(images, torch.arange(9))
    expected, _, _ = expected_fmix(4, 9, 10, 13, per_sample=True, p=0.5)
    assert torch.equal(foreign_masks(out, images), expected)
    gated = ~expected.flatten(1).any(1)
    assert 0 < int(gated.sum()) < 9  # some samples gated: the replay follows the gating draws


def test_decay_power_changes_the_noise_and_is_honoured():
    images = torch.rand(3, 1, 14, 11)
    for decay in (1.0, 2.5, 6.0):
        out, _ = seeded(FMix, 8, num_classes=3, per_sample=True, decay_power=decay)(images, torch.arange(3))
        expected, _, gap = expected_fmix(8, 3, 14, 11, per_sample=True, decay_power=decay)
        assert gap > 1e-5
        assert torch.equal(foreign_masks(out, images), expected)


def test_per_sample_masks_differ_and_per_batch_masks_are_shared():
    images = torch.rand(6, 3, 32, 32)
    out, _ = seeded(FMix, 1, num_classes=6, per_sample=True)(images, torch.arange(6))
    pasted = foreign_masks(out, images)
    assert len({tuple(m.flatten().tolist()) for m in pasted}) == 6
    out, _ = seeded(FMix, 1, num_classes=6)(images, torch.arange(6))
    pasted = foreign_masks(out, images)
    assert all(torch.equal(m, pasted[0]) for m in pasted)


def test_low_frequency_masks_at_224_have_the_drawn_count_and_few_regions():
    """The paper's masks at full resolution: count exact, and δ = 3 gives a few large blobs, not speckle."""
    images = torch.rand(4, 1, 224, 224)
    out, soft = seeded(FMix, 3, num_classes=4, per_sample=True)(images, torch.arange(4))
    pasted = foreign_masks(out, images)
    counts = pasted.flatten(1).sum(1)
    lam = soft[torch.arange(4), (torch.arange(4) - 1) % 4]
    torch.testing.assert_close(lam.double(), counts.double() / 224**2, rtol=0, atol=1e-7)
    edges = (pasted[:, 1:] != pasted[:, :-1]).flatten(1).sum(1) + (pasted[:, :, 1:] != pasted[:, :, :-1]).flatten(
        1
    ).sum(1)
    assert (edges < 0.1 * 224 * 224).all()  # boundaries are lines, not a pixel noise


@pytest.mark.parametrize("dtype", mst.IMAGE_DTYPES)
def test_every_dtype_keeps_its_type_and_the_same_mask(dtype):
    base = torch.rand(4, 3, 12, 17)
    images = (base * 255).to(dtype) if dtype == torch.uint8 else base.to(dtype)
    out, _ = seeded(FMix, 5, num_classes=4, per_sample=True)(images, torch.arange(4))
    assert out.dtype == dtype
    expected, _, _ = expected_fmix(5, 4, 12, 17, per_sample=True)
    assert torch.equal(foreign_masks(out, images), expected)


def test_image_video_and_segmentation_mask_types_are_kept_and_mixed_alike():
    images = tv_tensors.Image(torch.rand(3, 3, 16, 20))
    video = tv_tensors.Video(torch.rand(3, 2, 3, 16, 20))
    seg = tv_tensors.Mask(torch.arange(3).repeat_interleave(320).reshape(3, 16, 20))
    out = seeded(FMix, 2, num_classes=3, per_sample=True)(
        {"image": images, "video": video, "mask": seg, "labels": torch.arange(3)}
    )
    assert type(out["image"]) is tv_tensors.Image and type(out["video"]) is tv_tensors.Video
    assert type(out["mask"]) is tv_tensors.Mask
    pasted = foreign_masks(out["image"], images)
    assert torch.equal(pasted, foreign_masks(out["video"][:, 0], video[:, 0]))
    assert torch.equal(out["mask"].as_subclass(torch.Tensor), torch.where(pasted, seg.roll(1, 0), seg))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"decay_power": 0}, "decay_power must be a finite number > 0"),
        ({"decay_power": -3.0}, "decay_power"),
        ({"decay_power": math.inf}, "decay_power"),
        ({"decay_power": math.nan}, "decay_power"),
        ({"alpha": 0.0}, "alpha must be"),
        ({"p": 1.5}, "p"),
    ],
)
def test_bad_parameters_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FMix(**kwargs)


# ---------------------------------------------------------------------------------------------
# The core: fourier_noise and top_count_masks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(8, 8), (7, 9), (1, 5), (6, 1), (1, 1), (2, 2), (33, 64)])
@pytest.mark.parametrize("blocks", ["one block", "blocks of 2 samples"])
@pytest.mark.parametrize("inplace", [False, True])
def test_fourier_noise_matches_numpy_irfftn(monkeypatch, height, width, blocks, inplace):
    if blocks != "one block":  # on the CPU the batch is transformed a block of samples at a time
        monkeypatch.setattr(build, "_NOISE_BLOCK", 2 * height * (width // 2 + 1))
    g = torch.Generator().manual_seed(height * 100 + width)
    spectra = masks.sample_fourier_spectra(7, height, width, generator=g)
    parts = torch.view_as_real(spectra).clone()
    want = numpy_noise(parts, height, width, 3.0) * (height * width)  # ours is unnormalised
    got = masks.fourier_noise(spectra.to(torch.complex128), height, width, inplace=inplace)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
    got32 = masks.fourier_noise(spectra, height, width, inplace=inplace)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_fourier_noise_does_not_modify_the_spectra():
    spectra = masks.sample_fourier_spectra(2, 6, 8, generator=torch.Generator().manual_seed(0))
    before = spectra.clone()
    masks.fourier_noise(spectra, 6, 8, decay_power=2.0)
    assert torch.equal(spectra, before)


def test_sample_fourier_spectra_are_standard_complex_normals_from_the_generator():
    spectra = masks.sample_fourier_spectra(2, 5, 6, generator=torch.Generator().manual_seed(3))
    parts = torch.randn(2, 5, 4, 2, generator=torch.Generator().manual_seed(3))
    assert spectra.dtype == torch.complex64 and torch.equal(torch.view_as_real(spectra), parts)


def test_sample_counts_rounds_t_times_total():
    counts = masks.sample_counts(5, 37, per_sample=True, generator=torch.Generator().manual_seed(1))
    t = torch.rand(5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert counts.tolist() == [round(float(v) * 37) for v in t]
    shared = masks.sample_counts(4, 37, generator=torch.Generator().manual_seed(1))
    assert shared.tolist() == [counts[0].item()] * 4


def reference_top_count(scores, counts):
    return torch.stack(
        [
            torch.from_numpy(top_count_by_sorting(s.double().numpy(), int(c))[0])
            for s, c in zip(scores, counts, strict=True)
        ]
    )


def special_scores(kind, batch, h, w, g):
    """Scores that stress the selection: ties, NaN and infinities, constant maps, skewed ranges."""
    x = torch.randn(batch, h, w, generator=g)
    if kind == "ties":
        return torch.randint(0, 4, (batch, h, w), generator=g).float()
    if kind == "specials":
        x[x > 1.0] = math.nan
        x[x < -1.3] = -math.inf
        x[:, 0, :3] = torch.tensor([-0.0, 0.0, -0.0])
        x[:, 1, 0] = math.inf
        return x
    if kind == "zeros":  # +0.0 and -0.0 tie: the lower index first, whatever the sign
        return torch.where(x > 0, 0.0, -0.0)
    if kind == "constant":  # a constant map, a map of one NaN among equals, a map all NaN
        x[0], x[1], x[2] = 2.5, 1.0, math.nan
        x[1, 3, 3] = math.nan
        return x
    if kind == "infinities":  # only ±inf and a few finite scores: no finite range to bin
        x = torch.where(x > 0, math.inf, -math.inf)
        x[:, :2] = 0.5
        return x
    if kind == "skewed":  # one far outlier per map: every other score lands in one bin
        x[:, 3, 5] = 1e6
        x[:, 4, 1] = -1e5
        return x
    if kind == "heavy_tail":  # most of the range held by a few scores
        return x.exp().pow(6)
    if kind == "huge":  # the range overflows float32
        return x * 1e38
    if kind == "tiny":  # subnormal scores
        return x * 1e-42
    raise AssertionError(kind)


SPECIAL_KINDS = ["ties", "specials", "zeros", "constant", "infinities", "skewed", "heavy_tail", "huge", "tiny"]


@pytest.mark.parametrize("size", [(5, 7), (70, 90), (80, 13), (33, 33)])  # sort; CPU bracket: grid, strided, odd
@pytest.mark.parametrize("kind", ["normal", "float64", "float16", "bfloat16", "int", *SPECIAL_KINDS])
def test_top_count_masks_is_python_sorting(size, kind):
    g = torch.Generator().manual_seed(7)
    h, w = size
    batch = 6
    if kind == "int":
        scores = torch.randint(-3, 3, (batch, h, w), generator=g)
    elif kind in SPECIAL_KINDS:
        scores = special_scores(kind, batch, h, w, g)
    else:
        dtype = {"normal": torch.float32, "float64": torch.float64, "float16": torch.float16}.get(kind, torch.bfloat16)
        scores = torch.randn(batch, h, w, generator=g).to(dtype)
    n = h * w
    counts = torch.tensor([0, n, 1, n - 1, n // 2, int(torch.randint(n, (1,), generator=g))])
    got = masks.top_count_masks(scores, counts)
    assert torch.equal(got, reference_top_count(scores, counts))
    assert got.flatten(1).sum(1).tolist() == counts.tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("kind", ["noise", "ties", "specials", "skewed"])
def test_top_count_bracket_equals_the_stable_sort_at_every_count(dtype, kind):
    """One map (FMix noise, heavy ties, NaN and infinities, an outlier) at every count 0 ... n."""
    g = torch.Generator().manual_seed(11)
    h, w = 36, 40
    if kind == "noise":
        one = masks.fourier_noise(masks.sample_fourier_spectra(1, h, w, generator=g), h, w)
    else:
        one = special_scores(kind, 1, h, w, g)
    n = h * w
    scores = one.to(dtype).expand(n + 1, h, w)
    counts = torch.arange(n + 1)
    order = torch.sort(scores.reshape(n + 1, n).double().neg(), dim=1, stable=True).indices
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(n).expand(n + 1, n))
    got = masks.top_count_masks(scores, counts)
    assert torch.equal(got.reshape(n + 1, n), ranks < counts[:, None])


def bracket_misses(scores, counts):
    """For each map, whether the first bracket and the wider retry miss its threshold."""
    flat = scores.reshape(scores.shape[0], -1)
    upper, lower = _kernels._brackets(flat, counts, scores.shape[-1])
    return [
        ((flat > upper[:, k, None]).sum(1) > counts) | ((flat >= lower[:, k, None]).sum(1) < counts) for k in (0, 1)
    ]


def test_top_count_bracket_retries_a_wider_bracket():
    """The sample (every 4th column of every 4th row) is a little high: the first bracket misses,
    the wider retry holds the threshold."""
    scores = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(0))
    scores[:, ::4, ::4] += 0.08
    counts = torch.tensor([1000, 2560, 4000])
    first, wide = bracket_misses(scores, counts)
    assert first.all() and not wide.any()
    got = masks.top_count_masks(scores, counts)
    assert torch.equal(got, reference_top_count(scores, counts))


def test_top_count_bracket_falls_back_when_the_sample_misleads():
    """The bracketing sample is low, the rest high: both brackets miss, the map is ordered whole."""
    scores = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(0)) + 10
    scores[:, ::4, ::4] -= 20
    scores[2, 5, 6] = math.nan  # a map ordered whole may hold NaN: it still ranks last
    counts = torch.tensor([2000, 4000, 5000])
    first, wide = bracket_misses(scores, counts)
    assert first.all() and wide.all()
    got = masks.top_count_masks(scores, counts)
    assert torch.equal(got, reference_top_count(scores, counts))


def test_top_count_bracket_mixes_paths_in_one_batch():
    """Maps that hit, retry and go whole, a constant one and one with NaN, in one call."""
    g = torch.Generator().manual_seed(2)
    scores = torch.rand(6, 64, 80, generator=g)
    scores[1, ::4, ::4] += 0.08  # retried
    scores[2] += 10
    scores[2, ::4, ::4] -= 20  # ordered whole
    scores[3] = 0.25  # constant
    scores[4, 10:20] = math.nan  # NaN, more than a count leaves
    scores[5, 0, 0] = math.inf
    counts = torch.tensor([1234, 2560, 5000, 77, 5100, 3000])
    first, wide = bracket_misses(scores, counts)
    assert first.tolist() == [False, True, True, False, True, False]
    assert wide.tolist() == [False, False, True, False, True, False]
    got = masks.top_count_masks(scores, counts)
    assert torch.equal(got, reference_top_count(scores, counts))


def test_top_count_bracket_is_deterministic_and_leaves_the_scores():
    g = torch.Generator().manual_seed(4)
    scores = masks.fourier_noise(masks.sample_fourier_spectra(5, 96, 64, generator=g), 96, 64)
    before = scores.clone()
    counts = masks.sample_counts(5, 96 * 64, per_sample=True, generator=g)
    first = masks.top_count_masks(scores, counts)
    assert torch.equal(scores, before)
    assert all(torch.equal(first, masks.top_count_masks(scores, counts)) for _ in range(3))
    assert torch.equal(first, reference_top_count(scores, counts))


def test_top_count_masks_on_meta_and_bad_arguments():
    got = masks.top_count_masks(torch.empty(2, 64, 80, device="meta"), torch.tensor([3, 4]))
    assert got.device.type == "meta" and got.dtype == torch.bool
    with pytest.raises(ValueError, match=r"counts must be in \[0, 6\]"):
        masks.top_count_masks(torch.rand(2, 2, 3), torch.tensor([1, 7]))
    with pytest.raises(ValueError, match="counts must be an int"):
        masks.top_count_masks(torch.rand(2, 2, 3), 7)
    with pytest.raises(TypeError, match="real numbers"):
        masks.top_count_masks(torch.ones(2, 2, 3, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match=r"shape \(B, H, W\)"):
        masks.top_count_masks(torch.rand(6), 1)
    with pytest.raises(ValueError, match="decay_power"):
        masks.fourier_noise(masks.sample_fourier_spectra(1, 4, 4), 4, 4, decay_power=0.0)
    with pytest.raises(ValueError, match=r"\(B, 4, 3\)"):
        masks.fourier_noise(torch.zeros(1, 4, 4, dtype=torch.complex64), 4, 4)
