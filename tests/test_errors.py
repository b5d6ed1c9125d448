"""Bad input: a clear ValueError/TypeError before anything is changed."""

import PIL.Image
import pytest
import torch
from helpers import image_sides
from hypothesis import example, given
from hypothesis import strategies as st
from torchvision import tv_tensors

from torchvision_mix import CutMix, masks
from torchvision_mix.testing import check_mix_transform
from torchvision_mix.testing import strategies as mst


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": 0.0}, ValueError, "alpha must be a finite number > 0, but got 0.0"),
        ({"alpha": -1}, ValueError, "alpha"),
        ({"alpha": float("nan")}, ValueError, "alpha"),
        ({"p": 1.5}, ValueError, r"p must be a probability in \[0, 1\], but got 1.5"),
        ({"p": -0.1}, ValueError, "p must be"),
        ({"num_classes": 0}, ValueError, "num_classes must be an int >= 1"),
        ({"label_smoothing": 1.0}, ValueError, "label_smoothing"),
        ({"labels_getter": "labels"}, ValueError, "labels_getter must be 'default', a callable or None"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CutMix(**kwargs)


def _boolean_options():
    from torchvision_mix import AttentiveCutMix, FMix, GridMix, MaskMix, MixUp, RandomMix, SaliencyMix

    class Mine(MaskMix):
        def make_masks(self, batch):
            return torch.zeros(batch.shape[0], *batch.shape[-2:], dtype=torch.bool)

    extractor = torch.nn.Conv2d(3, 4, 1)
    mixes = {
        "CutMix": CutMix,
        "AttentiveCutMix": lambda **kw: AttentiveCutMix(feature_extractor=extractor, **kw),
        "SaliencyMix": SaliencyMix,
        "FMix": FMix,
        "GridMix": GridMix,
        "MixUp": MixUp,
        "RandomMix": lambda **kw: RandomMix([CutMix()], **kw),
        "MaskMix subclass": Mine,
    }
    cases = [(name, make, option) for name, make in mixes.items() for option in ("per_sample", "inplace")]
    cases += [("AttentiveCutMix", mixes["AttentiveCutMix"], option) for option in ("autocast", "channels_last")]
    cases += [("AttentiveCutMix default", AttentiveCutMix, "normalize")]
    return cases


@pytest.mark.parametrize("bad", ["yes", 1.5, None, 1, 0])
@pytest.mark.parametrize(("name", "make", "option"), _boolean_options(), ids=lambda v: v if isinstance(v, str) else "")
def test_boolean_options_refuse_non_booleans(name, make, option, bad):
    with pytest.raises(TypeError, match=rf"{option} must be True or False, but got {bad!r}"):
        make(**{option: bad})
    make(**{option: True})  # a real bool is taken


@pytest.mark.parametrize("bad", ["yes", None, 1])
def test_feature_extractor_normalize_refuses_non_booleans(bad):
    from torchvision_mix import attention

    with pytest.raises(TypeError, match="normalize must be True or False"):
        attention.feature_extractor("resnet18", weights=None, normalize=bad)


def _cases():
    img = torch.rand(4, 3, 8, 8)
    idx = torch.tensor([0, 1, 2, 3])
    return [
        (
            "unbatched image",
            CutMix(num_classes=4),
            (torch.rand(3, 8, 8), idx),
            ValueError,
            r"expected a batched Tensor of shape \(B, C, H, W\), but got 3 dimensions",
        ),
        (
            "unbatched Image",
            CutMix(num_classes=4),
            (tv_tensors.Image(torch.rand(3, 8, 8)), idx),
            ValueError,
            "batched Image",
        ),
        (
            "4-D video",
            CutMix(num_classes=4),
            (tv_tensors.Video(torch.rand(4, 3, 8, 8)), idx),
            ValueError,
            r"\(B, T, C, H, W\)",
        ),
        (
            "batch mismatch",
            CutMix(num_classes=4),
            (img, torch.tensor([0, 1, 2])),
            ValueError,
            "does not match the batch size of the images: 3 != 4",
        ),
        ("no num_classes", CutMix(), (img, idx), ValueError, "num_classes must be passed"),
        ("label too big", CutMix(num_classes=3), (img, idx), ValueError, r"in \[0, 3\), but got 3"),
        ("negative label", CutMix(num_classes=4), (img, torch.tensor([0, -1, 2, 3])), ValueError, "but got -1"),
        ("float index labels", CutMix(num_classes=4), (img, idx.float()), TypeError, "integer tensor"),
        ("soft width", CutMix(num_classes=5), (img, torch.eye(4)), ValueError, "num_classes=5 columns"),
        ("3-D labels", CutMix(num_classes=4), (img, torch.zeros(4, 4, 1)), ValueError, "soft labels of shape"),
        ("list labels", CutMix(num_classes=4), (img, [0, 1, 2, 3]), ValueError, "second item is a list"),
        (
            "labels getter gives a list",
            CutMix(num_classes=4, labels_getter=lambda x: [0, 1]),
            (img, idx),
            TypeError,
            "labels must be a tensor",
        ),
        ("PIL", CutMix(num_classes=4), (PIL.Image.new("RGB", (8, 8)), idx), TypeError, "PIL"),
        (
            "boxes",
            CutMix(num_classes=4),
            (
                {
                    "image": tv_tensors.Image(img),
                    "boxes": tv_tensors.BoundingBoxes(torch.zeros(4, 4), format="XYXY", canvas_size=(8, 8)),
                    "labels": idx,
                },
            ),
            TypeError,
            "bounding boxes",
        ),
        (
            "keypoints",
            CutMix(num_classes=4),
            (
                {
                    "image": tv_tensors.Image(img),
                    "kp": tv_tensors.KeyPoints(torch.zeros(4, 2), canvas_size=(8, 8)),
                    "labels": idx,
                },
            ),
            TypeError,
            "keypoints",
        ),
        (
            "size mismatch",
            CutMix(num_classes=4),
            ({"image": tv_tensors.Image(img), "mask": tv_tensors.Mask(torch.zeros(4, 7, 8)), "labels": idx},),
            ValueError,
            r"\(4, 8, 8\) != \(4, 7, 8\)",
        ),
        (
            "mask channels",
            CutMix(num_classes=4),
            ({"image": tv_tensors.Image(img), "mask": tv_tensors.Mask(torch.zeros(4, 2, 8, 8)), "labels": idx},),
            ValueError,
            "got 2 channels",
        ),
        ("no batch", CutMix(num_classes=4), ({"labels": idx, "n": 3},), TypeError, "found no batch to mix"),
        ("empty image", CutMix(num_classes=4), (torch.rand(4, 3, 0, 8), idx), ValueError, "at least one pixel"),
        ("no labels key", CutMix(num_classes=4), ({"image": img, "y": idx},), ValueError, "containing 'label'"),
        ("single item", CutMix(num_classes=4), ([img],), ValueError, "length 1"),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("inplace", [False, True])
def test_bad_input_raises_before_changing_anything(case, inplace):
    _, transform, args, error, match = case
    transform.inplace = inplace
    leaves = [a for a in args if isinstance(a, torch.Tensor)]
    leaves += [v for a in args if isinstance(a, dict) for v in a.values() if isinstance(v, torch.Tensor)]
    before = [t.clone() for t in leaves]
    with pytest.raises(error, match=match):
        transform(*args)
    assert all(torch.equal(t, b) for t, b in zip(leaves, before, strict=False))


def test_a_gpu_generator_is_refused_with_the_reason():
    class FakeGenerator(torch.Generator):
        @property
        def device(self):
            return torch.device("cuda")

    with pytest.raises(ValueError, match="must be a CPU torch"):
        CutMix(generator=FakeGenerator())


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: masks.sample_boxes(2, 0, 5), ValueError, "height must be an int >= 1"),
        (lambda: masks.sample_beta(2, alpha=0), ValueError, "alpha must be"),
        (lambda: masks.boxes_to_masks(torch.zeros(2, 3, dtype=torch.long), 4, 4), ValueError, r"\(B, 4\)"),
        (lambda: masks.boxes_to_masks(torch.zeros(2, 4), 4, 4), TypeError, "integer pixel coordinates"),
        (lambda: masks.grid_to_masks(torch.zeros(1, 2, 2), 4, 4), TypeError, "boolean"),
        (lambda: masks.top_k_cells(torch.zeros(1, 2, 2), 5), ValueError, r"in \[0, 4\]"),
        (lambda: masks.mask_fractions(torch.zeros(2, 3)), ValueError, "boolean tensor of shape"),
        (
            lambda: masks.paste(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.bool)),
            ValueError,
            r"\(2, 4, 4\)",
        ),
        (lambda: masks.mix_labels(torch.tensor([0, 1]), torch.zeros(3), num_classes=2), ValueError, r"\(2,\)"),
    ],
)
def test_mask_core_rejects_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


junk = st.one_of(
    st.none(),
    st.integers(),
    st.lists(st.integers(0, 3), max_size=4),
    st.builds(
        lambda shape, d: torch.zeros(shape, dtype=d),
        st.lists(st.integers(0, 5), max_size=5).map(tuple),
        st.sampled_from([torch.int64, torch.float32, torch.uint8, torch.bool]),
    ),
)


@given(
    images=junk,
    labels=junk,
    num_classes=st.one_of(st.none(), st.integers(-1, 6)),
    per_sample=st.booleans(),
    inplace=st.booleans(),
)
# Junk is rarely accepted: two inputs that are, so the accepted branch always runs.
@example(images=torch.rand(3, 2, 5, 4), labels=torch.tensor([2, 0, 1]), num_classes=3, per_sample=True, inplace=True)
@example(images=torch.rand(2, 1, 3, 6), labels=torch.eye(2), num_classes=None, per_sample=False, inplace=False)
def test_malformed_inputs_get_a_clean_error_or_a_correct_result(images, labels, num_classes, per_sample, inplace):
    try:
        cutmix = CutMix(num_classes=num_classes, per_sample=per_sample, inplace=inplace)
    except ValueError:
        assert num_classes is not None and num_classes < 1
        return
    before_images = images.clone() if isinstance(images, torch.Tensor) else images
    before_labels = labels.clone() if isinstance(labels, torch.Tensor) else labels
    try:
        out = cutmix(images, labels)
    except (ValueError, TypeError):
        return
    # It was accepted: then the output it gave must be a correct mix of the inputs as they were.
    assert isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)
    assert torch.equal(labels, before_labels)
    if inplace:
        assert out[0] is images
    else:
        assert torch.equal(images, before_images)
    check_mix_transform(lambda *_: out, before_images, before_labels, num_classes=num_classes, kinds=("none", "paste"))


@given(mst.image_batches(**image_sides(1, 8)), st.sampled_from([(3,), (2, 2), (5, 3, 1), ()]), st.booleans())
def test_wrong_label_shapes_for_real_images(images, shape, soft):
    labels = torch.zeros(shape) if soft else torch.zeros(shape, dtype=torch.int64)
    cutmix = CutMix(num_classes=3)
    before = images.clone()
    try:
        _out_images, out_labels = cutmix(images, labels)
    except (ValueError, TypeError):
        assert torch.equal(images, before)
        return
    assert labels.shape[0] == images.shape[0] and out_labels.shape == (images.shape[0], 3)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
@pytest.mark.parametrize("mix_name", ["CutMix", "MixUp", "RandomMix"])
def test_class_indices_of_every_integer_dtype_are_taken_as_int64_ones(dtype, mix_name):
    from torchvision_mix import MixUp, RandomMix

    make = {
        "CutMix": lambda: CutMix(num_classes=5, per_sample=True, generator=torch.Generator().manual_seed(0)),
        "MixUp": lambda: MixUp(num_classes=5, per_sample=True, generator=torch.Generator().manual_seed(0)),
        "RandomMix": lambda: RandomMix(
            [CutMix(), MixUp()], num_classes=5, per_sample=True, generator=torch.Generator().manual_seed(0)
        ),
    }[mix_name]
    images, labels = torch.rand(6, 3, 8, 8), torch.tensor([0, 4, 2, 3, 1, 4])
    expected_images, expected = make()(images, labels)
    out_images, soft = make()(images, labels.to(dtype))
    assert torch.equal(out_images, expected_images) and torch.equal(soft, expected) and soft.dtype == torch.float32
    with pytest.raises(ValueError, match=r"Class indices must be in \[0, 5\), but got 5"):
        make()(images, torch.tensor([0, 5, 2, 3, 1, 4], dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_index_labels_of_a_non_integer_dtype_are_refused_with_what_is_accepted(dtype):
    with pytest.raises(TypeError, match=rf"any integer dtype: int64, int32, uint8, \.\.\.\), but got dtype {dtype}"):
        CutMix(num_classes=3)(torch.rand(2, 3, 4, 4), torch.zeros(2, dtype=dtype))
