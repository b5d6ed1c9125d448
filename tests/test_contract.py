"""The contract every mix of the package keeps, checked the same way for each.

Each entry of ``MIXES`` is one mix (a factory ``(num_classes, generator) -> transform``) with
the checks that apply to it. Every entry runs through ``check_mix_transform`` on drawn input
structures (tuple, list, dict, dict with a segmentation Mask and pass-through keys, ...),
dtypes, batch sizes and seeds, and through a pickling round trip. A mix added to the package is
added here by one line.
"""

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from torchvision_mix import AttentiveCutMix, CutMix, FMix, GridMix, MaskMix, MixUp, RandomMix, SaliencyMix
from torchvision_mix.testing import check_mix_transform
from torchvision_mix.testing import strategies as mst

PASTE = ("none", "paste")
BLEND = ("none", "blend")
PASTE_OR_BLEND = ("none", "paste", "blend")
ALL_STRUCTURES = mst.STRUCTURES
NO_MASKS = tuple(s for s in mst.STRUCTURES if "mask" not in s and s != "segmentation")
WITH_A_DICT = ("dict", "dict+mask", "tuple+dict", "segmentation")


class Stripes(MaskMix):
    """What a user writes on the public base: paste a random band of columns, at least one wide."""

    def make_masks(self, batch):
        b, h, w = batch.shape[0], batch.shape[-2], batch.shape[-1]
        n = b if self.per_sample else 1
        start = torch.randint(0, w, (n, 1), generator=self.generator)
        width = torch.randint(1, w + 1, (n, 1), generator=self.generator)
        cols = torch.arange(w)
        band = (cols >= start) & (cols < start + width)  # (n, W), clipped at the right border
        return band[:, None, :].expand(b, h, w).to(batch.device)


class TinyExtractor(nn.Module):
    """A one-layer CNN for any channel count and dtype: the mean channel through a 3x3 convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.zero_()

    def forward(self, x):
        return self.conv(x.float().mean(dim=1, keepdim=True))


def _attention(batch_size, height, width):
    """Pass-through entries plus precomputed attention heatmaps (B, 3, 3)."""
    return st.tuples(mst.extra_values(batch_size), mst.seeds()).map(
        lambda t: {**t[0], "attention": torch.rand(batch_size, 3, 3, generator=torch.Generator().manual_seed(t[1]))}
    )


@dataclass(frozen=True)
class Mix:
    """One mix of the contract: how to build it, which checks apply, which inputs it takes."""

    id: str
    factory: Callable[[int, torch.Generator], Any]  # (num_classes, generator) -> transform
    check: dict = field(default_factory=dict)  # extra check_mix_transform options
    kinds: tuple = PASTE  # what a sample may be: pasted, blended, or not mixed
    structures: tuple = ALL_STRUCTURES
    min_side: int = 1
    extras: Callable | None = None  # (batch_size, height, width) -> strategy of pass-through entries
    always_mixes: bool = False  # a batch of 2+ distinct samples is always visibly mixed

    def inputs(self):
        images = mst.image_batches(
            batch_sizes=st.integers(1, 5), heights=st.integers(self.min_side, 14), widths=st.integers(self.min_side, 14)
        )
        return mst.mix_inputs(images=images, structure=st.sampled_from(self.structures), extras=self.extras)


MIXES = [
    Mix("CutMix", lambda k, g: CutMix(num_classes=k, generator=g)),
    Mix("CutMix-per_sample", lambda k, g: CutMix(num_classes=k, per_sample=True, generator=g)),
    Mix("CutMix-p0.5", lambda k, g: CutMix(num_classes=k, p=0.5, generator=g)),
    Mix("CutMix-p0.5-per_sample", lambda k, g: CutMix(num_classes=k, p=0.5, per_sample=True, generator=g)),
    Mix("CutMix-inplace", lambda k, g: CutMix(num_classes=k, inplace=True, generator=g), {"inplace": True}),
    Mix(
        "CutMix-label_smoothing",
        lambda k, g: CutMix(num_classes=k, label_smoothing=0.1, generator=g),
        {"label_smoothing": 0.1},
    ),
    Mix("CutMix-gaussian_center", lambda k, g: CutMix(num_classes=k, center="gaussian", generator=g)),
    Mix(
        "CutMix-fixed_box",
        lambda k, g: CutMix(num_classes=k, box_size=(2, 3), generator=g),
        min_side=3,
        always_mixes=True,
    ),
    Mix(
        "CutMix-one_hot",
        lambda k, g: CutMix(num_classes=k, label_rule="one_hot", generator=g),
        {"label_rule": "one_hot"},
    ),
    Mix(
        "CutMix-complete",
        lambda k, g: CutMix(num_classes=k, label_rule="complete", per_sample=True, p=0.7, generator=g),
        {"label_rule": "complete"},
    ),
    Mix(
        "AttentiveCutMix-precomputed",
        lambda k, g: AttentiveCutMix(grid_size=3, top_k=2, num_classes=k, generator=g),
        structures=WITH_A_DICT,
        min_side=3,
        extras=_attention,
        always_mixes=True,
    ),
    Mix(
        "AttentiveCutMix-extractor",
        lambda k, g: AttentiveCutMix(
            feature_extractor=TinyExtractor(), grid_size=2, top_k=1, num_classes=k, generator=g
        ),
        min_side=2,
        always_mixes=True,
    ),
    Mix("user-MaskMix", lambda k, g: Stripes(num_classes=k, per_sample=True, generator=g), always_mixes=True),
    Mix("SaliencyMix", lambda k, g: SaliencyMix(num_classes=k, generator=g)),
    Mix("SaliencyMix-per_sample-p0.7", lambda k, g: SaliencyMix(num_classes=k, per_sample=True, p=0.7, generator=g)),
    Mix("FMix", lambda k, g: FMix(num_classes=k, generator=g)),
    Mix("FMix-per_sample-inplace", lambda k, g: FMix(num_classes=k, per_sample=True, inplace=True, generator=g),
        {"inplace": True}),
    Mix("GridMix", lambda k, g: GridMix(grid_size=(2, 3), num_classes=k, generator=g), min_side=3),
    Mix("GridMix-per_sample", lambda k, g: GridMix(grid_size=(1, 4), per_sample=True, num_classes=k, generator=g),
        min_side=4),
    Mix("MixUp", lambda k, g: MixUp(num_classes=k, generator=g), kinds=BLEND, structures=NO_MASKS),
    Mix(
        "MixUp-per_sample-p0.5-inplace",
        lambda k, g: MixUp(num_classes=k, per_sample=True, p=0.5, inplace=True, generator=g),
        {"inplace": True},
        kinds=BLEND,
        structures=NO_MASKS,
    ),
    Mix(
        "RandomMix-recipe-per_sample",
        lambda k, g: RandomMix(
            [CutMix(), MixUp(alpha=0.8)], per_sample=True, num_classes=k, label_smoothing=0.1, generator=g
        ),
        {"label_smoothing": 0.1},
        kinds=PASTE_OR_BLEND,
        structures=NO_MASKS,
    ),
    Mix(
        "RandomMix-recipe-batch",
        lambda k, g: RandomMix([CutMix(), MixUp(alpha=0.8)], mix_p=0.8, num_classes=k, generator=g),
        kinds=PASTE_OR_BLEND,
        structures=NO_MASKS,
    ),
    Mix(
        "RandomMix-masks-only",
        lambda k, g: RandomMix([CutMix(), Stripes()], per_sample=True, num_classes=k, generator=g),
    ),
]


@pytest.mark.parametrize("mix", MIXES, ids=[m.id for m in MIXES])
@given(data=st.data())
def test_every_mix_keeps_the_contract(mix, data):
    case = data.draw(mix.inputs(), label="inputs")
    seed = data.draw(mst.seeds(), label="seed")
    transform = mix.factory(case.num_classes, torch.Generator().manual_seed(seed))
    report = check_mix_transform(
        transform,
        case,
        kinds=mix.kinds,
        require_pairing="previous",
        require_mixing=mix.always_mixes and case.images.shape[0] >= 2,
        **mix.check,
    )
    assert len(report.kinds) == case.images.shape[0]


def _assert_same_output(a, b, path="output"):
    assert type(a) is type(b), path
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_same_output(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_output(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.mark.parametrize("mix", MIXES, ids=[m.id for m in MIXES])
@settings(max_examples=5)
@given(data=st.data())
def test_a_pickled_mix_continues_with_the_same_generator_state(mix, data):
    case = data.draw(mix.inputs(), label="inputs")
    transform = mix.factory(case.num_classes, torch.Generator().manual_seed(data.draw(mst.seeds(), label="seed")))
    transform(*case.clone().args)  # the generator is mid-stream when pickled
    copy = pickle.loads(pickle.dumps(transform))
    for _ in range(2):
        _assert_same_output(transform(*case.clone().args), copy(*case.clone().args))
