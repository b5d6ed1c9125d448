"""CutMix: the invariants as properties, and the contract torchvision checks for its transforms."""

import pickle

import pytest
import torch
from helpers import foreign_masks, image_sides, is_one_rectangle
from hypothesis import given
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.transforms import v2

from torchvision_mix import CutMix, masks
from torchvision_mix.testing import check_mix_transform
from torchvision_mix.testing import strategies as mst

alphas = st.sampled_from([0.1, 0.5, 1.0, 2.0, 10.0])


def make(seed=0, **kwargs):
    return CutMix(generator=torch.Generator().manual_seed(seed), **kwargs)


@given(mst.mix_inputs(), alphas, st.booleans(), st.booleans(), mst.seeds(), st.floats(0.0, 1.0))
def test_cutmix_invariants(inputs, alpha, per_sample, inplace, seed, eps):
    """Pixels come from the sample or its partner; label weights equal pixel fractions exactly."""
    images, labels, k = inputs.images, inputs.labels, inputs.num_classes
    eps = round(eps * 0.5, 3)
    cutmix = make(seed, alpha=alpha, num_classes=k, per_sample=per_sample, inplace=inplace, label_smoothing=eps)
    before = images.clone()
    report = check_mix_transform(cutmix, images, labels, num_classes=k, label_smoothing=eps, inplace=inplace)
    out = report.images
    # The partner of sample i is sample i - 1, and the pasted region is one rectangle.
    b = images.shape[0]
    foreign = foreign_masks(out, before)
    for i in range(b):
        assert report.partners[i] in (-1, (i - 1) % b)
        assert is_one_rectangle(foreign[i])
    if not per_sample and b > 1:
        assert all(torch.equal(foreign[i], foreign[0]) for i in range(b))  # one box for the batch
    if out.ndim == 4:
        cl = torch.channels_last
        assert out.is_contiguous(memory_format=cl) == before.is_contiguous(memory_format=cl)


@given(mst.mix_inputs(images=mst.image_batches(kinds=("image",), dtypes=[torch.float32])), st.booleans(), mst.seeds())
def test_inplace_gives_the_same_result_as_a_new_batch(inputs, per_sample, seed):
    images, labels, k = inputs.images, inputs.labels, inputs.num_classes
    new_images, new_labels = make(seed, num_classes=k, per_sample=per_sample)(images, labels)
    out_images, out_labels = make(seed, num_classes=k, per_sample=per_sample, inplace=True)(images, labels)
    assert out_images is images
    assert torch.equal(images, new_images) and torch.equal(out_labels, new_labels)


@given(mst.mix_inputs(images=mst.image_batches(**image_sides(1, 16))), mst.seeds(), st.booleans())
def test_same_generator_seed_same_mix(inputs, seed, per_sample):
    images, labels, k = inputs.images, inputs.labels, inputs.num_classes
    a = make(seed, num_classes=k, per_sample=per_sample)(images, labels)
    b = make(seed, num_classes=k, per_sample=per_sample)(images, labels)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_different_seeds_give_different_boxes():
    images, labels = torch.rand(4, 3, 64, 64), torch.arange(4)
    outs = [make(seed, num_classes=4)(images, labels)[1] for seed in range(5)]
    assert len({tuple(o[:, 0].tolist()) for o in outs}) == 5


def test_per_sample_draws_a_box_per_sample():
    images = torch.rand(16, 3, 32, 32)
    out, _ = make(3, num_classes=2, per_sample=True)(images, torch.zeros(16, dtype=torch.int64))
    foreign = foreign_masks(out, images)
    assert len({tuple(f.nonzero().min(0).values.tolist()) for f in foreign if f.any()}) > 8


def test_lambda_is_the_clipped_area_not_the_sampled_number():
    """With alpha=10 boxes are about 70% of the side; near borders clipping shrinks them."""
    images = torch.rand(2, 1, 10, 10)
    for seed in range(30):
        out, lab = make(seed, num_classes=2, alpha=10.0)(images, torch.tensor([0, 1]))
        fraction = float(foreign_masks(out, images)[0].double().mean())
        assert abs(float(lab[0, 1]) - fraction) < 1e-6


def test_p_zero_returns_the_images_and_one_hot_labels():
    images = tv_tensors.Image(torch.rand(3, 3, 8, 8))
    out, lab = make(num_classes=4, p=0.0)(images, torch.tensor([0, 3, 1]))
    assert out is images
    assert torch.equal(lab, torch.eye(4)[[0, 3, 1]])


@pytest.mark.parametrize("per_sample", [False, True])
def test_p_is_the_mixing_probability(per_sample):
    cutmix = make(7, num_classes=2, p=0.3, per_sample=per_sample, alpha=2.0)
    mixed = 0
    total = 0
    for _ in range(200):
        images = torch.rand(5, 1, 16, 16)
        out, _ = cutmix(images, torch.zeros(5, dtype=torch.int64))
        changed = foreign_masks(out, images).flatten(1).any(1)
        mixed += int(changed.sum()) if per_sample else int(changed.any()) * 5
        total += 5
    assert 0.22 < mixed / total < 0.38


def test_batch_of_one_comes_out_unchanged():
    images = torch.rand(1, 3, 9, 7)
    out, lab = make(num_classes=3)(images, torch.tensor([2]))
    assert torch.equal(out, images)
    torch.testing.assert_close(lab, torch.tensor([[0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("batch", [0, 1, 3, 5])
def test_odd_and_tiny_batches(batch):
    images, labels = torch.rand(batch, 3, 8, 8), torch.zeros(batch, dtype=torch.int64)
    for per_sample in (False, True):
        out, lab = make(num_classes=2, per_sample=per_sample)(images, labels)
        assert out.shape == images.shape and lab.shape == (batch, 2)


def test_video_gets_the_same_box_on_every_frame():
    video = tv_tensors.Video(torch.rand(4, 5, 3, 20, 30))
    out, _ = make(1, num_classes=2, per_sample=True)(video, torch.zeros(4, dtype=torch.int64))
    assert isinstance(out, tv_tensors.Video)
    diff = out.as_subclass(torch.Tensor) != video.as_subclass(torch.Tensor)
    per_frame = diff.any(dim=2)  # (B, T, H, W)
    assert all(torch.equal(per_frame[:, t], per_frame[:, 0]) for t in range(5))


def test_segmentation_masks_follow_the_images():
    images = tv_tensors.Image(torch.rand(4, 3, 16, 16))
    seg = tv_tensors.Mask(torch.arange(4).repeat_interleave(256).reshape(4, 16, 16))
    out = make(2, num_classes=4, per_sample=True)({"image": images, "mask": seg, "labels": torch.arange(4)})
    assert isinstance(out["mask"], tv_tensors.Mask)
    pasted = foreign_masks(out["image"], images)
    assert torch.equal(out["mask"] != seg, pasted)
    assert torch.equal(out["mask"].as_subclass(torch.Tensor), torch.where(pasted, seg.roll(1, 0), seg))


def test_matches_torchvision_label_convention():
    """torchvision's own CutMix passes our black-box checker: the same convention, to the pixel."""
    images, labels = torch.rand(6, 3, 32, 32), torch.arange(6)
    torch.manual_seed(0)
    check_mix_transform(v2.CutMix(num_classes=6), images, labels, num_classes=6)
    torch.manual_seed(0)
    check_mix_transform(CutMix(num_classes=6), images, labels, num_classes=6)


# ---------------------------------------------------------------------------------------------
# The contract torchvision checks for its own transforms
# ---------------------------------------------------------------------------------------------


def test_pickle_round_trip_keeps_settings_and_random_state():
    cutmix = make(5, alpha=0.7, num_classes=3, per_sample=True, p=0.9, label_smoothing=0.1)
    clone = pickle.loads(pickle.dumps(cutmix))
    assert repr(clone) == repr(cutmix)
    images, labels = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    a, b = cutmix(images, labels), clone(images, labels)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_repr_shows_the_constructor_arguments():
    r = repr(CutMix(alpha=0.5, num_classes=10, p=0.5))
    assert r.startswith("CutMix(") and "alpha=0.5" in r and "num_classes=10" in r and "p=0.5" in r


@pytest.mark.parametrize("structure", ["args", "tuple", "list", "dict", "nested"])
def test_input_structures_are_kept_and_other_leaves_untouched(structure):
    images = tv_tensors.Image(torch.rand(4, 3, 8, 8))
    labels = torch.tensor([0, 1, 2, 3])
    extra = torch.rand(4, 2)  # a plain tensor that is neither images nor labels
    cutmix = make(num_classes=4)
    if structure == "args":
        out = cutmix(images, labels)
        assert isinstance(out, tuple) and len(out) == 2
        out_images, out_labels = out
    elif structure == "tuple":
        out = cutmix((images, labels, extra))
        assert isinstance(out, tuple) and out[2] is extra
        out_images, out_labels = out[0], out[1]
    elif structure == "list":
        out = cutmix([images, labels])
        assert isinstance(out, list)
        out_images, out_labels = out
    elif structure == "dict":
        out = cutmix({"image": images, "labels": labels, "extra": extra, "name": "x"})
        assert list(out) == ["image", "labels", "extra", "name"]
        assert out["extra"] is extra and out["name"] == "x"
        out_images, out_labels = out["image"], out["labels"]
    else:
        out = cutmix((images, {"Labels": labels, "meta": [1, 2]}))
        assert out[1]["meta"] == [1, 2]
        out_images, out_labels = out[0], out[1]["Labels"]
    assert isinstance(out_images, tv_tensors.Image) and out_labels.shape == (4, 4)


def test_plain_tensor_labels_first_in_a_dict_are_not_taken_for_images():
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    out = make(num_classes=4)({"labels": labels, "image": images})
    assert out["image"].shape == images.shape and out["labels"].shape == (4, 4)


def test_custom_labels_getter_and_no_labels():
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    out = make(num_classes=4, labels_getter=lambda inputs: inputs["target"])({"img": images, "target": labels})
    assert out["target"].shape == (4, 4)
    only = make(labels_getter=None)(images)
    assert only.shape == images.shape and not torch.equal(only, images)


def test_inside_compose_and_random_choice_with_torchvision_mixup():
    images, labels = tv_tensors.Image(torch.rand(6, 3, 16, 16)), torch.arange(6)
    pipeline = v2.Compose([v2.RandomChoice([make(num_classes=6), v2.MixUp(num_classes=6)])])
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        out_images, out_labels = pipeline(images, labels)
        assert isinstance(out_images, tv_tensors.Image) and out_labels.shape == (6, 6)
        torch.testing.assert_close(out_labels.sum(1), torch.ones(6))
        is_cutmix = bool((foreign_masks(out_images, images).flatten(1).all(1) == 0).all())
        seen.add(is_cutmix)
    assert seen == {True, False}
    random_apply = v2.RandomApply([make(num_classes=6)], p=1.0)
    out_images, out_labels = random_apply(images, torch.nn.functional.one_hot(labels, 6).float())
    assert out_labels.shape == (6, 6)


@pytest.mark.parametrize("dtype", mst.IMAGE_DTYPES)
def test_every_image_dtype(dtype):
    images = (torch.rand(4, 3, 8, 8) * 255).to(dtype)
    out, lab = make(num_classes=3)(images, torch.tensor([0, 1, 2, 0]))
    assert out.dtype == dtype and lab.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_soft_label_dtype_is_kept(dtype):
    labels = torch.eye(4, dtype=dtype)
    _, lab = make(num_classes=4)(torch.rand(4, 3, 8, 8), labels)
    assert lab.dtype == dtype


def test_box_from_masks_core_matches_transform():
    """The transform's box is exactly the core's sample_boxes with the same generator stream."""
    images = torch.rand(3, 3, 20, 24)
    out, _ = make(11, num_classes=3)(images, torch.arange(3))
    box = masks.sample_boxes(3, 20, 24, generator=torch.Generator().manual_seed(11))
    assert torch.equal(foreign_masks(out, images), masks.boxes_to_masks(box, 20, 24))


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_no_host_sync_on_the_mixing_path(per_sample, inplace):
    """On the meta device any .item()/.tolist()/.cpu() of a device tensor would raise."""
    images = torch.empty(4, 3, 32, 32, device="meta")
    labels = torch.empty(4, dtype=torch.int64, device="meta")
    out, soft = make(num_classes=3, per_sample=per_sample, inplace=inplace, p=0.7)(images, labels)
    assert out.device.type == "meta" and soft.device.type == "meta" and soft.shape == (4, 3)


def test_images_that_require_grad_stay_differentiable():
    images = torch.rand(3, 3, 8, 8, requires_grad=True)
    out, _ = make(num_classes=3)(images, torch.arange(3))
    out.sum().backward()
    assert images.grad is not None and torch.equal(images.grad, torch.ones_like(images))
