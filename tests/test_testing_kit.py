"""The testing kit: strategies validate their arguments, and the checker catches wrong variants."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from torchvision import tv_tensors
from torchvision.transforms import v2

from torchvision_mix import masks
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
@given(mst.mix_inputs(max_side=16, min_batch_size=2), mst.seeds())
def test_sampled_lambda_variant_is_caught_by_a_property_test(inputs, seed):
    """What a user's property test does: the planted bug is found on generated inputs."""
    images, labels, k = inputs
    if images.shape[-1] * images.shape[-2] < 16:
        return
    variant = Variant(k, bug="sampled_lambda", seed=seed)
    try:
        check_mix_transform(variant, images, labels, num_classes=k)
    except MixCheckError:
        return
    # Rarely the sampled value equals the measured fraction within tolerance for every sample.
    lam = 1 - float(masks.sample_beta(1, generator=torch.Generator().manual_seed(seed))[0])
    report = check_mix_transform(Variant(k, seed=seed), images, labels, num_classes=k)
    assert all(abs(f - lam) < 1e-3 or w != w for f, w in zip(report.fractions, report.label_weights, strict=True))


def test_checker_reports_ambiguous_pixels_as_a_range():
    """uint8 images equal at some pixels: the label weight may lie anywhere in the feasible range."""
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)  # all samples equal: nothing is attributable
    check_mix_transform(Variant(3), images, torch.arange(3), num_classes=3)


@pytest.mark.parametrize(
    ("strategy", "match"),
    [
        (lambda: mst.image_batches(min_batch_size=3, max_batch_size=2), "max_batch_size=2 must be >= min_batch_size=3"),
        (lambda: mst.image_batches(min_side=0), "min_side=0 must be >= 1"),
        (lambda: mst.image_batches(dtypes=[]), "use dtypes=\\[torch.float32\\]"),
        (lambda: mst.image_batches(kinds=["png"]), "kinds must be a non-empty subset"),
        (lambda: mst.labels(batch_size=2, num_classes=0), "num_classes=0 must be >= 1"),
        (lambda: mst.mix_inputs(min_classes=3, max_classes=1), "max_classes=1"),
    ],
)
def test_strategies_check_their_arguments(strategy, match):
    @given(strategy())
    def draw_one(value):
        pass

    with pytest.raises(InvalidArgument, match=match):
        draw_one()


@given(mst.image_batches(max_batch_size=8, max_side=12), st.data())
def test_image_batches_have_distinct_samples_and_the_asked_layout(images, data):
    assert isinstance(images, (tv_tensors.Image, tv_tensors.Video)) or type(images) is torch.Tensor
    assert images.ndim == (5 if isinstance(images, tv_tensors.Video) else 4)
    first = images.as_subclass(torch.Tensor).select(-3, 0)
    for i in range(images.shape[0]):
        for j in range(i):
            assert (first[i] != first[j]).all()
    labels = data.draw(mst.labels(batch_size=images.shape[0], num_classes=12, soft=True))
    torch.testing.assert_close(labels.sum(1).double(), torch.ones(images.shape[0], dtype=torch.float64))
