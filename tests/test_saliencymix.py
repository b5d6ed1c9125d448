"""SaliencyMix: planted saliency peaks make the expected boxes known; the default saliency is checked
against a literal spectral-residual implementation."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import foreign_masks, image_sides, is_one_rectangle
from hypothesis import given
from hypothesis import strategies as st
from torchvision import tv_tensors

import torchvision_mix._core.build as build
from torchvision_mix import SaliencyMix, masks
from torchvision_mix.testing import check_mix_transform
from torchvision_mix.testing import strategies as mst


class Planted:
    """A saliency callable returning planted maps, recording what it was given."""

    def __init__(self, maps):
        self.maps = maps
        self.calls = []

    def __call__(self, x):
        self.calls.append({"shape": tuple(x.shape), "dtype": x.dtype, "max": float(x.max()), "grad": x.requires_grad})
        return self.maps.to(x.device)


def peak_maps(peaks, h, w):
    maps = torch.zeros(len(peaks), h, w)
    for i, (r, c) in enumerate(peaks):
        maps[i, r, c] = 1.0
    return maps


def expected_boxes(seed, batch, height, width, centres, *, per_sample, p=1.0):
    """Replay the stream (p draws, then t ~ U(0, 1)) and build each box by loops around the donor's centre."""
    g = torch.Generator().manual_seed(seed)
    applied = [True] * batch
    if per_sample and p < 1.0:
        applied = (torch.rand(batch, generator=g) < p).tolist()
    n = batch if per_sample else 1
    t = torch.rand(n, dtype=torch.float64, generator=g).tolist()
    out = torch.zeros(batch, height, width, dtype=torch.bool)
    for i in range(batch):
        side = math.sqrt(t[i if per_sample else 0])
        bh, bw = math.floor(side * height), math.floor(side * width)
        cy, cx = centres[(i - 1) % batch]  # the donor's peak
        y1, x1 = cy - bh // 2, cx - bw // 2
        for y in range(max(0, y1), min(height, y1 + bh)):
            for x in range(max(0, x1), min(width, x1 + bw)):
                out[i, y, x] = applied[i]
    return out


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_box_is_centred_on_the_donors_planted_peak(per_sample, seed):
    height, width = 40, 52
    peaks = [(3, 5), (20, 40), (39, 0), (11, 26), (0, 51)]  # full-resolution maps: the peak is the pixel
    saliency = Planted(peak_maps(peaks, height, width))
    images = torch.rand(5, 3, height, width)
    out, soft = SaliencyMix(
        saliency=saliency, num_classes=5, per_sample=per_sample, generator=torch.Generator().manual_seed(seed)
    )(images, torch.arange(5))
    expected = expected_boxes(seed, 5, height, width, peaks, per_sample=per_sample)
    pasted = foreign_masks(out, images)
    assert torch.equal(pasted, expected)
    assert len(saliency.calls) == 1 and saliency.calls[0]["shape"] == (5, 3, height, width)  # once per batch
    lam = soft[torch.arange(5), (torch.arange(5) - 1) % 5].double()
    torch.testing.assert_close(lam, expected.flatten(1).double().mean(1), rtol=0, atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1])
def test_low_resolution_maps_map_their_cell_to_its_centre_pixel(seed):
    """A (4, 5) map over a 40 x 50 image: cell (r, c) is the 10 x 10 block whose centre pixel is (10r + 5, 10c + 5)."""
    peaks = [(0, 0), (3, 4), (1, 2)]
    images = torch.rand(3, 1, 40, 50)
    mix = SaliencyMix(
        saliency=Planted(peak_maps(peaks, 4, 5)), num_classes=3, generator=torch.Generator().manual_seed(seed)
    )
    out, _ = mix(images, torch.arange(3))
    expected = expected_boxes(seed, 3, 40, 50, [(10 * r + 5, 10 * c + 5) for r, c in peaks], per_sample=False)
    assert torch.equal(foreign_masks(out, images), expected)
    # unequal cells: (7, 3) over 61 x 20 maps cell (r, c) to ((2r + 1) * 61 // 14, (2c + 1) * 20 // 6)
    maps = torch.zeros(1, 7, 3)
    maps[0, 6, 1] = 1.0
    assert masks.saliency_peaks(maps, 61, 20).tolist() == [[56, 10]]


def test_ties_pick_the_first_maximum_in_row_major_order():
    maps = torch.zeros(2, 6, 6)
    maps[:, 4, 1] = maps[:, 2, 5] = maps[:, 5, 0] = 1.0  # (2, 5) comes first in row-major order
    maps[1, 0, 0] = math.nan  # NaN never wins
    assert masks.saliency_peaks(maps, 6, 6).tolist() == [[2, 5], [2, 5]]


def test_per_batch_draws_one_area_and_per_sample_one_per_sample():
    peaks = [(20, 20)] * 6  # every donor peaks at the centre: only the sizes differ
    images = torch.rand(6, 1, 40, 40)
    sizes = set()
    for per_sample in (False, True):
        mix = SaliencyMix(
            saliency=Planted(peak_maps(peaks, 40, 40)),
            num_classes=6,
            per_sample=per_sample,
            generator=torch.Generator().manual_seed(3),
        )
        pasted = foreign_masks(mix(images, torch.arange(6))[0], images)
        sizes = {int(m.sum()) for m in pasted}
        assert all(is_one_rectangle(m) for m in pasted)
        assert len(sizes) == (6 if per_sample else 1)


def test_per_sample_p_gating_replays_the_stream():
    peaks = [(5, 5), (30, 8), (17, 33), (2, 38), (25, 25), (10, 20), (38, 1)]
    images = torch.rand(7, 3, 40, 40)
    mix = SaliencyMix(
        saliency=Planted(peak_maps(peaks, 40, 40)),
        num_classes=7,
        per_sample=True,
        p=0.5,
        generator=torch.Generator().manual_seed(5),
    )
    out, _ = mix(images, torch.arange(7))
    expected = expected_boxes(5, 7, 40, 40, peaks, per_sample=True, p=0.5)
    assert torch.equal(foreign_masks(out, images), expected)
    gated = ~expected.flatten(1).any(1)
    assert 0 < int(gated.sum()) < 7  # some samples gated: the replay follows the gating draws


def literal_spectral_residual(x, width=64, sigma=8.0):
    """Hou & Zhang step by step, with torch's own building blocks and a loop-built blur (log amplitude
    floored at 2 ** -20 of the largest, as documented)."""
    w = min(width, x.shape[-1])
    h = max(1, round(x.shape[-2] * w / x.shape[-1]))
    s = F.interpolate(x, size=(h, w), mode="area")
    if x.shape[1] == 3:
        grey = (s * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype)[:, None, None]).sum(1)
    else:
        grey = s.mean(1)
    spectrum = torch.fft.fft2(grey)
    amplitude = spectrum.abs()
    log_amplitude = torch.maximum(amplitude, amplitude.amax((1, 2), keepdim=True) * 2.0**-20).log()
    local_mean = F.avg_pool2d(F.pad(log_amplitude[:, None], (1, 1, 1, 1), mode="circular"), 3, stride=1)[:, 0]
    residual = log_amplitude - local_mean
    saliency = torch.fft.ifft2(torch.polar(residual.exp(), spectrum.angle())).abs() ** 2
    sg = sigma * w / 64
    r = max(1, math.ceil(3 * sg))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sg) ** 2)
    out = torch.zeros_like(saliency)
    norm = torch.zeros_like(saliency)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ys, yd = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
            xs, xd = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
            out[:, yd, xd] += k[dy + r] * k[dx + r] * saliency[:, ys, xs]
            norm[:, yd, xd] += k[dy + r] * k[dx + r]
    return out / norm


@pytest.mark.parametrize("shape", [(3, 3, 90, 130), (2, 3, 64, 64), (2, 1, 33, 17), (2, 3, 7, 300), (1, 4, 65, 129)])
def test_default_saliency_is_the_spectral_residual(shape):
    x = torch.rand(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[..., 2:6, 3:11] += 1.0
    got = masks.spectral_residual_saliency(x)
    want = literal_spectral_residual(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12 * float(want.abs().max()))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32])
@pytest.mark.parametrize("channels", [3, 1, 4])
def test_default_saliency_of_a_batch_in_many_blocks(monkeypatch, dtype, channels):
    """Batches are made grey and resized a block at a time (here blocks of 150,000 pixels: 1 or 2 samples of
    C x 200 x 260): every map is the literal steps' map of its own image, computed in float64."""
    monkeypatch.setattr(build, "_RESIZE_BLOCK", 150_000)
    g = torch.Generator().manual_seed(channels)
    x = torch.rand(11, channels, 200, 260, generator=g)
    x[:, :, 20:40, 30:50] += torch.rand(11, 1, 1, 1, generator=g)
    x = (x * 100).to(dtype)
    got = masks.spectral_residual_saliency(x)
    want = literal_spectral_residual(x.double())
    assert got.shape == want.shape == (11, 49, 64) and got.dtype == torch.float32
    for i in range(11):
        torch.testing.assert_close(got[i].double(), want[i], rtol=0, atol=2e-4 * float(want[i].abs().max()))


def textured_images_with_a_bright_square(seed, batch=4, height=96, width=128):
    """Smooth 1/f-like texture plus faint noise, with one bright 10 x 10 square per image at a random place."""
    g = torch.Generator().manual_seed(seed)
    spectra = masks.sample_fourier_spectra(batch, height, width, generator=g)
    bg = masks.fourier_noise(spectra, height, width, decay_power=2.0)
    low, high = bg.amin((1, 2), keepdim=True), bg.amax((1, 2), keepdim=True)
    bg = 0.3 + 0.2 * (bg - low) / (high - low) + 0.05 * torch.rand(batch, height, width, generator=g)
    images = bg[:, None].expand(batch, 3, height, width).clone()
    squares = []
    for i in range(batch):
        y, x = int(torch.randint(height - 12, (1,), generator=g)), int(torch.randint(width - 12, (1,), generator=g))
        images[i, :, y : y + 10, x : x + 10] = 1.0
        squares.append((y, x))
    return images, squares


def test_default_saliency_finds_the_odd_object_per_sample():
    """A sanity check of the method, not of exactness: on a smooth texture the spectral residual's peak
    falls on (or next to) the one bright square far more often than chance (26 x 26 of 96 x 128: 6 %)."""
    hits = total = 0
    for seed in range(20):
        images, squares = textured_images_with_a_bright_square(seed)
        peaks = masks.saliency_peaks(masks.spectral_residual_saliency(images), 96, 128)
        for (py, px), (y, x) in zip(peaks.tolist(), squares, strict=True):
            hits += y - 8 <= py < y + 18 and x - 8 <= px < x + 18
            total += 1
    assert hits / total > 0.75


@pytest.mark.parametrize("per_sample", [False, True])
def test_default_saliency_centres_each_box_on_its_donors_peak(per_sample):
    images, _ = textured_images_with_a_bright_square(0, batch=5)
    peaks = masks.saliency_peaks(literal_spectral_residual(images.double()), 96, 128).tolist()
    out, _ = SaliencyMix(num_classes=5, per_sample=per_sample, generator=torch.Generator().manual_seed(2))(
        images, torch.arange(5)
    )
    expected = expected_boxes(2, 5, 96, 128, peaks, per_sample=per_sample)
    assert torch.equal(foreign_masks(out, images), expected)


@given(mst.mix_inputs(images=mst.image_batches(**image_sides(1, 24))), st.booleans(), st.booleans(), mst.seeds())
def test_saliencymix_invariants(inputs, per_sample, inplace, seed):
    images, labels, k = inputs.images, inputs.labels, inputs.num_classes
    mix = SaliencyMix(
        num_classes=k, per_sample=per_sample, inplace=inplace, generator=torch.Generator().manual_seed(seed)
    )
    before = images.clone()
    report = check_mix_transform(mix, images, labels, num_classes=k, inplace=inplace)
    b = images.shape[0]
    foreign = foreign_masks(report.images, before)
    for i in range(b):
        assert report.partners[i] in (-1, (i - 1) % b)
        assert is_one_rectangle(foreign[i])


@pytest.mark.parametrize("dtype", mst.IMAGE_DTYPES)
def test_every_dtype_and_integer_batches_reach_the_saliency_as_float_in_0_1(dtype):
    saliency = Planted(peak_maps([(1, 1), (6, 6), (3, 4)], 8, 8))
    images = (
        torch.full((3, 3, 8, 8), 255, dtype=torch.uint8) if dtype == torch.uint8 else torch.rand(3, 3, 8, 8).to(dtype)
    )
    out, _ = SaliencyMix(saliency=saliency, num_classes=3)(images, torch.arange(3))
    assert out.dtype == dtype
    call = saliency.calls[0]
    if dtype == torch.uint8:
        assert call["dtype"] == torch.float32 and call["max"] == 1.0
    else:
        assert call["dtype"] == dtype


def test_video_uses_the_middle_frame_and_masks_follow():
    saliency = Planted(peak_maps([(1, 1), (6, 6), (3, 4)], 8, 8))
    video = tv_tensors.Video(torch.rand(3, 5, 3, 8, 8))
    seg = tv_tensors.Mask(torch.arange(3).repeat_interleave(64).reshape(3, 8, 8))
    out_video, out_seg, _ = SaliencyMix(saliency=saliency, num_classes=3, per_sample=True)(video, seg, torch.arange(3))
    assert type(out_video) is tv_tensors.Video and type(out_seg) is tv_tensors.Mask
    assert saliency.calls[0]["shape"] == (3, 3, 8, 8)
    diff = (out_video.as_subclass(torch.Tensor) != video.as_subclass(torch.Tensor)).any(2)
    assert all(torch.equal(diff[:, t], diff[:, 0]) for t in range(5))
    assert torch.equal(out_seg.as_subclass(torch.Tensor), torch.where(diff[:, 0], seg.roll(1, 0), seg))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": 0.0}, ValueError, "alpha must be"),
        ({"alpha": math.inf}, ValueError, "alpha must be"),
        ({"saliency": 3}, TypeError, "saliency must be a callable"),
        ({"saliency_width": 0}, ValueError, "saliency_width must be an int >= 1"),
        ({"saliency_width": 1.5}, ValueError, "saliency_width"),
    ],
)
def test_bad_parameters_are_refused_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        SaliencyMix(**kwargs)


@pytest.mark.parametrize(
    ("maps", "error", "match"),
    [
        (torch.rand(2, 7, 7), ValueError, r"maps \(B, h, w\) with B=3, but returned shape \(2, 7, 7\)"),
        (torch.rand(3, 1, 7, 7), ValueError, "with B=3"),
        (torch.ones(3, 7, 7, dtype=torch.bool), TypeError, "real maps"),
        ([1.0], TypeError, "must return a tensor"),
    ],
)
def test_bad_saliency_output_changes_nothing(maps, error, match):
    images = torch.rand(3, 3, 14, 14)
    before = images.clone()
    with pytest.raises(error, match=match):
        SaliencyMix(saliency=lambda x: maps, num_classes=3, inplace=True)(images, torch.arange(3))
    assert torch.equal(images, before)


def test_masks_alone_are_refused():
    seg = tv_tensors.Mask(torch.zeros(2, 8, 8, dtype=torch.int64))
    with pytest.raises(TypeError, match="needs images"):
        SaliencyMix()(seg)


def test_core_helpers():
    boxes = masks.centered_boxes(torch.tensor([[0, 5], [9, 9]]), torch.tensor([[4, 4], [3, 5]]), 10, 10)
    assert boxes.tolist() == [[3, 0, 7, 2], [7, 8, 10, 10]]
    sizes = masks.sample_box_sizes(3, 30, 50, per_sample=True, generator=torch.Generator().manual_seed(0))
    t = torch.rand(3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert sizes.tolist() == [[math.floor(math.sqrt(v) * 30), math.floor(math.sqrt(v) * 50)] for v in t.tolist()]
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        masks.centered_boxes(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 2, dtype=torch.int64), 4, 4)
    with pytest.raises(TypeError, match="integer pixels"):
        masks.centered_boxes(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.int64), 4, 4)
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        masks.spectral_residual_saliency(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="sigma"):
        masks.spectral_residual_saliency(torch.rand(1, 3, 8, 8), sigma=0.0)
