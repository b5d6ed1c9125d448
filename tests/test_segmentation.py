"""Segmentation masks are mixed with the same spatial mask as the images."""

import pytest
import torch
from helpers import foreign_masks, image_sides
from hypothesis import given
from hypothesis import strategies as st
from torchvision import tv_tensors

from torchvision_mix import AttentiveCutMix, CutMix
from torchvision_mix.testing import strategies as mst


def _transforms(seed, labels):
    getter = "default" if labels else None
    return [
        CutMix(
            num_classes=3 if labels else None,
            labels_getter=getter,
            per_sample=True,
            generator=torch.Generator().manual_seed(seed),
        ),
        AttentiveCutMix(
            feature_extractor=lambda x: torch.rand(x.shape[0], 2, 3, 3),
            grid_size=3,
            top_k=2,
            num_classes=3 if labels else None,
            labels_getter=getter,
            generator=torch.Generator().manual_seed(seed),
        ),
    ]


@given(mst.image_batches(kinds=("image",), **image_sides(3, 24)), st.booleans(), st.booleans(), mst.seeds())
def test_mask_pixels_move_with_the_image_pixels(images, channel_dim, with_labels, seed):
    b, _, h, w = images.shape
    # Class ids that differ between any two samples at every pixel, like the images.
    seg = (torch.arange(b)[:, None, None] * 10 + torch.randint(0, 10, (h, w))).to(torch.int64)
    seg = tv_tensors.Mask(seg[:, None] if channel_dim else seg)
    for transform in _transforms(seed, with_labels):
        sample = {"image": images, "mask": seg}
        if with_labels:
            sample["label"] = torch.arange(b) % 3
        out = transform(sample)
        assert isinstance(out["mask"], tv_tensors.Mask) and out["mask"].shape == seg.shape
        assert out["mask"].dtype == seg.dtype
        pasted = foreign_masks(out["image"], images)
        seg_plain = seg.as_subclass(torch.Tensor).reshape(b, h, w)
        got = out["mask"].as_subclass(torch.Tensor).reshape(b, h, w)
        assert torch.equal(got, torch.where(pasted, seg_plain.roll(1, 0), seg_plain))
        assert ("label" in out) == with_labels


def test_masks_alone_with_a_tuple_need_no_labels():
    images = tv_tensors.Image(torch.rand(4, 3, 16, 16))
    seg = tv_tensors.Mask(torch.arange(4).repeat_interleave(256).reshape(4, 16, 16))
    out_images, out_seg = CutMix(generator=torch.Generator().manual_seed(0))(images, seg)
    assert torch.equal(out_seg != seg, foreign_masks(out_images, images))


def test_inplace_mixes_masks_in_place_too():
    images = tv_tensors.Image(torch.rand(4, 3, 16, 16))
    seg = tv_tensors.Mask(torch.arange(4).repeat_interleave(256).reshape(4, 1, 16, 16))
    before = seg.clone()
    out = CutMix(inplace=True, generator=torch.Generator().manual_seed(0))({"image": images, "mask": seg})
    assert out["mask"] is seg and not torch.equal(seg, before)


@pytest.mark.parametrize(
    "kind",
    [
        tv_tensors.BoundingBoxes(torch.zeros(4, 4), format="XYXY", canvas_size=(16, 16)),
        tv_tensors.KeyPoints(torch.zeros(4, 2), canvas_size=(16, 16)),
    ],
)
def test_boxes_and_keypoints_are_refused_with_the_reason(kind):
    sample = {"image": tv_tensors.Image(torch.rand(4, 3, 16, 16)), "target": kind, "label": torch.arange(4)}
    for transform in _transforms(0, True):
        with pytest.raises(TypeError, match="cannot be mixed by a pixel mask"):
            transform(sample)


def test_a_blend_drawn_by_random_choice_on_masks_names_random_mix_which_refuses_at_once():
    from torchvision.transforms import v2

    from torchvision_mix import MixUp, RandomMix, UnsupportedInputError

    images = tv_tensors.Image(torch.rand(4, 3, 8, 8))
    seg = tv_tensors.Mask(torch.randint(0, 3, (4, 8, 8)))
    torch.manual_seed(0)
    choice = v2.RandomChoice([CutMix(num_classes=4), MixUp(num_classes=4)])
    outcomes = []
    for _ in range(20):
        try:
            choice({"image": images, "mask": seg, "label": torch.arange(4)})
            outcomes.append("ok")
        except UnsupportedInputError as error:
            assert "switched by RandomMix([...]), which refuses a blend" in str(error)
            outcomes.append("refused")
    assert set(outcomes) == {"ok", "refused"}  # only some batches fail with v2.RandomChoice
    switch = RandomMix([CutMix(), MixUp()], p=[0.999, 0.001], num_classes=4)
    with pytest.raises(UnsupportedInputError, match="cannot be blended"):
        switch({"image": images, "mask": seg, "label": torch.arange(4)})  # the first batch, whatever is drawn
