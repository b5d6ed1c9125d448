"""The contract every mix of the package keeps, checked the same way for each.

Each entry of ``MIXES`` is one mix (a factory ``(num_classes, generator) -> transform``) with
the checks that apply to it. Every entry runs through ``check_mix_transform`` on drawn input
structures (tuple, list, dict, dict with a segmentation Mask and pass-through keys, ...),
dtypes, batch sizes and seeds, and through a pickling round trip. A mix added to the package is
added here by one line.

Each entry of ``CLASSES`` is one class of mix (a factory taking the base's options), for the
checks of the whole transform that the checker cannot make from one call: no host sync on the
mixing path, empty, single and odd batches, ``inplace`` against a new batch, ``p`` gating,
seeded reproducibility, ``repr`` and pickling.
"""

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from helpers import Stripes, TinyExtractor, foreign_masks
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from torchvision_mix import AttentiveCutMix, CutMix, FMix, GridMix, MixUp, RandomMix, SaliencyMix, attention
from torchvision_mix.testing import check_mix_transform
from torchvision_mix.testing import strategies as mst

PASTE = ("none", "paste")
BLEND = ("none", "blend")
PASTE_OR_BLEND = ("none", "paste", "blend")
ALL_STRUCTURES = mst.STRUCTURES
NO_MASKS = tuple(s for s in mst.STRUCTURES if "mask" not in s and s != "segmentation")
WITH_A_DICT = ("dict", "dict+mask", "tuple+dict", "segmentation")


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
    Mix(
        "user-MaskMix",
        lambda k, g: Stripes(num_classes=k, per_sample=True, generator=g),
        min_side=3,
        always_mixes=True,
    ),
    Mix("SaliencyMix", lambda k, g: SaliencyMix(num_classes=k, generator=g)),
    Mix("SaliencyMix-per_sample-p0.7", lambda k, g: SaliencyMix(num_classes=k, per_sample=True, p=0.7, generator=g)),
    Mix("FMix", lambda k, g: FMix(num_classes=k, generator=g)),
    Mix("FMix-alpha0.3", lambda k, g: FMix(alpha=0.3, num_classes=k, generator=g)),
    Mix("FMix-alpha4-per_sample", lambda k, g: FMix(alpha=4.0, per_sample=True, num_classes=k, generator=g)),
    Mix(
        "FMix-per_sample-inplace",
        lambda k, g: FMix(num_classes=k, per_sample=True, inplace=True, generator=g),
        {"inplace": True},
    ),
    Mix("GridMix", lambda k, g: GridMix(grid_size=(2, 3), num_classes=k, generator=g), min_side=3),
    Mix("GridMix-default_grid", lambda k, g: GridMix(num_classes=k, generator=g), min_side=7),
    Mix(
        "GridMix-per_sample",
        lambda k, g: GridMix(grid_size=(1, 4), per_sample=True, num_classes=k, generator=g),
        min_side=4,
    ),
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


# ---------------------------------------------------------------------------------------------
# The whole transform: what one checked call cannot show
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One class of mix: ``build(device, **options)`` with the base's options (num_classes, p, ...)."""

    id: str
    build: Callable[..., Any]
    shown: dict = field(default_factory=dict)  # constructor arguments (besides the base's) its repr shows
    p_name: str = "p"  # the name of the mixing probability


def _attentive(device, **options):
    return AttentiveCutMix(feature_extractor=TinyExtractor().to(device), grid_size=2, top_k=1, **options)


def _attentive_random_top_k(device, **options):
    extractor = TinyExtractor().to(device)
    return AttentiveCutMix(feature_extractor=extractor, grid_size=2, top_k=None, alpha=1.0, **options)


def _random_mix(device, *, p=1.0, **options):
    return RandomMix([CutMix(), MixUp(alpha=0.8)], p=[0.4, 0.6], mix_p=p, **options)


CLASSES = [
    Kind("CutMix", lambda device, **o: CutMix(alpha=0.7, center="gaussian", **o), {"alpha": 0.7, "center": "gaussian"}),
    Kind("AttentiveCutMix", _attentive, {"grid_size": 2, "top_k": 1}),
    Kind("AttentiveCutMix-random_top_k", _attentive_random_top_k, {"alpha": 1.0}),
    Kind("SaliencyMix", lambda device, **o: SaliencyMix(alpha=0.5, **o), {"alpha": 0.5}),
    Kind("FMix", lambda device, **o: FMix(alpha=0.5, decay_power=2.0, **o), {"alpha": 0.5, "decay_power": 2.0}),
    Kind(
        "GridMix",
        lambda device, **o: GridMix(grid_size=(3, 4), cell_p=0.25, **o),
        {"grid_size": (3, 4), "cell_p": 0.25},
    ),
    Kind("MixUp", lambda device, **o: MixUp(alpha=0.8, **o), {"alpha": 0.8}),
    Kind("RandomMix", _random_mix, {"p": [0.4, 0.6]}, p_name="mix_p"),
    Kind("user-MaskMix", lambda device, **o: Stripes(band=3, **o), {"band": 3}),
]
CLASS_IDS = [kind.id for kind in CLASSES]


def _one_hot(labels, k, dtype=torch.float32):
    return torch.nn.functional.one_hot(labels, k).to(dtype)


# Configurations whose mixing path differs from their class's entry above (only for the host-sync test).
SYNC_ONLY = [
    Kind(
        "AttentiveCutMix-normalising_extractor_size",
        lambda device, **o: AttentiveCutMix(
            feature_extractor=attention.FeatureExtractor(nn.Conv2d(3, 8, kernel_size=32, stride=32)).to(device),
            extractor_size=224,
            **o,
        ),
    ),
    Kind(
        "SaliencyMix-own_saliency",
        lambda device, **o: SaliencyMix(saliency=lambda x: torch.empty(x.shape[0], 7, 9, device=x.device), **o),
    ),
]


@pytest.mark.parametrize("kind", CLASSES + SYNC_ONLY, ids=[k.id for k in CLASSES + SYNC_ONLY])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_no_host_sync_on_the_mixing_path(kind, per_sample, inplace):
    """On the meta device any .item()/.tolist()/.cpu() of a device tensor would raise: every draw, mask,
    weight and label stays on the device (p < 1 takes the gating path)."""
    images = torch.empty(4, 3, 32, 32, device="meta")
    labels = torch.empty(4, dtype=torch.int64, device="meta")
    for p in (1.0, 0.7):
        generator = torch.Generator().manual_seed(0)
        mix = kind.build("meta", num_classes=3, per_sample=per_sample, inplace=inplace, p=p, generator=generator)
        out, soft = mix(images, labels)
        assert out.device.type == "meta" and soft.device.type == "meta" and soft.shape == (4, 3)
        assert out.shape == images.shape and (out is images or not inplace)


@pytest.mark.parametrize("kind", CLASSES, ids=CLASS_IDS)
@pytest.mark.parametrize("batch", [0, 1, 3, 7])
@pytest.mark.parametrize("per_sample", [False, True])
def test_empty_single_and_odd_batches(kind, batch, per_sample):
    images, labels = torch.rand(batch, 3, 9, 11), torch.zeros(batch, dtype=torch.int64)
    out, soft = kind.build("cpu", num_classes=2, per_sample=per_sample)(images, labels)
    assert out.shape == images.shape and soft.shape == (batch, 2) and soft.dtype == torch.float32
    if batch == 1:  # a sample has no partner but itself
        assert torch.equal(out, images) and torch.equal(soft, torch.tensor([[1.0, 0.0]]))


@pytest.mark.parametrize("kind", CLASSES, ids=CLASS_IDS)
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_inplace_writes_the_same_result_into_the_input(kind, per_sample, dtype):
    images = (torch.rand(5, 3, 15, 15, generator=torch.Generator().manual_seed(2)) * 255).to(dtype)
    before = images.clone()
    options = {"num_classes": 5, "per_sample": per_sample}
    new, new_soft = kind.build("cpu", generator=torch.Generator().manual_seed(6), **options)(images, torch.arange(5))
    assert torch.equal(images, before) and not torch.equal(new, before)
    mix = kind.build("cpu", inplace=True, generator=torch.Generator().manual_seed(6), **options)
    out, soft = mix(images, torch.arange(5))
    assert out is images and torch.equal(images, new) and torch.equal(soft, new_soft)


@pytest.mark.parametrize("kind", CLASSES, ids=CLASS_IDS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_p_zero_returns_the_images_and_one_hot_labels(kind, per_sample):
    images, labels = torch.rand(6, 3, 8, 8), torch.tensor([0, 3, 1, 2, 3, 0])
    out, soft = kind.build("cpu", num_classes=4, per_sample=per_sample, p=0.0)(images, labels)
    assert (out is images) if not per_sample else torch.equal(out, images)
    assert torch.equal(soft, _one_hot(labels, 4))


@pytest.mark.parametrize("kind", CLASSES, ids=CLASS_IDS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_p_is_the_mixing_probability_and_gated_samples_keep_their_labels(kind, per_sample):
    """Per sample (or per batch), a sample is mixed with probability p; a gated one keeps its pixels
    and its one-hot label; label smoothing applies to every sample."""
    mix = kind.build(
        "cpu",
        num_classes=5,
        p=0.3,
        per_sample=per_sample,
        label_smoothing=0.2,
        generator=torch.Generator().manual_seed(7),
    )
    labels = torch.arange(5)
    smoothed = _one_hot(labels, 5) * 0.8 + 0.2 / 5
    mixed = total = 0
    for step in range(160):
        images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(step))
        out, soft = mix(images, labels)
        changed = foreign_masks(out, images).flatten(1).any(1)
        kept = (soft - smoothed).abs().amax(dim=1) < 1e-6
        assert torch.equal(kept, ~changed), step  # mixed pixels, mixed label; gated, neither
        if not per_sample:
            assert bool(changed.all()) or not bool(changed.any()), step  # the batch is gated as one
        mixed += int(changed.sum())
        total += 5
    assert 0.2 < mixed / total < 0.4


@pytest.mark.parametrize("kind", CLASSES, ids=CLASS_IDS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_a_seed_gives_the_same_mix_and_the_global_random_state_is_untouched(kind, per_sample):
    images, labels = torch.rand(6, 3, 12, 12), torch.arange(6)
    mixes = [
        kind.build("cpu", num_classes=6, per_sample=per_sample, generator=torch.Generator().manual_seed(9))
        for _ in range(2)
    ]
    state = torch.get_rng_state()  # taken after building: a module's initialisation draws from it
    outs = [mix(images, labels) for mix in mixes]
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("kind", CLASSES, ids=CLASS_IDS)
def test_repr_shows_the_constructor_arguments_and_survives_pickling(kind):
    mix = kind.build(
        "cpu", num_classes=3, p=0.5, per_sample=True, label_smoothing=0.1, generator=torch.Generator().manual_seed(2)
    )
    text = repr(mix)
    head = text.split("(transforms)")[0]  # RandomMix: its own options, before its children's
    assert text.startswith(f"{type(mix).__name__}(")
    for name, value in {
        **kind.shown,
        "num_classes": 3,
        kind.p_name: 0.5,
        "per_sample": True,
        "label_smoothing": 0.1,
    }.items():
        assert f"{name}={value}" in head, (name, text)
    clone = pickle.loads(pickle.dumps(mix))
    assert repr(clone) == text
    images = torch.rand(3, 3, 16, 16)
    a, b = mix(images, torch.arange(3)), clone(images, torch.arange(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
