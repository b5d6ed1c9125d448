"""GridMix: grids replayed from the generator stream and painted cell by cell in plain loops."""

import math
import pickle

import pytest
import torch
from helpers import foreign_masks, image_sides
from hypothesis import given
from hypothesis import strategies as st
from torchvision import tv_tensors

from torchvision_mix import GridMix, masks
from torchvision_mix.testing import check_mix_transform
from torchvision_mix.testing import strategies as mst


def make(seed=0, **kwargs):
    return GridMix(generator=torch.Generator().manual_seed(seed), **kwargs)


def paint(cells, g, height, width):
    """An (H, W) mask from a g x g cell pattern: cell (a, b) covers rows ceil(a H / g) .. ceil((a + 1) H / g)."""
    out = torch.zeros(height, width, dtype=torch.bool)
    for a in range(g):
        for b in range(g):
            if cells[a][b]:
                y1, y2 = math.ceil(a * height / g), math.ceil((a + 1) * height / g)
                x1, x2 = math.ceil(b * width / g), math.ceil((b + 1) * width / g)
                for y in range(y1, y2):
                    for x in range(x1, x2):
                        out[y, x] = True
    return out


def expected_grids(seed, batch, height, width, *, grid_size=(2, 7), cell_p=None, per_sample, p=1.0):
    """Replay the stream (p draws, sizes, t ~ U(0, 1) unless cell_p, one uniform per cell) and paint."""
    g = torch.Generator().manual_seed(seed)
    applied = [True] * batch
    if per_sample and p < 1.0:
        applied = (torch.rand(batch, generator=g) < p).tolist()
    low, high = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    n = batch if per_sample else 1
    sizes = torch.randint(low, high + 1, (n,), generator=g).tolist()
    t = [cell_p] * n if cell_p is not None else torch.rand(n, dtype=torch.float64, generator=g).tolist()
    u = torch.rand(n, high, high, dtype=torch.float64, generator=g).tolist()
    out = torch.zeros(batch, height, width, dtype=torch.bool)
    grids = []
    for i in range(batch):
        k = i if per_sample else 0
        cells = [[u[k][a][b] < t[k] for b in range(sizes[k])] for a in range(sizes[k])]
        grids.append((sizes[k], cells))
        if applied[i]:
            out[i] = paint(cells, sizes[k], height, width)
    return out, grids


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("height", "width"), [(28, 28), (61, 61), (30, 47), (7, 300), (100, 75)])
@pytest.mark.parametrize("seed", [0, 1])
def test_mask_is_the_replayed_grid_painted_cell_by_cell(per_sample, height, width, seed):
    images = torch.rand(6, 3, height, width)
    out, soft = make(seed, num_classes=6, per_sample=per_sample)(images, torch.arange(6))
    expected, _ = expected_grids(seed, 6, height, width, per_sample=per_sample)
    assert torch.equal(foreign_masks(out, images), expected)
    lam = soft[torch.arange(6), (torch.arange(6) - 1) % 6].double()
    torch.testing.assert_close(lam, expected.flatten(1).double().mean(1), rtol=0, atol=1e-7)


def test_fixed_grid_size_and_cell_p():
    images = torch.rand(5, 1, 30, 40)
    for cell_p in (0.0, 0.3, 1.0):
        out, _ = make(3, num_classes=5, per_sample=True, grid_size=5, cell_p=cell_p)(images, torch.arange(5))
        expected, grids = expected_grids(3, 5, 30, 40, grid_size=5, cell_p=cell_p, per_sample=True)
        assert torch.equal(foreign_masks(out, images), expected)
        assert all(g == 5 for g, _ in grids)
        if cell_p == 0.0:
            assert not expected.any()
        if cell_p == 1.0:
            assert expected.all()


def test_lambda_is_the_pixel_fraction_not_the_cell_fraction():
    """Unequal cells (61 = 9 + 9 + 9 + 8 + 9 + 9 + 8 for g = 7): the label weight counts pixels."""
    images = torch.rand(4, 1, 61, 61)
    out, soft = make(0, num_classes=4, per_sample=True, grid_size=7, cell_p=0.5)(images, torch.arange(4))
    pasted = foreign_masks(out, images)
    lam = soft[torch.arange(4), (torch.arange(4) - 1) % 4].double()
    torch.testing.assert_close(lam, pasted.flatten(1).double().mean(1), rtol=0, atol=1e-7)
    _, grids = expected_grids(0, 4, 61, 61, grid_size=7, cell_p=0.5, per_sample=True)
    cell_fraction = torch.tensor([sum(map(sum, cells)) / 49 for _, cells in grids], dtype=torch.float64)
    assert not torch.allclose(lam, cell_fraction, atol=1e-4)


def test_per_sample_grids_differ_and_per_batch_grids_are_shared():
    images = torch.rand(8, 1, 42, 42)
    out, _ = make(1, num_classes=8, per_sample=True)(images, torch.arange(8))
    _, grids = expected_grids(1, 8, 42, 42, per_sample=True)
    assert len({g for g, _ in grids}) > 1  # several grid sizes in one batch
    pasted = foreign_masks(out, images)
    assert len({tuple(m.flatten().tolist()) for m in pasted}) == 8
    out, _ = make(1, num_classes=8)(images, torch.arange(8))
    pasted = foreign_masks(out, images)
    assert all(torch.equal(m, pasted[0]) for m in pasted)


def test_per_sample_p_gating_replays_the_stream():
    images = torch.rand(9, 2, 21, 22)
    out, soft = make(4, num_classes=9, per_sample=True, p=0.5)(images, torch.arange(9))
    expected, _ = expected_grids(4, 9, 21, 22, per_sample=True, p=0.5)
    assert torch.equal(foreign_masks(out, images), expected)
    gated = ~expected.flatten(1).any(1)
    assert 0 < int(gated.sum()) < 9 and torch.equal(soft[gated], torch.eye(9)[gated])


@given(mst.mix_inputs(images=mst.image_batches(**image_sides(7, 24))), st.booleans(), st.booleans(), mst.seeds())
def test_gridmix_invariants(inputs, per_sample, inplace, seed):
    images, labels, k = inputs.images, inputs.labels, inputs.num_classes
    mix = make(seed, num_classes=k, per_sample=per_sample, inplace=inplace)
    report = check_mix_transform(mix, images, labels, num_classes=k, inplace=inplace)
    b = images.shape[0]
    for i in range(b):
        assert report.partners[i] in (-1, (i - 1) % b)


@pytest.mark.parametrize("dtype", mst.IMAGE_DTYPES)
def test_every_dtype_keeps_its_type_and_the_same_mask(dtype):
    base = torch.rand(4, 3, 14, 15)
    images = (base * 255).to(dtype) if dtype == torch.uint8 else base.to(dtype)
    out, _ = make(5, num_classes=4, per_sample=True)(images, torch.arange(4))
    assert out.dtype == dtype
    expected, _ = expected_grids(5, 4, 14, 15, per_sample=True)
    assert torch.equal(foreign_masks(out, images), expected)


def test_image_video_and_segmentation_mask_types_are_kept_and_mixed_alike():
    images = tv_tensors.Image(torch.rand(3, 3, 16, 20))
    video = tv_tensors.Video(torch.rand(3, 2, 3, 16, 20))
    seg = tv_tensors.Mask(torch.arange(3).repeat_interleave(320).reshape(3, 1, 16, 20))
    out = make(2, num_classes=3, per_sample=True)(
        {"image": images, "video": video, "mask": seg, "labels": torch.arange(3)}
    )
    assert type(out["image"]) is tv_tensors.Image and type(out["video"]) is tv_tensors.Video
    assert type(out["mask"]) is tv_tensors.Mask and out["mask"].shape == (3, 1, 16, 20)
    pasted = foreign_masks(out["image"], images)
    assert torch.equal(pasted, foreign_masks(out["video"][:, 1], video[:, 1]))
    assert torch.equal(
        out["mask"][:, 0].as_subclass(torch.Tensor), torch.where(pasted, seg[:, 0].roll(1, 0), seg[:, 0])
    )


def test_masks_alone_are_mixed():
    seg = tv_tensors.Mask(torch.arange(4).repeat_interleave(64).reshape(4, 8, 8))
    out = make(1, per_sample=True)(seg)
    expected, _ = expected_grids(1, 4, 8, 8, per_sample=True)
    assert torch.equal(out.as_subclass(torch.Tensor), torch.where(expected, seg.roll(1, 0), seg))


@pytest.mark.parametrize("per_sample", [False, True])
def test_inplace_writes_the_same_result_into_the_input(per_sample):
    images = torch.rand(5, 3, 15, 15)
    new, new_soft = make(6, num_classes=5, per_sample=per_sample)(images, torch.arange(5))
    out, soft = make(6, num_classes=5, per_sample=per_sample, inplace=True)(images, torch.arange(5))
    assert out is images and torch.equal(images, new) and torch.equal(soft, new_soft)


@pytest.mark.parametrize("batch", [0, 1, 3, 7])
def test_odd_and_tiny_batches(batch):
    for per_sample in (False, True):
        images = torch.rand(batch, 3, 9, 9)
        out, soft = make(num_classes=2, per_sample=per_sample)(images, torch.zeros(batch, dtype=torch.int64))
        assert out.shape == images.shape and soft.shape == (batch, 2)
        if batch == 1:
            assert torch.equal(out, images)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_no_host_sync_on_the_mixing_path(per_sample, inplace):
    """On the meta device any .item()/.tolist()/.cpu() of a device tensor would raise."""
    images = torch.empty(4, 3, 32, 32, device="meta")
    labels = torch.empty(4, dtype=torch.int64, device="meta")
    out, soft = make(num_classes=3, per_sample=per_sample, inplace=inplace, p=0.7)(images, labels)
    assert out.device.type == "meta" and soft.device.type == "meta" and soft.shape == (4, 3)


def test_pickle_and_repr():
    mix = make(5, grid_size=(3, 4), cell_p=0.25, num_classes=3, per_sample=True)
    clone = pickle.loads(pickle.dumps(mix))
    images = torch.rand(3, 3, 16, 16)
    a, b = mix(images, torch.arange(3)), clone(images, torch.arange(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert repr(mix).startswith("GridMix(") and "cell_p=0.25" in repr(mix)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grid_size": 0}, "grid_size must be an int >= 1"),
        ({"grid_size": (0, 3)}, "grid_size"),
        ({"grid_size": (4, 3)}, "grid_size"),
        ({"grid_size": (2, 3, 4)}, "grid_size"),
        ({"grid_size": 2.5}, "grid_size"),
        ({"grid_size": True}, "grid_size"),
        ({"cell_p": 1.5}, "cell_p must be a probability"),
        ({"cell_p": -0.1}, "cell_p"),
        ({"alpha": 0.0}, "alpha must be"),
    ],
)
def test_bad_parameters_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridMix(**kwargs)


@pytest.mark.parametrize("per_sample", [False, True])
def test_a_grid_larger_than_the_image_is_refused_before_anything_changes(per_sample):
    images = torch.rand(3, 3, 6, 20)
    before = images.clone()
    with pytest.raises(ValueError, match=r"grid_size: a 7x7 grid is larger than the images \(6x20\)"):
        GridMix(num_classes=3, inplace=True, per_sample=per_sample)(images, torch.arange(3))
    assert torch.equal(images, before)
    out, _ = GridMix(grid_size=(2, 6), num_classes=3)(images, torch.arange(3))  # 6 fits
    assert out.shape == images.shape


# ---------------------------------------------------------------------------------------------
# The core: sample_grids and grids_to_masks
# ---------------------------------------------------------------------------------------------


def test_grids_to_masks_equals_grid_to_masks_for_every_size():
    sizes, cells = masks.sample_grids(40, grid_size=(1, 9), per_sample=True, generator=torch.Generator().manual_seed(0))
    for height, width in [(9, 9), (61, 47), (100, 10)]:
        got = masks.grids_to_masks(sizes, cells, height, width)
        for i in range(40):
            g = int(sizes[i])
            assert torch.equal(got[i], masks.grid_to_masks(cells[i : i + 1, :g, :g], height, width)[0])
            assert torch.equal(got[i], paint(cells[i, :g, :g].tolist(), g, height, width))


def test_sample_grids_law():
    sizes, cells = masks.sample_grids(
        4000, grid_size=(2, 4), per_sample=True, generator=torch.Generator().manual_seed(1)
    )
    assert set(sizes.tolist()) == {2, 3, 4}
    inside = torch.arange(4)[None] < sizes[:, None]
    assert not (cells & ~(inside[:, :, None] & inside[:, None, :])).any()  # nothing outside the g x g corner
    fractions = cells.flatten(1).sum(1) / sizes**2
    assert abs(float(fractions.mean()) - 0.5) < 0.02  # t ~ U(0, 1): half the cells on average
    _, fixed = masks.sample_grids(2000, grid_size=3, cell_p=0.2, per_sample=True, generator=torch.Generator())
    assert abs(float(fixed.float().mean()) - 0.2) < 0.02  # every 3 x 3 cell taken with probability 0.2


def test_core_bad_arguments():
    cells = torch.ones(2, 3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"sizes must be in \[1, 3\]"):
        masks.grids_to_masks(torch.tensor([1, 4]), cells, 10, 10)
    with pytest.raises(ValueError, match=r"sizes must be in \[1, 2\]"):
        masks.grids_to_masks(torch.tensor([1, 3]), cells, 2, 10)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        masks.grids_to_masks(torch.tensor([1.0, 2.0]), cells, 10, 10)
    with pytest.raises(TypeError, match="boolean"):
        masks.grids_to_masks(torch.tensor([1, 2]), cells.int(), 10, 10)
    with pytest.raises(ValueError, match="cell_p"):
        masks.sample_grids(2, cell_p=2.0)
    with pytest.raises(ValueError, match="grid_size"):
        masks.sample_grids(2, grid_size=(3, 1))
