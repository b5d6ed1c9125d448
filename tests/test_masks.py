"""Property tests of the mask core on its own."""

import math

import pytest
import torch
from helpers import image_sides
from hypothesis import given
from hypothesis import strategies as st

from torchvision_mix import masks
from torchvision_mix._core._kernels import paste_box
from torchvision_mix.testing import strategies as mst

sides = st.integers(1, 64)
alphas = st.floats(0.05, 8.0)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_sample_beta_matches_the_beta_law(alpha):
    x = masks.sample_beta(40_000, alpha=alpha, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64 and x.min() >= 0 and x.max() <= 1
    var = 1 / (4 * (2 * alpha + 1))
    assert abs(float(x.mean()) - 0.5) < 5 * math.sqrt(var / x.numel())
    assert abs(float(x.var()) - var) < 0.05 * var
    # Beta(1, 1) is uniform: its CDF at 0.25 is 0.25; for alpha < 1 mass moves to the ends.
    below = float((x < 0.25).double().mean())
    assert (below > 0.3) if alpha < 1 else (abs(below - 0.25) < 0.01) if alpha == 1 else (below < 0.2)


def test_sample_beta_asymmetric_and_tiny_alpha():
    g = torch.Generator().manual_seed(1)
    x = masks.sample_beta(40_000, alpha=2.0, beta=6.0, generator=g)
    assert abs(float(x.mean()) - 0.25) < 0.005
    tiny = masks.sample_beta(1000, alpha=1e-3, generator=g)
    assert not tiny.isnan().any()
    assert float(((tiny < 1e-6) | (tiny > 1 - 1e-6)).double().mean()) > 0.9


@given(st.integers(0, 5), mst.seeds(), alphas)
def test_sample_beta_reproducible_and_in_range(n, seed, alpha):
    a = masks.sample_beta(n, alpha=alpha, generator=torch.Generator().manual_seed(seed))
    b = masks.sample_beta(n, alpha=alpha, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(a, b) and a.shape == (n,)
    assert ((a >= 0) & (a <= 1)).all()


@given(st.integers(0, 9), sides, sides, alphas, st.booleans(), mst.seeds())
def test_sample_boxes_lie_in_the_image(batch, height, width, alpha, per_sample, seed):
    g = torch.Generator().manual_seed(seed)
    boxes = masks.sample_boxes(batch, height, width, alpha=alpha, per_sample=per_sample, generator=g)
    assert boxes.shape == (batch, 4) and boxes.dtype == torch.int64
    x1, y1, x2, y2 = boxes.unbind(1)
    assert ((x1 >= 0) & (x1 <= x2) & (x2 <= width)).all()
    assert ((y1 >= 0) & (y1 <= y2) & (y2 <= height)).all()
    if not per_sample and batch > 0:
        assert (boxes == boxes[0]).all()


@given(sides, sides, mst.seeds())
def test_sample_boxes_size_and_centre(height, width, seed):
    """Replays the documented recipe with the same generator stream."""
    g = torch.Generator().manual_seed(seed)
    box = masks.sample_boxes(1, height, width, alpha=1.0, generator=g)[0].tolist()
    g = torch.Generator().manual_seed(seed)
    side = math.sqrt(float(masks.sample_beta(1, alpha=1.0, generator=g)[0]))
    cx = int(torch.randint(width, (1,), generator=g))
    cy = int(torch.randint(height, (1,), generator=g))
    w, h = math.floor(side * width), math.floor(side * height)
    expected = [cx - w // 2, cy - h // 2, cx - w // 2 + w, cy - h // 2 + h]
    expected = [min(max(v, 0), width if i % 2 == 0 else height) for i, v in enumerate(expected)]
    assert box == expected


def test_sample_boxes_reach_every_border():
    g = torch.Generator().manual_seed(0)
    boxes = masks.sample_boxes(4000, 16, 12, alpha=0.3, per_sample=True, generator=g)
    assert (boxes[:, 0] == 0).any() and (boxes[:, 2] == 12).any()
    assert (boxes[:, 1] == 0).any() and (boxes[:, 3] == 16).any()
    # small boxes reach the last row and column too
    small = (boxes[:, 2] - boxes[:, 0] <= 2) & (boxes[:, 2] == 12)
    assert small.any()


@given(st.integers(0, 6), sides, sides, mst.seeds())
def test_boxes_to_masks_is_the_box(batch, height, width, seed):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(-3, 70, (batch, 4), generator=g)
    m = masks.boxes_to_masks(raw, height, width)
    assert m.shape == (batch, height, width) and m.dtype == torch.bool
    for i in range(batch):
        x1, y1, x2, y2 = raw[i].tolist()
        ref = torch.zeros(height, width, dtype=torch.bool)
        ref[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
        assert torch.equal(m[i], ref)
        assert float(masks.mask_fractions(m[i : i + 1], dtype=torch.float64)) == ref.sum().item() / (height * width)


@given(sides, st.integers(1, 64))
def test_cell_bounds_tile_the_axis(size, cells):
    if cells > size:
        with pytest.raises(ValueError, match="no cell is empty"):
            masks.cell_bounds(size, cells)
        return
    b = masks.cell_bounds(size, cells)
    assert b[0] == 0 and b[-1] == size and b.shape == (cells + 1,)
    d = b.diff()
    assert (d >= 1).all() and int(d.max() - d.min()) <= 1
    # pixel r lies in cell floor(r * cells / size)
    r = torch.arange(size)
    cell = r * cells // size
    assert ((b[cell] <= r) & (r < b[cell + 1])).all()


@pytest.mark.parametrize("size", [61, 115, 230, 224, 7, 8, 100, 75])
def test_grid_cells_cover_sizes_that_break_float_scaling(size):
    cells = torch.zeros(49, 7, 7, dtype=torch.bool)
    cells.view(49, 49)[torch.arange(49), torch.arange(49)] = True  # one cell per mask
    m = masks.grid_to_masks(cells, size, size)
    assert m.shape == (49, size, size)
    assert torch.equal(m.sum(0), torch.ones(size, size, dtype=torch.int64))  # no gap, no overlap


@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), sides, sides, mst.seeds())
def test_grid_to_masks_maps_each_cell_to_its_rectangle(batch, gh, gw, height, width, seed):
    cells = torch.rand(batch, gh, gw, generator=torch.Generator().manual_seed(seed)) < 0.4
    if gh > height or gw > width:
        with pytest.raises(ValueError, match="larger than the image"):
            masks.grid_to_masks(cells, height, width)
        return
    m = masks.grid_to_masks(cells, height, width)
    rows, cols = masks.cell_bounds(height, gh), masks.cell_bounds(width, gw)
    ref = torch.zeros(batch, height, width, dtype=torch.bool)
    for b, r, c in cells.nonzero().tolist():
        ref[b, rows[r] : rows[r + 1], cols[c] : cols[c + 1]] = True
    assert torch.equal(m, ref)


@given(st.integers(1, 5), st.integers(1, 8), st.integers(1, 8), mst.seeds(), st.data())
def test_top_k_cells_takes_the_highest_with_stable_ties(batch, gh, gw, seed, data):
    g = torch.Generator().manual_seed(seed)
    heat = torch.randint(0, 4, (batch, gh, gw), generator=g).float()  # many ties
    k = data.draw(st.integers(0, gh * gw))
    sel = masks.top_k_cells(heat, k)
    assert sel.shape == heat.shape and (sel.flatten(1).sum(1) == k).all()
    for b in range(batch):
        flat = heat[b].flatten().tolist()
        order = sorted(range(len(flat)), key=lambda i: (-flat[i], i))
        expected = torch.zeros(len(flat), dtype=torch.bool)
        expected[order[:k]] = True
        assert torch.equal(sel[b].flatten(), expected)


def test_top_k_cells_per_sample_k_and_nan():
    heat = torch.tensor([[[float("nan"), 1.0], [2.0, 0.0]], [[0.0, 1.0], [2.0, 3.0]]])
    sel = masks.top_k_cells(heat, torch.tensor([3, 1]))
    assert sel.tolist() == [[[False, True], [True, True]], [[False, False], [False, True]]]


def test_top_k_uses_both_axes_not_the_diagonal():
    heat = torch.zeros(1, 7, 7)
    heat[0, 1, 5] = 1.0  # an off-diagonal cell
    m = masks.grid_to_masks(masks.top_k_cells(heat, 1), 224, 224)
    assert m[0, 32:64, 160:192].all() and int(m.sum()) == 32 * 32


@given(mst.image_batches(kinds=("tensor",), **image_sides(1, 24)), mst.seeds(), st.booleans())
def test_paste_takes_partner_pixels_exactly_where_the_mask_says(images, seed, inplace):
    b, _, h, w = images.shape
    m = torch.rand(b, h, w, generator=torch.Generator().manual_seed(seed)) < 0.5
    before = images.clone()
    out = masks.paste(images, m, inplace=inplace)
    expected = torch.where(m[:, None], before.roll(1, 0), before)
    assert torch.equal(out, expected)
    assert (out is images) == inplace
    if not inplace:
        assert torch.equal(images, before)
    assert out.is_contiguous(memory_format=torch.channels_last) == before.is_contiguous(
        memory_format=torch.channels_last
    )


@given(mst.image_batches(kinds=("tensor", "video"), **image_sides(1, 24)), mst.seeds(), st.booleans())
def test_paste_with_a_partner_index(images, seed, inplace):
    g = torch.Generator().manual_seed(seed)
    b, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    m = torch.rand(b, h, w, generator=g) < 0.5
    partner = torch.randperm(b, generator=g)
    before = images.as_subclass(torch.Tensor).clone()
    out = masks.paste(images.as_subclass(torch.Tensor), m, partner=partner, inplace=inplace)
    shape = (b, *([1] * (images.ndim - 3)), h, w)
    assert torch.equal(out, torch.where(m.reshape(shape), before[partner], before))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("how", ["cyclic", "partner", "inplace", "inplace partner"])
@pytest.mark.parametrize("batch", [1, 2, 23])
@pytest.mark.parametrize("shared", [False, True], ids=["a mask per sample", "one mask expanded"])
def test_paste_of_small_dtypes_in_many_blocks(dtype, how, batch, shared):
    """Batches of many 64 KiB blocks (23 x 3 x 40 x 64 bytes: blocks of 8, 8, 7 samples), checked sample by sample."""
    g = torch.Generator().manual_seed(batch)
    images = (torch.rand(batch, 3, 40, 64, generator=g) * 200).to(dtype)
    m = torch.rand(1 if shared else batch, 40, 64, generator=g) < 0.5
    m = m.expand(batch, 40, 64)
    partner = torch.randperm(batch, generator=g) if "partner" in how else None
    before = images.clone()
    out = masks.paste(images, m, partner=partner, inplace="inplace" in how)
    for i in range(batch):
        j = (i - 1) % batch if partner is None else int(partner[i])
        assert torch.equal(out[i], torch.where(m[i], before[j], before[i])), i
    assert (out is images) == ("inplace" in how)
    if "inplace" not in how:
        assert torch.equal(images, before)


@given(mst.image_batches(kinds=("tensor", "video"), **image_sides(1, 24)), mst.seeds(), st.booleans())
def test_region_only_box_paste_equals_the_mask_paste(images, seed, inplace):
    images = images.as_subclass(torch.Tensor)
    b, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    box = masks.sample_boxes(1, h, w, generator=torch.Generator().manual_seed(seed))
    m = masks.boxes_to_masks(box, h, w).expand(b, h, w)
    before = images.clone()
    expected = masks.paste(images, m)
    out = paste_box(images, tuple(box[0].tolist()), inplace=inplace)
    assert (out is images) == inplace and torch.equal(out, expected)
    if not inplace:
        assert torch.equal(images, before)
        cl = torch.channels_last
        assert out.is_contiguous(memory_format=cl) == images.is_contiguous(memory_format=cl)


@given(st.integers(1, 8), st.integers(1, 12), mst.seeds(), st.sampled_from([0.0, 0.1]), st.booleans())
def test_mix_labels_is_the_convex_mix(batch, k, seed, eps, soft):
    g = torch.Generator().manual_seed(seed)
    if soft:
        y = torch.rand(batch, k, generator=g, dtype=torch.float64)
        y = y / y.sum(1, keepdim=True)
        dense = y
    else:
        y = torch.randint(k, (batch,), generator=g)
        dense = torch.nn.functional.one_hot(y, k).double()
    lam = torch.rand(batch, generator=g, dtype=torch.float64)
    out = masks.mix_labels(y, lam, num_classes=k, label_smoothing=eps)
    dense = dense * (1 - eps) + eps / k
    expected = (1 - lam[:, None]) * dense + lam[:, None] * dense.roll(1, 0)
    assert out.dtype == (torch.float64 if soft else torch.float32)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.sum(1).double(), torch.ones(batch, dtype=torch.float64), rtol=0, atol=1e-5)


@given(st.integers(0, 4), st.integers(1, 3000), mst.seeds(), st.floats(0, 1))
def test_pixel_counts_are_exact_for_every_row_length(batch, n, seed, density):
    from torchvision_mix._core._kernels import count_true

    flat = torch.rand(batch, n, generator=torch.Generator().manual_seed(seed)) < density
    assert torch.equal(count_true(flat.view(torch.uint8)), flat.sum(dim=1))
    full = torch.ones(2, 8 * 255 * 3, dtype=torch.uint8)  # every lane at its 255 limit
    assert count_true(full).tolist() == [8 * 255 * 3] * 2


@pytest.mark.parametrize("bad", [-0.5, 1.5, float("nan"), float("inf")])
@pytest.mark.parametrize("soft", [False, True])
def test_mix_labels_refuses_lam_outside_0_1(bad, soft):
    """A λ of -0.5 gave labels of -0.5 and 1.5: refused on CPU tensors, as out-of-range classes are."""
    labels = torch.rand(3, 4).softmax(1) if soft else torch.tensor([0, 1, 3])
    lam = torch.tensor([0.0, bad, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        masks.mix_labels(labels, lam, num_classes=4)
    # The ends are fine, and a device tensor is not read (no host synchronisation): not checked.
    assert masks.mix_labels(labels, torch.tensor([0.0, 1.0, 1.0]), num_classes=4).shape == (3, 4)
    meta = masks.mix_labels(labels.to("meta"), lam.to("meta"), num_classes=4)
    assert meta.device.type == "meta" and meta.shape == (3, 4)
