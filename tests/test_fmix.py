"""FMix: masks recomputed from the same random draws with NumPy's FFT and Python's sort."""

import math
import pickle

import numpy as np
import pytest
import torch
from helpers import foreign_masks, image_sides
from hypothesis import given
from hypothesis import strategies as st
from torchvision import tv_tensors

from torchvision_mix import FMix, masks
from torchvision_mix.testing import check_mix_transform
from torchvision_mix.testing import strategies as mst


def make(seed=0, **kwargs):
    return FMix(generator=torch.Generator().manual_seed(seed), **kwargs)


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
    out, soft = make(seed, num_classes=batch, per_sample=per_sample)(images, torch.arange(batch))
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
    out, soft = make(4, num_classes=9, per_sample=True, p=0.5)(images, torch.arange(9))
    expected, _, _ = expected_fmix(4, 9, 10, 13, per_sample=True, p=0.5)
    assert torch.equal(foreign_masks(out, images), expected)
    gated = ~expected.flatten(1).any(1)
    assert 0 < int(gated.sum()) < 9  # some samples were left alone: their labels stay one-hot
    assert torch.equal(soft[gated], torch.eye(9)[gated])


def test_decay_power_changes_the_noise_and_is_honoured():
    images = torch.rand(3, 1, 14, 11)
    for decay in (1.0, 2.5, 6.0):
        out, _ = make(8, num_classes=3, per_sample=True, decay_power=decay)(images, torch.arange(3))
        expected, _, gap = expected_fmix(8, 3, 14, 11, per_sample=True, decay_power=decay)
        assert gap > 1e-5
        assert torch.equal(foreign_masks(out, images), expected)


def test_per_sample_masks_differ_and_per_batch_masks_are_shared():
    images = torch.rand(6, 3, 32, 32)
    out, _ = make(1, num_classes=6, per_sample=True)(images, torch.arange(6))
    pasted = foreign_masks(out, images)
    assert len({tuple(m.flatten().tolist()) for m in pasted}) == 6
    out, _ = make(1, num_classes=6)(images, torch.arange(6))
    pasted = foreign_masks(out, images)
    assert all(torch.equal(m, pasted[0]) for m in pasted)


def test_low_frequency_masks_at_224_have_the_drawn_count_and_few_regions():
    """The paper's masks at full resolution: count exact, and δ = 3 gives a few large blobs, not speckle."""
    images = torch.rand(4, 1, 224, 224)
    out, soft = make(3, num_classes=4, per_sample=True)(images, torch.arange(4))
    pasted = foreign_masks(out, images)
    counts = pasted.flatten(1).sum(1)
    lam = soft[torch.arange(4), (torch.arange(4) - 1) % 4]
    torch.testing.assert_close(lam.double(), counts.double() / 224**2, rtol=0, atol=1e-7)
    edges = (pasted[:, 1:] != pasted[:, :-1]).flatten(1).sum(1) + (pasted[:, :, 1:] != pasted[:, :, :-1]).flatten(
        1
    ).sum(1)
    assert (edges < 0.1 * 224 * 224).all()  # boundaries are lines, not a pixel noise


@given(
    mst.mix_inputs(images=mst.image_batches(**image_sides(1, 24))),
    st.booleans(),
    st.booleans(),
    mst.seeds(),
    st.sampled_from([0.3, 1.0, 4.0]),
)
def test_fmix_invariants(inputs, per_sample, inplace, seed, alpha):
    images, labels, k = inputs.images, inputs.labels, inputs.num_classes
    mix = make(seed, num_classes=k, per_sample=per_sample, inplace=inplace, alpha=alpha)
    report = check_mix_transform(mix, images, labels, num_classes=k, inplace=inplace)
    b = images.shape[0]
    for i in range(b):
        assert report.partners[i] in (-1, (i - 1) % b)


@pytest.mark.parametrize("dtype", mst.IMAGE_DTYPES)
def test_every_dtype_keeps_its_type_and_the_same_mask(dtype):
    base = torch.rand(4, 3, 12, 17)
    images = (base * 255).to(dtype) if dtype == torch.uint8 else base.to(dtype)
    out, _ = make(5, num_classes=4, per_sample=True)(images, torch.arange(4))
    assert out.dtype == dtype
    expected, _, _ = expected_fmix(5, 4, 12, 17, per_sample=True)
    assert torch.equal(foreign_masks(out, images), expected)


def test_image_video_and_segmentation_mask_types_are_kept_and_mixed_alike():
    images = tv_tensors.Image(torch.rand(3, 3, 16, 20))
    video = tv_tensors.Video(torch.rand(3, 2, 3, 16, 20))
    seg = tv_tensors.Mask(torch.arange(3).repeat_interleave(320).reshape(3, 16, 20))
    out = make(2, num_classes=3, per_sample=True)(
        {"image": images, "video": video, "mask": seg, "labels": torch.arange(3)}
    )
    assert type(out["image"]) is tv_tensors.Image and type(out["video"]) is tv_tensors.Video
    assert type(out["mask"]) is tv_tensors.Mask
    pasted = foreign_masks(out["image"], images)
    assert torch.equal(pasted, foreign_masks(out["video"][:, 0], video[:, 0]))
    assert torch.equal(out["mask"].as_subclass(torch.Tensor), torch.where(pasted, seg.roll(1, 0), seg))


@pytest.mark.parametrize("per_sample", [False, True])
def test_inplace_writes_the_same_result_into_the_input(per_sample):
    images = torch.rand(5, 3, 15, 15)
    new, new_soft = make(6, num_classes=5, per_sample=per_sample)(images, torch.arange(5))
    out, soft = make(6, num_classes=5, per_sample=per_sample, inplace=True)(images, torch.arange(5))
    assert out is images and torch.equal(images, new) and torch.equal(soft, new_soft)


@pytest.mark.parametrize("batch", [0, 1, 3, 7])
def test_odd_and_tiny_batches(batch):
    for per_sample in (False, True):
        out, soft = make(num_classes=2, per_sample=per_sample)(
            torch.rand(batch, 3, 9, 9), torch.zeros(batch, dtype=torch.int64)
        )
        assert out.shape == (batch, 3, 9, 9) and soft.shape == (batch, 2)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_no_host_sync_on_the_mixing_path(per_sample, inplace):
    """On the meta device any .item()/.tolist()/.cpu() of a device tensor would raise: the inverse FFT
    and the exact selection (a stable sort off the CPU) run there without reading a value."""
    images = torch.empty(4, 3, 32, 32, device="meta")
    labels = torch.empty(4, dtype=torch.int64, device="meta")
    out, soft = make(num_classes=3, per_sample=per_sample, inplace=inplace, p=0.7)(images, labels)
    assert out.device.type == "meta" and soft.device.type == "meta" and soft.shape == (4, 3)


def test_pickle_and_repr():
    mix = make(5, alpha=0.5, decay_power=2.0, num_classes=3, per_sample=True)
    clone = pickle.loads(pickle.dumps(mix))
    images = torch.rand(3, 3, 16, 16)
    a, b = mix(images, torch.arange(3)), clone(images, torch.arange(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert "decay_power=2.0" in repr(mix) and repr(mix).startswith("FMix(")


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
def test_fourier_noise_matches_numpy_irfftn(height, width):
    g = torch.Generator().manual_seed(height * 100 + width)
    spectra = masks.sample_fourier_spectra(3, height, width, generator=g)
    parts = torch.view_as_real(spectra)
    want = numpy_noise(parts, height, width, 3.0) * (height * width)  # ours is unnormalised
    got = masks.fourier_noise(spectra.to(torch.complex128), height, width)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
    got32 = masks.fourier_noise(spectra, height, width)
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


@pytest.mark.parametrize("size", [(5, 7), (70, 90)])  # the sort path and the CPU bracket path
@pytest.mark.parametrize("kind", ["normal", "ties", "specials", "float64", "float16", "int"])
def test_top_count_masks_is_python_sorting(size, kind):
    g = torch.Generator().manual_seed(7)
    h, w = size
    batch = 6
    if kind == "ties":
        scores = torch.randint(0, 4, (batch, h, w), generator=g).float()
    elif kind == "specials":
        scores = torch.randn(batch, h, w, generator=g)
        scores[scores > 1.0] = math.nan
        scores[scores < -1.3] = -math.inf
        scores[:, 0, :3] = torch.tensor([-0.0, 0.0, -0.0])
        scores[:, 1, 0] = math.inf
    elif kind == "int":
        scores = torch.randint(-3, 3, (batch, h, w), generator=g)
    else:
        dtype = {"normal": torch.float32, "float64": torch.float64, "float16": torch.float16}[kind]
        scores = torch.randn(batch, h, w, generator=g).to(dtype)
    n = h * w
    counts = torch.tensor([0, n, 1, n - 1, n // 2, int(torch.randint(n, (1,), generator=g))])
    got = masks.top_count_masks(scores, counts)
    assert torch.equal(got, reference_top_count(scores, counts))
    assert got.flatten(1).sum(1).tolist() == counts.tolist()


def test_top_count_bracket_falls_back_when_the_sample_misleads():
    """The bracketing sample (every 4th column of every 4th row) is low, the rest high: the bracket
    misses, the map is ordered whole."""
    scores = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(0)) + 10
    scores[:, ::4, ::4] -= 20
    counts = torch.tensor([100, 4000, 5000])
    got = masks.top_count_masks(scores, counts)
    assert torch.equal(got, reference_top_count(scores, counts))


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
