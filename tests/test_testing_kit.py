"""The testing kit: strategies validate their arguments, and the checker catches wrong variants."""

import functools

import pytest
import torch
from helpers import image_sides
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from torchvision import tv_tensors
from torchvision.transforms import v2

from torchvision_mix import CutMix, masks
from torchvision_mix.testing import MixCheckError, check_mix_transform
from torchvision_mix.testing import strategies as mst


class Variant(v2.Transform):
    """A user-written box mix on the mask core, with switches that plant one bug each."""

    def __init__(self, num_classes, bug=None, seed=0):
        super().__init__()
        self.num_classes, self.bug = num_classes, bug
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, images, labels):
        b, h, w = images.shape[0], images.shape[-2], images.shape[-1]
        target = masks.sample_beta(1, alpha=1.0, generator=self.generator)
        boxes = masks.sample_boxes(b, h, w, per_sample=True, generator=self.generator)
        m = masks.boxes_to_masks(boxes, h, w)
        plain = images.as_subclass(torch.Tensor)
        if self.bug == "shifted":
            mixed = torch.where(m[:, None], plain.roll(1, 0).roll(1, -1), plain)
        elif self.bug == "two_partners":
            mixed = masks.paste(plain, m)
            mixed[3, :, 0, 0] = plain[0, :, 0, 0]  # sample 3's partner is 2, not 0
        elif self.bug == "modifies_input":
            mixed = masks.paste(plain, m, inplace=True)
        else:
            mixed = masks.paste(plain, m)
        if self.bug == "dtype":
            mixed = mixed.double()
        lam = masks.mask_fractions(m)
        if self.bug == "sampled_lambda":
            lam = (1 - target).float().expand(b)  # the paper's λ, not the pasted area
        soft = masks.mix_labels(labels, lam, num_classes=self.num_classes)
        return tv_tensors.wrap(mixed, like=images) if isinstance(images, tv_tensors.TVTensor) else mixed, soft


def _inputs(b=6, h=24, w=20):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(1)), torch.arange(b)


def test_the_correct_variant_passes():
    report = check_mix_transform(Variant(6), *_inputs(), num_classes=6)
    assert report.partners == [5, 0, 1, 2, 3, 4] or -1 in report.partners
    assert all(0 <= f <= 1 for f in report.fractions)


@pytest.mark.parametrize(
    ("bug", "match"),
    [
        ("sampled_lambda", r"partner \d: the label weight is .* but the fraction of its pixels is"),
        ("shifted", "matches neither the sample nor any single partner"),
        ("two_partners", "sample 3: the pixel at \\(y=0, x=0\\) matches neither the sample nor any single partner"),
        ("modifies_input", "input images were modified"),
        ("dtype", "output images are torch.float64"),
    ],
)
def test_wrong_variants_are_caught_with_the_sample_and_the_error(bug, match):
    caught = 0
    for seed in range(5):
        try:
            check_mix_transform(Variant(6, bug=bug, seed=seed), *_inputs(), num_classes=6)
        except MixCheckError as error:
            assert "Variant: " in str(error)
            with pytest.raises(MixCheckError, match=match):
                raise error
            caught += 1
    assert caught >= 4


@settings(max_examples=20)
@given(mst.mix_inputs(images=mst.image_batches(batch_sizes=st.integers(2, 8), **image_sides(1, 16))), mst.seeds())
def test_sampled_lambda_variant_is_caught_by_a_property_test(inputs, seed):
    """What a user's property test does: the planted bug is found on generated inputs."""
    images, labels, k = inputs.images, inputs.labels, inputs.num_classes
    if images.shape[-1] * images.shape[-2] < 16:
        return
    variant = Variant(k, bug="sampled_lambda", seed=seed)
    try:  # a box mix: a blend by a small weight would round to the unmixed pixels of low-precision dtypes
        check_mix_transform(variant, images, labels, num_classes=k, kinds=("none", "paste"))
    except MixCheckError:
        return
    # Rarely the sampled value equals the measured fraction within tolerance for every sample.
    lam = 1 - float(masks.sample_beta(1, generator=torch.Generator().manual_seed(seed))[0])
    report = check_mix_transform(Variant(k, seed=seed), images, labels, num_classes=k)
    assert all(abs(f - lam) < 1e-3 or w != w for f, w in zip(report.fractions, report.label_weights, strict=True))


def test_checker_reports_ambiguous_pixels_as_a_range():
    """uint8 images equal at some pixels: the label weight may lie anywhere in the feasible range."""
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)  # all samples equal: nothing is attributable
    report = check_mix_transform(Variant(3), images, torch.arange(3), num_classes=3, kinds=("none", "paste"))
    assert report.fractions == [0.0] * 3 and any(w > 0 for w in report.label_weights)
    # Equal samples are also a blend of any weight: without kinds, that reading fits too.
    check_mix_transform(Variant(3), images, torch.arange(3), num_classes=3)


@pytest.mark.parametrize(
    ("strategy", "match"),
    [
        (lambda: mst.image_batches(dtypes=[]), "use dtypes=\\[torch.float32\\]"),
        (lambda: mst.image_batches(kinds=["png"]), "kinds must be a non-empty subset"),
        (lambda: mst.labels(batch_size=2, num_classes=0), "num_classes=0 must be >= 1"),
    ],
)
def test_strategies_check_their_arguments(strategy, match):
    @given(strategy())
    def draw_one(value):
        pass

    with pytest.raises(InvalidArgument, match=match):
        draw_one()


@given(mst.image_batches(batch_sizes=st.integers(1, 8), **image_sides(1, 12)), st.data())
def test_image_batches_have_distinct_samples_and_the_asked_layout(images, data):
    assert isinstance(images, (tv_tensors.Image, tv_tensors.Video)) or type(images) is torch.Tensor
    assert images.ndim == (5 if isinstance(images, tv_tensors.Video) else 4)
    first = images.as_subclass(torch.Tensor).select(-3, 0)
    for i in range(images.shape[0]):
        for j in range(i):
            assert (first[i] != first[j]).all()
    labels = data.draw(mst.labels(batch_size=images.shape[0], num_classes=12, soft=True))
    torch.testing.assert_close(labels.sum(1).double(), torch.ones(images.shape[0], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# Tolerances: the label weight must be the pixel fraction to float precision
# ---------------------------------------------------------------------------------------------


class OffByAHundredth(Variant):
    """The correct variant, with every label weight 0.01 away from the pasted fraction."""

    def forward(self, images, labels):
        b, h, w = images.shape[0], images.shape[-2], images.shape[-1]
        boxes = masks.sample_boxes(b, h, w, per_sample=True, generator=self.generator)
        m = masks.boxes_to_masks(boxes, h, w)
        lam = m.flatten(1).double().mean(1)
        lam = torch.where(lam <= 0.5, lam + 0.01, lam - 0.01)
        return masks.paste(images, m), masks.mix_labels(labels, lam, num_classes=self.num_classes)


@pytest.mark.parametrize("seed", range(6))
def test_a_label_weight_off_by_a_hundredth_is_caught(seed):
    with pytest.raises(MixCheckError, match="label weight"):
        check_mix_transform(OffByAHundredth(6, seed=seed), *_inputs(), num_classes=6)
    check_mix_transform(Variant(6, seed=seed), *_inputs(), num_classes=6)  # the same without the offset passes


# ---------------------------------------------------------------------------------------------
# Ambiguous pixels: the label weight may be anywhere in the feasible range, and nowhere else
# ---------------------------------------------------------------------------------------------


class PasteAll:
    """Every sample takes all pixels of sample i - 1, with the given label weights (a full-image paste)."""

    def __init__(self, weights):
        self.weights = weights

    def __call__(self, images, labels):
        b, k = images.shape[0], 4
        out = torch.stack([images[(i - 1) % b] for i in range(b)])
        soft = torch.zeros(b, k, dtype=torch.float64)
        for i in range(b):
            soft[i, int(labels[i])] += 1 - self.weights[i]
            soft[i, int(labels[(i - 1) % b])] += self.weights[i]
        return out, soft.float()


def _half_equal_images():
    """Two samples equal in the left 3 of 8 columns, different in the other 5."""
    images = torch.rand(2, 3, 6, 8, generator=torch.Generator().manual_seed(0))
    images[1, :, :, :3] = images[0, :, :, :3]
    return images


def test_the_ambiguous_range_is_what_plain_counting_gives():
    images = _half_equal_images()
    differ = equal = 0
    for y in range(6):
        for x in range(8):
            if all(images[0, c, y, x] == images[1, c, y, x] for c in range(3)):
                equal += 1
            else:
                differ += 1
    low, high = differ / 48, (differ + equal) / 48
    assert (low, high) == (30 / 48, 1.0)
    for w in (low, (low + high) / 2, high):
        report = check_mix_transform(PasteAll([w, w]), images, torch.tensor([0, 1]), num_classes=4)
        assert report.fractions == [low, low] and report.partners == [1, 0]
        assert report.label_weights == pytest.approx([w, w], abs=1e-6)
    for w in (low - 0.02, low - 0.1):
        with pytest.raises(MixCheckError, match=r"fraction of its pixels is in \[0.625, 1\]"):
            check_mix_transform(PasteAll([w, w]), images, torch.tensor([0, 1]), num_classes=4)


# ---------------------------------------------------------------------------------------------
# Input structures: masks move with the pixels, pass-through values come back unchanged
# ---------------------------------------------------------------------------------------------


def _left_columns(b, h, w, generator):
    """Per sample, a box of the first n columns (1 <= n < w), drawn by a plain loop."""
    m = torch.zeros(b, h, w, dtype=torch.bool)
    for i in range(b):
        n = int(torch.randint(1, max(w, 2), (1,), generator=generator))
        m[i, :, :n] = True
    return m


class DictMix:
    """A user's mix of ``{"image", "mask", "labels", ...}``, written with plain loops; ``bug`` plants one mistake."""

    def __init__(self, bug=None, seed=0):
        self.bug, self.generator = bug, torch.Generator().manual_seed(seed)

    def __call__(self, sample):
        x, seg, y = sample["image"], sample["mask"], sample["labels"]
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        m = _left_columns(b, h, w, self.generator)
        out_x, out_seg = x.clone(), seg.clone()
        for i in range(b):
            j = (i - 1) % b
            j_mask = (i - 2) % b if self.bug == "mask_from_another_sample" else j
            out_x[i][..., m[i]] = x[j][..., m[i]]
            if self.bug != "mask_not_mixed":
                shifted = m[i].roll(1, -1) if self.bug == "mask_shifted" else m[i]
                out_seg[i][..., shifted] = seg[j_mask][..., shifted]
        soft = torch.zeros(b, 5)
        for i in range(b):
            lam = float(m[i].sum()) / (h * w)
            soft[i, int(y[i])] += 1 - lam
            soft[i, int(y[(i - 1) % b])] += lam
        out = {**sample, "image": out_x, "mask": out_seg, "labels": soft}
        if self.bug == "index_changed":
            out["index"] = sample["index"] + 1
        if self.bug == "index_dropped":
            del out["index"]
        if self.bug == "path_changed":
            out["path"] = [*sample["path"][:-1], "other.png"]
        return out


def _sample(channel_dim=False, b=4, h=6, w=7):
    g = torch.Generator().manual_seed(3)
    seg = torch.randint(0, 3, (b, 1, h, w) if channel_dim else (b, h, w), generator=g)
    return {
        "image": tv_tensors.Image(torch.rand(b, 3, h, w, generator=g)),
        "mask": tv_tensors.Mask(seg),
        "labels": torch.tensor([0, 1, 2, 3])[:b],
        "index": torch.arange(b),
        "path": [f"{i}.png" for i in range(b)],
        "meta": {"epoch": 1},
    }


@pytest.mark.parametrize("channel_dim", [False, True])
def test_a_correct_dict_mix_passes_with_the_report_of_plain_counting(channel_dim):
    sample = _sample(channel_dim)
    report = check_mix_transform(DictMix(seed=5), sample, num_classes=5, require_pairing="previous")
    m = _left_columns(4, 6, 7, torch.Generator().manual_seed(5))
    assert report.kinds == ["paste"] * 4 and report.partners == [3, 0, 1, 2]
    assert report.fractions == [float(m[i].sum()) / 42 for i in range(4)]
    assert report.outputs["path"] == sample["path"] and isinstance(report.images, tv_tensors.Image)


@pytest.mark.parametrize("channel_dim", [False, True])
@pytest.mark.parametrize("bug", ["mask_not_mixed", "mask_shifted", "mask_from_another_sample"])
def test_masks_that_do_not_move_with_the_image_pixels_are_caught(bug, channel_dim):
    sample = _sample(channel_dim)
    # Mask ids differ between samples where the planted mistake shows: make every id unique.
    sample["mask"] = tv_tensors.Mask(sample["mask"] + 10 * torch.arange(4).reshape(4, *[1] * (sample["mask"].ndim - 1)))
    with pytest.raises(MixCheckError, match=r"output\['mask'\] does not move with the image pixels"):
        check_mix_transform(DictMix(bug=bug, seed=5), sample, num_classes=5)


@pytest.mark.parametrize(
    ("bug", "match"),
    [
        ("index_changed", r"output\['index'\] is a pass-through value, but it came back changed"),
        ("path_changed", r"output\['path'\]\[3\] is a pass-through value"),
        ("index_dropped", "output has the keys"),
    ],
)
def test_pass_through_values_must_come_back_unchanged(bug, match):
    with pytest.raises(MixCheckError, match=match):
        check_mix_transform(DictMix(bug=bug), _sample(), num_classes=5)


def test_the_callers_structure_and_pass_through_tensors_must_be_left_alone():
    def writes_back(sample):
        out = DictMix()(sample)
        sample["image"] = out["image"]
        return out

    def bumps_the_index(sample):
        out = DictMix()(sample)
        sample["index"].add_(1)
        return out

    with pytest.raises(MixCheckError, match="the input structure was modified"):
        check_mix_transform(writes_back, _sample(), num_classes=5)
    with pytest.raises(MixCheckError, match=r"input\['index'\] was modified"):
        check_mix_transform(bumps_the_index, _sample(), num_classes=5)


@pytest.mark.parametrize("sequence", [tuple, list])
def test_a_sequence_must_come_back_as_the_same_kind_of_sequence(sequence):
    images, labels = _inputs()
    report = check_mix_transform(CutMix(num_classes=6), sequence([images, labels]), num_classes=6)
    assert type(report.outputs) is sequence

    def swapped(inputs):
        out = CutMix(num_classes=6)(inputs)
        return list(out) if isinstance(out, tuple) else tuple(out)

    other = "list" if sequence is tuple else "tuple"
    with pytest.raises(MixCheckError, match=f"output is a {other}, expected a {sequence.__name__} as in the input"):
        check_mix_transform(swapped, sequence([images, labels]), num_classes=6)
    # Two arguments come back as a tuple or a list, either is fine.
    check_mix_transform(lambda x, y: sequence(CutMix(num_classes=6)(x, y)), images, labels, num_classes=6)


# ---------------------------------------------------------------------------------------------
# Options: require_mixing, require_pairing, label_rule, kinds
# ---------------------------------------------------------------------------------------------


def _one_hot_labels(images, labels, k=6):
    soft = torch.zeros(len(labels), k)
    for i, c in enumerate(labels.tolist()):
        soft[i, c] = 1.0
    return images.clone(), soft


def test_require_mixing_fails_a_transform_that_never_mixes():
    report = check_mix_transform(_one_hot_labels, *_inputs(), num_classes=6)
    assert report.kinds == ["none"] * 6 and report.partners == [-1] * 6
    with pytest.raises(MixCheckError, match="require_mixing: no sample of the batch of 6 was mixed"):
        check_mix_transform(_one_hot_labels, *_inputs(), num_classes=6, require_mixing=True)
    check_mix_transform(Variant(6, seed=1), *_inputs(), num_classes=6, require_mixing=True)


class NextPartner:
    """Pastes the left columns of sample i + 1 (not i - 1) onto sample i."""

    def __call__(self, images, labels):
        b, w = images.shape[0], images.shape[-1]
        out, soft = images.clone(), torch.zeros(b, 6)
        for i in range(b):
            out[i, ..., : w // 2] = images[(i + 1) % b, ..., : w // 2]
            lam = (w // 2) / w
            soft[i, int(labels[i])] += 1 - lam
            soft[i, int(labels[(i + 1) % b])] += lam
        return out, soft


def test_require_pairing_names_the_partner_it_wanted():
    images, labels = _inputs()
    report = check_mix_transform(NextPartner(), images, labels, num_classes=6)
    assert report.partners == [1, 2, 3, 4, 5, 0]
    check_mix_transform(NextPartner(), images, labels, num_classes=6, require_pairing=[1, 2, 3, 4, 5, 0])
    with pytest.raises(
        MixCheckError,
        match=r"sample 0: its 240 pasted pixels come from sample 1, but require_pairing"
        r" requires partner 5",
    ):
        check_mix_transform(NextPartner(), images, labels, num_classes=6, require_pairing="previous")
    check_mix_transform(Variant(6), images, labels, num_classes=6, require_pairing="previous")


def test_require_pairing_accepts_samples_whose_partner_cannot_be_named():
    """Equal samples: the pasted pixels are also the sample's own, so any pairing fits."""
    images = torch.zeros(6, 3, 5, 5)
    check_mix_transform(
        NextPartner(), images, torch.zeros(6, dtype=torch.int64), num_classes=6, require_pairing="previous"
    )


@pytest.mark.parametrize("rule", ["one_hot", "complete"])
def test_label_rules_other_than_the_area(rule):
    images, labels = _inputs()
    caught_by_area = 0
    for seed in range(6):
        mix = CutMix(num_classes=6, label_rule=rule, per_sample=True, generator=torch.Generator().manual_seed(seed))
        report = check_mix_transform(mix, images, labels, num_classes=6, label_rule=rule)
        for f, w in zip(report.fractions, report.label_weights, strict=True):
            assert w == pytest.approx((1.0 if f > 0.5 else 0.0) if rule == "one_hot" else 0.5, abs=1e-6)
        mix = CutMix(num_classes=6, label_rule=rule, per_sample=True, generator=torch.Generator().manual_seed(seed))
        try:
            check_mix_transform(mix, images, labels, num_classes=6)
        except MixCheckError as error:
            assert "the fraction of its pixels is" in str(error)
            caught_by_area += 1
    assert caught_by_area == 6


def test_a_callable_label_rule_and_the_named_one_agree():
    images, labels = _inputs()

    def one_hot(fraction, mixed):
        return 1.0 if fraction > 0.5 else 0.0

    for seed in range(4):
        for rule in ("one_hot", one_hot):
            mix = CutMix(
                num_classes=6, label_rule="one_hot", per_sample=True, generator=torch.Generator().manual_seed(seed)
            )
            check_mix_transform(mix, images, labels, num_classes=6, label_rule=rule)
    mix = CutMix(num_classes=6, label_rule="one_hot", per_sample=True, generator=torch.Generator().manual_seed(0))
    with pytest.raises(MixCheckError, match="the label rule gives"):
        check_mix_transform(mix, images, labels, num_classes=6, label_rule=lambda f, mixed: 0.5 if mixed else 0.0)


# ---------------------------------------------------------------------------------------------
# Blends (MixUp) and per-sample switches (RandomMix)
# ---------------------------------------------------------------------------------------------


class Blend:
    """MixUp written out: out[i] = (1 - w_i) x_i + w_i x_{i-1}, rounded to the nearest for integer dtypes.

    ``bug`` plants one mistake: a label weight 0.01 off, a weight that varies by pixel, a third
    sample in the blend, rounding down, or a box pasted on top of the blend.
    """

    def __init__(self, weights, bug=None):
        self.weights, self.bug = weights, bug

    def __call__(self, images, labels):
        b = images.shape[0]
        x = images.as_subclass(torch.Tensor).double()
        out = torch.empty_like(x)
        for i in range(b):
            w = self.weights[i]
            if self.bug == "per_pixel":
                w = w + 0.05 * torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(i))
            out[i] = (1 - w) * x[i] + w * x[(i - 1) % b]
            if self.bug == "three_samples":
                out[i] = (1 - w) * x[i] + w / 2 * x[(i - 1) % b] + w / 2 * x[(i - 2) % b]
            if self.bug == "pasted_too":
                out[i, ..., :2, :2] = x[(i - 1) % b, ..., :2, :2]
        if not images.dtype.is_floating_point:
            out = out.floor() if self.bug == "rounded_down" else out.round()
        out = out.to(images.dtype)
        if isinstance(images, tv_tensors.TVTensor):
            out = tv_tensors.wrap(out, like=images)
        soft = torch.zeros(b, 6, dtype=torch.float64)
        for i in range(b):
            lw = self.weights[i] + (0.01 if self.bug == "label_off" else 0.0)
            soft[i, int(labels[i])] += 1 - lw
            soft[i, int(labels[(i - 1) % b])] += lw
        return out, soft.float()


def _blend_inputs(dtype, b=6):
    g = torch.Generator().manual_seed(7)
    if dtype.is_floating_point:
        return torch.rand(b, 3, 10, 9, generator=g).to(dtype), torch.arange(b)
    return torch.randint(0, 256, (b, 3, 10, 9), generator=g).to(dtype), torch.arange(b)


BLEND_DTYPES = [torch.uint8, torch.int16, torch.float16, torch.bfloat16, torch.float32, torch.float64]
WEIGHTS = [0.3, 0.05, 0.5, 0.77, 0.999, 0.42]


@pytest.mark.parametrize("dtype", BLEND_DTYPES)
def test_a_correct_blend_passes_with_its_weights(dtype):
    report = check_mix_transform(Blend(WEIGHTS), *_blend_inputs(dtype), num_classes=6, require_pairing="previous")
    assert report.kinds == ["blend"] * 6 and report.partners == [5, 0, 1, 2, 3, 4]
    assert report.fractions == pytest.approx(WEIGHTS, abs=0.01)
    assert report.label_weights == pytest.approx(WEIGHTS, abs=1e-6)
    with pytest.raises(MixCheckError, match=r"kinds=\('none', 'paste'\)"):
        check_mix_transform(Blend(WEIGHTS), *_blend_inputs(dtype), num_classes=6, kinds=("none", "paste"))


@pytest.mark.parametrize("dtype", BLEND_DTYPES)
@pytest.mark.parametrize("bug", ["label_off", "per_pixel", "three_samples", "pasted_too"])
def test_wrong_blends_are_caught(dtype, bug):
    with pytest.raises(MixCheckError, match="As a blend with one partner"):
        check_mix_transform(Blend(WEIGHTS, bug=bug), *_blend_inputs(dtype), num_classes=6)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16])
def test_integer_blends_rounded_down_are_caught(dtype):
    with pytest.raises(MixCheckError, match="As a blend with one partner"):
        check_mix_transform(Blend(WEIGHTS, bug="rounded_down"), *_blend_inputs(dtype), num_classes=6)


def test_a_blend_cannot_carry_segmentation_masks():
    images, labels = _blend_inputs(torch.float32)

    def blend_dict(sample):
        out_images, out_labels = Blend(WEIGHTS)(sample["image"], sample["labels"])
        return {**sample, "image": out_images, "labels": out_labels}

    sample = {"image": tv_tensors.Image(images), "mask": tv_tensors.Mask(torch.zeros(6, 10, 9)), "labels": labels}
    with pytest.raises(MixCheckError, match="a segmentation mask cannot follow a blend"):
        check_mix_transform(blend_dict, sample, num_classes=6)


def test_a_per_sample_switch_reports_the_kind_of_each_sample():
    """RandomMix-like: even samples get a box pasted, odd ones a blend; the expected kinds by hand."""
    images, labels = _blend_inputs(torch.uint8)
    box = torch.zeros(10, 9, dtype=torch.bool)
    box[2:7, 1:4] = True

    def switch(images, labels):
        blended, soft = Blend(WEIGHTS)(images, labels)
        out = blended.clone()
        for i in range(0, 6, 2):
            out[i] = torch.where(box, images[i - 1], images[i])
            soft[i] = 0
            soft[i, int(labels[i])] = 1 - 15 / 90
            soft[i, int(labels[i - 1])] = 15 / 90
        return out, soft

    report = check_mix_transform(switch, images, labels, num_classes=6, require_pairing="previous")
    assert report.kinds == ["paste", "blend"] * 3
    assert report.fractions[::2] == [15 / 90] * 3


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------


def _layout(case):
    """What a structure holds, read back by hand: (images, labels, mask, extras, call args)."""
    x, y, m, extras = case.images, case.labels, case.masks, case.extras
    return {
        "args": (x, y),
        "tuple": ((x, y),),
        "list": ([x, y],),
        "dict": ({"image": x, "labels": y, **extras},),
        "dict+mask": ({"image": x, "mask": m, "labels": y, **extras},),
        "tuple+dict": ((x, {"labels": y, **extras}),),
        "segmentation": ({"image": x, "mask": m, **extras},),
    }[case.structure]


def _same_tree(a, b):
    if isinstance(a, torch.Tensor):
        return a is b
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same_tree(x, z) for x, z in zip(a, b, strict=True))
    return a == b


@given(mst.mix_inputs(images=mst.image_batches(**image_sides(1, 10)), structure=st.sampled_from(mst.STRUCTURES)))
def test_mix_inputs_build_the_structure_they_name(case):
    assert _same_tree(case.args, _layout(case))
    b, h, w = case.images.shape[0], case.images.shape[-2], case.images.shape[-1]
    if case.structure == "segmentation":
        assert case.labels is None
    else:
        assert case.labels.shape[0] == b
    if "mask" in case.structure or case.structure == "segmentation":
        assert isinstance(case.masks, tv_tensors.Mask)
        assert tuple(case.masks.shape) in ((b, h, w), (b, 1, h, w))
    else:
        assert case.masks is None
    if case.structure in ("args", "tuple", "list"):
        assert case.extras == {}


@given(
    mst.image_batches(
        dtypes=st.sampled_from([torch.int16, torch.float64]),
        kinds=st.just("video"),
        batch_sizes=st.sampled_from([1, 3]),
        heights=st.just(5),
        widths=st.integers(2, 3),
        channels=st.just(2),
        frames=st.just(4),
    )
)
def test_image_batches_draw_from_the_strategies_given(images):
    assert isinstance(images, tv_tensors.Video) and images.dtype in (torch.int16, torch.float64)
    assert images.shape[0] in (1, 3) and images.shape[1:4] == (4, 2, 5) and images.shape[4] in (2, 3)


@given(st.data())
def test_a_drawn_case_checks_with_its_own_num_classes(data):
    case = data.draw(
        mst.mix_inputs(
            images=mst.image_batches(**image_sides(1, 8)),
            num_classes=st.just(7),
            labels=functools.partial(mst.labels, soft=False),
        )
    )
    report = check_mix_transform(CutMix(num_classes=7), case)
    assert report.labels is None or report.labels.shape[1] == 7
    clone = case.clone()
    assert _same_tree(clone.args, _layout(clone)) and clone.images is not case.images


@pytest.mark.parametrize(
    ("strategy", "match"),
    [
        (lambda: mst.image_batches(kinds=st.just("png")), "kinds drew 'png'"),
        (lambda: mst.image_batches(dtypes=st.just(torch.bool)), "dtypes drew torch.bool"),
        (lambda: mst.image_batches(heights=st.just(0)), "heights drew 0"),
        (lambda: mst.image_batches(batch_sizes=[1, 2]), "batch_sizes must be a strategy"),
        (lambda: mst.mix_inputs(structure=st.just("nested")), "structure drew 'nested'"),
        (lambda: mst.mix_inputs(extras=lambda **_: st.just({"labels": 1}), structure=st.just("dict")), "extras drew"),
        (lambda: mst.mix_inputs(num_classes=st.just(0)), "num_classes drew 0"),
    ],
)
def test_strategy_arguments_are_checked(strategy, match):
    @given(strategy())
    def draw_one(value):
        pass

    with pytest.raises(InvalidArgument, match=match):
        draw_one()


# ---------------------------------------------------------------------------------------------
# What the messages say (a user reads them when a variant is wrong)
# ---------------------------------------------------------------------------------------------


def test_a_failure_says_nothing_of_the_kinds_the_user_excluded():
    images, labels = _inputs()
    with pytest.raises(MixCheckError) as info:
        check_mix_transform(Variant(6, bug="sampled_lambda"), images, labels, num_classes=6, kinds=("none", "paste"))
    assert "the label weight is" in str(info.value) and "blend" not in str(info.value)
    x, y = _blend_inputs(torch.float32)
    with pytest.raises(MixCheckError) as info:
        check_mix_transform(Blend([0.3] * 6, bug="label_off"), x, y, num_classes=6, kinds=("none", "blend"))
    assert "As a blend" in str(info.value)
    assert "pixel at" not in str(info.value) and "fraction of its pixels" not in str(info.value)
    # ... but a sample of an excluded kind is named as one
    with pytest.raises(MixCheckError, match=r"it is a blend with weight 0\.3, but kinds=\('none', 'paste'\)"):
        check_mix_transform(Blend([0.3] * 6), x, y, num_classes=6, kinds=("none", "paste"))


@pytest.mark.parametrize(("given", "assumed"), [(0.1, 0.0), (0.0, 0.1), (0.25, 0.1)])
@pytest.mark.parametrize("mix", ["paste", "blend"])
def test_a_label_smoothing_mismatch_is_named_with_the_smoothing_found(given, assumed, mix):
    from torchvision_mix import MixUp

    images, labels = _inputs()
    make = CutMix if mix == "paste" else MixUp
    transform = make(num_classes=6, label_smoothing=given, generator=torch.Generator().manual_seed(0))
    with pytest.raises(
        MixCheckError,
        match=rf"It is one .*with label_smoothing={given:g}, but the check assumes "
        rf"label_smoothing={assumed:g}: pass the transform's label_smoothing",
    ):
        check_mix_transform(transform, images, labels, num_classes=6, label_smoothing=assumed)
    transform = make(num_classes=6, label_smoothing=given, generator=torch.Generator().manual_seed(0))
    check_mix_transform(transform, images, labels, num_classes=6, label_smoothing=given)


def test_a_transform_that_is_not_inplace_fails_an_inplace_check():
    images, labels = _inputs()
    with pytest.raises(MixCheckError, match="inplace: the output images are not the input tensor"):
        check_mix_transform(CutMix(num_classes=6), images, labels, num_classes=6, inplace=True)
    check_mix_transform(CutMix(num_classes=6, inplace=True), images.clone(), labels, num_classes=6, inplace=True)


def test_the_default_labels_getters_prefer_an_exact_labels_key_over_other_label_keys():
    """Library and kit alike: ``labels`` wins over ``label_ids`` even when ``label_ids`` comes first."""
    images, labels = _inputs()
    ids = torch.arange(6) + 100  # not class indices of 6 classes: taken for the labels, they would fail
    sample = {"image": tv_tensors.Image(images), "label_ids": ids, "labels": labels}
    out = CutMix(num_classes=6)(sample)
    assert out["label_ids"] is ids and out["labels"].shape == (6, 6)
    report = check_mix_transform(CutMix(num_classes=6), sample, num_classes=6)
    assert report.labels.shape == (6, 6)

    def swaps_the_two(inputs):  # mixes the labels, and hands back label_ids in the place of labels
        out = CutMix(num_classes=6)(inputs)
        return {**out, "labels": out["label_ids"], "label_ids": out["labels"]}

    with pytest.raises(MixCheckError):
        check_mix_transform(swaps_the_two, sample, num_classes=6)


def test_the_strategies_without_hypothesis_say_which_install_brings_it():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "try:\n"
        "    import torchvision_mix.testing.strategies\n"
        "except ImportError as error:\n"
        "    print(error)\n"
        "import torchvision_mix.testing  # the checker needs no Hypothesis\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "torchvision-mix[test]"' in out
