"""torch.compile: the mask core compiles whole and gives the eager results bit for bit; a
compiled training step with a mix inside matches the eager step and does not recompile per box.

Compiling is slow (seconds per graph on a CPU), so every compiled function is reused across the
examples of its test: shapes are fixed per parametrised case (``dynamic=False``) and Hypothesis
varies only the values (boxes, pixels, heatmaps, weights), which never recompile.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch._dynamo.utils import counters

from torchvision_mix import AttentiveCutMix, CutMix, MixUp, RandomMix, masks
from torchvision_mix.testing import strategies as mst

K = 7  # classes

examples = settings(max_examples=12)


class Compiled:
    """``fn`` compiled whole by inductor (a graph break raises), one graph per shape.

    A failed compile is remembered per signature and raised again at once: otherwise every
    Hypothesis example (and every shrinking step) would spend seconds compiling again.
    """

    def __init__(self, fn):
        self.fn = torch.compile(fn, fullgraph=True, dynamic=False)
        self.failed: dict[tuple, Exception] = {}

    def __call__(self, *args):
        key = tuple(
            (tuple(a.shape), a.dtype, a.stride()) if isinstance(a, torch.Tensor) else (type(a), a) for a in args
        )
        if key in self.failed:
            raise self.failed[key]
        try:
            return self.fn(*args)
        except AssertionError:
            raise
        except Exception as error:
            self.failed[key] = error
            raise


@functools.cache
def compiled(fn):
    return Compiled(fn)


def images_like(seed: int, dtype: torch.dtype, shape: tuple[int, ...], channels_last: bool) -> torch.Tensor:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    x = (x * 255).round().to(dtype) if dtype == torch.uint8 else x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def assert_same(compiled_out, eager_out):
    """Bit-identical values, same dtype and shape, same strides (channels_last stays channels_last)."""
    for c, e in zip(compiled_out, eager_out, strict=True):
        assert c.dtype == e.dtype and c.shape == e.shape
        assert torch.equal(c, e)
        assert c.stride() == e.stride() or c.numel() <= 1


# --- the box path: the failing case -------------------------------------------------


def box_mix(images, boxes, labels, inplace: bool, eps: float):
    """The CutMix core in one graph: boxes → masks → lam (two dtypes) → paste → labels.

    ``paste(x, boxes_to_masks(b, H, W))`` in one graph is the reported failure: inductor's C++
    compile error on the byte views of the eager fast paths.
    """
    height, width = images.shape[-2], images.shape[-1]
    m = masks.boxes_to_masks(boxes, height, width)
    lam = masks.mask_fractions(m)
    lam64 = masks.mask_fractions(m, dtype=torch.float64)
    mixed = masks.paste(images, m, inplace=inplace)
    return m, lam, lam64, mixed, masks.mix_labels(labels, lam64, num_classes=K, label_smoothing=eps)


BOX_CASES = [  # dtype, (B, C, H, W), channels_last, inplace, label smoothing
    (torch.float32, (5, 3, 48, 44), False, False, 0.0),  # >= 2040 pixels: eager's byte-lane count
    (torch.uint8, (3, 3, 17, 23), True, True, 0.1),
    (torch.uint8, (4, 3, 16, 32), False, False, 0.0),  # rows of whole words: eager's packed path
    (torch.float32, (1, 2, 9, 7), True, True, 0.0),
]


@pytest.mark.parametrize(("dtype", "shape", "channels_last", "inplace", "eps"), BOX_CASES)
@examples
@given(seed=mst.seeds(), data=st.data())
def test_box_masks_paste_and_labels_compile_whole_bit_identical(dtype, shape, channels_last, inplace, eps, seed, data):
    batch = shape[0]
    images = images_like(seed, dtype, shape, channels_last)
    boxes = torch.tensor(
        data.draw(st.lists(st.lists(st.integers(-3, 52), min_size=4, max_size=4), min_size=batch, max_size=batch))
    )
    labels = torch.randint(K, (batch,), generator=torch.Generator().manual_seed(seed))
    eager_images = images.clone(memory_format=torch.preserve_format)
    out = compiled(box_mix)(images, boxes, labels, inplace, eps)
    expected = box_mix(eager_images, boxes, labels, inplace, eps)
    assert_same(out, expected)
    assert (out[3] is images) == inplace
    if inplace:
        assert torch.equal(images, eager_images)


# --- the grid path (Attentive CutMix): top-k cells, exact upsampling, a partner index --------


def grid_mix(images, heat, k, partner):
    height, width = images.shape[-2], images.shape[-1]
    gh, gw = heat.shape[1], heat.shape[2]
    cells = masks.top_k_cells(heat, k)
    m = masks.grid_to_masks(cells, height, width)
    # The pixels of every cell, from cell_bounds: the pasted count must agree with the mask's.
    area = masks.cell_bounds(height, gh).diff()[:, None] * masks.cell_bounds(width, gw).diff()[None]
    counted = (cells * area).sum(dim=(1, 2))
    lam = masks.mask_fractions(m, dtype=torch.float64)
    return cells, m, counted, lam, masks.paste(images, m, partner=partner)


GRID_CASES = [  # dtype, (B, C, H, W), channels_last, (gh, gw), k per sample (tensor) or int, partner
    (torch.float32, (6, 3, 28, 28), False, (7, 7), "tensor", True),
    (torch.uint8, (1, 3, 23, 19), True, (4, 5), 3, False),
]


@pytest.mark.parametrize(("dtype", "shape", "channels_last", "grid", "k", "with_partner"), GRID_CASES)
@examples
@given(seed=mst.seeds())
def test_grid_masks_compile_bit_identical(dtype, shape, channels_last, grid, k, with_partner, seed):
    g = torch.Generator().manual_seed(seed)
    batch, _, height, width = shape
    images = images_like(seed, dtype, shape, channels_last)
    heat = torch.randint(0, 5, (batch, *grid), generator=g).float()  # ties: the stable order decides
    cells = grid[0] * grid[1]
    top_k = torch.randint(0, cells + 1, (batch,), generator=g) if k == "tensor" else k
    partner = torch.randperm(batch, generator=g) if with_partner else None
    out = compiled(grid_mix)(images, heat, top_k, partner)
    expected = grid_mix(images, heat, top_k, partner)
    assert_same(out, expected)
    assert torch.equal(out[2].double() / (height * width), out[3])


# --- blends: blend, apply (mask and weight), soft labels ---------------------------------------


def blend_mix(images, m, weights, soft, lam, partner, inplace: bool):
    blended = masks.blend(images, weights, partner=partner, inplace=inplace).clone()
    applied = masks.apply(images, masks=m, weights=weights, partner=partner, inplace=inplace)
    return blended, applied, masks.mix_labels(soft, lam, partner=partner, label_smoothing=0.1)


BLEND_CASES = [  # dtype, (B, C, H, W), channels_last, inplace, partner, soft-label dtype
    (torch.float32, (5, 3, 13, 16), False, False, False, torch.float32),
    (torch.uint8, (3, 3, 12, 9), True, True, True, torch.float64),
    (torch.float16, (2, 2, 6, 10), True, True, False, torch.float16),
]


@pytest.mark.parametrize(("dtype", "shape", "channels_last", "inplace", "with_partner", "soft_dtype"), BLEND_CASES)
@examples
@given(seed=mst.seeds())
def test_blend_apply_and_soft_labels_compile_bit_identical(
    dtype, shape, channels_last, inplace, with_partner, soft_dtype, seed
):
    g = torch.Generator().manual_seed(seed)
    batch, _, height, width = shape
    images = images_like(seed, dtype, shape, channels_last)
    m = torch.rand(batch, height, width, generator=g) < 0.3
    weights = torch.rand(batch, generator=g)
    soft = torch.rand(batch, K, generator=g, dtype=soft_dtype).softmax(1)
    lam = torch.rand(batch, generator=g, dtype=torch.float64)
    partner = torch.randperm(batch, generator=g) if with_partner else None
    eager_images = images.clone(memory_format=torch.preserve_format)
    out = compiled(blend_mix)(images, m, weights, soft, lam, partner, inplace)
    expected = blend_mix(eager_images, m, weights, soft, lam, partner, inplace)
    assert_same(out, expected)
    assert torch.equal(images, eager_images)  # written in place (or not) alike


# --- the random draws ----------------------------------------------------------------------


def draws():
    return (
        masks.sample_beta(6),
        masks.sample_beta(6, alpha=0.5, beta=2.0),
        masks.sample_boxes(6, 16, 12, size=5, per_sample=True),
        masks.sample_boxes(6, 16, 12, per_sample=True, center="gaussian"),
    )


def test_random_draws_run_eagerly_under_compile():
    """The draws never enter a graph (inductor would draw other numbers): same seed, same draws."""
    torch.manual_seed(7)
    out = torch.compile(draws)()
    torch.manual_seed(7)
    expected = draws()
    assert_same(out, expected)


# --- a compiled training step with a mix inside -----------------------------------------------

STEPS = 20
SIDE = 16


def make_mix(name: str):
    generator = torch.Generator().manual_seed(3)
    if name == "AttentiveCutMix":
        attentive = AttentiveCutMix(num_classes=K, grid_size=7, generator=generator)

        def mix(x, y, attention):
            out = attentive({"image": x, "labels": y, "attention": attention})
            return out["image"], out["labels"]

        return mix
    if name.startswith("RandomMix"):
        recipe = RandomMix(
            [CutMix(alpha=1.0), MixUp(alpha=0.8)],
            p=[0.5, 0.5],
            per_sample=True,
            num_classes=K,
            label_smoothing=0.1,
            generator=generator,
        )
        return lambda x, y, attention: recipe(x, y)
    if name == "CutMix":
        cutmix = CutMix(num_classes=K, generator=generator)
    else:  # torch's global generator, seeded before each step; and a p draw per sample
        cutmix = CutMix(num_classes=K, per_sample=True, p=0.9)
    return lambda x, y, attention: cutmix(x, y)


def make_step(model: nn.Module, mix):
    def step(x, y, attention):
        x, y = mix(x, y, attention)
        loss = nn.functional.cross_entropy(model(x), y)
        value = loss.detach()
        loss.backward()
        return value, x, y

    return step


class CountingInductor:
    """The inductor backend, counting the graphs it compiles (recompiles included)."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        from torch._inductor.compile_fx import compile_fx

        self.graphs += 1
        return compile_fx(gm, example_inputs)


@pytest.mark.parametrize(
    "name", ["CutMix", "CutMix per_sample, p=0.9, global generator", "AttentiveCutMix", "RandomMix recipe per_sample"]
)
def test_compiled_step_matches_eager_breaks_only_at_draws_never_recompiles(name):
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, K))
    twin = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, K))
    twin.load_state_dict(model.state_dict())
    backend = CountingInductor()
    compiled_step = torch.compile(make_step(model, make_mix(name)), backend=backend)
    eager_step = make_step(twin, make_mix(name))
    g = torch.Generator().manual_seed(1)
    after_first = None
    pasted = 0
    # The default recompile limit, but hitting it raises instead of silently running eagerly.
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        for i in range(STEPS):
            x = torch.rand(8, 3, SIDE, SIDE, generator=g)
            y = torch.randint(K, (8,), generator=g)
            attention = torch.rand(8, 7, 7, generator=g)
            torch.manual_seed(100 + i)
            loss, mixed, soft = compiled_step(x, y, attention)
            torch.manual_seed(100 + i)
            eager_loss, eager_mixed, eager_soft = eager_step(x, y, attention)
            assert torch.equal(mixed, eager_mixed) and torch.equal(soft, eager_soft)
            pasted += not torch.equal(mixed, x)
            torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
            for p, q in zip(model.parameters(), twin.parameters(), strict=True):
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)
                p.grad = q.grad = None
            if i == 0:
                after_first = backend.graphs
    assert pasted > STEPS // 2  # new boxes, new masks
    assert after_first is not None and after_first >= 1
    assert backend.graphs == after_first, f"{backend.graphs - after_first} graphs recompiled for new boxes"
    # The only graph breaks: backward() and the eager draws (none for fixed top_k and attention).
    allowed = ("backward",) if name == "AttentiveCutMix" else ("backward", "torch.compiler.disable")
    breaks = list(counters["graph_break"])
    assert breaks and all(any(a in reason for a in allowed) for reason in breaks), breaks
