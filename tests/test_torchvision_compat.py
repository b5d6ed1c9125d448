"""Our CutMix and MixUp in place of torchvision's: the input structures torchvision's own tests use.

torchvision's ``TestCutMixMixUp.test_supported_input_structure`` runs ``v2.CutMix``/``v2.MixUp`` on
a DataLoader's output, unpacked and packed, and as a ``collate_fn`` with and without unpacking,
and checks the shapes, that every label row sums to 1 and holds exactly two non-zero entries.
The same checks run here with ours in its place (and with torchvision's, as a control).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, default_collate
from torchvision.transforms import v2

from torchvision_mix import CutMix, MixUp

BATCH, CLASSES = 32, 100


class _Unique:
    """Labels 0..size-1, so the two classes mixed into a row are always different."""

    def __init__(self, size):
        self.size = size

    def __getitem__(self, i):
        return torch.rand(3, 40, 40), i

    def __len__(self):
        return self.size


def _check(images, target):
    assert images.shape == (BATCH, 3, 40, 40)
    assert target.shape == (BATCH, CLASSES)
    torch.testing.assert_close(target.sum(dim=-1), torch.ones(BATCH))
    assert ((target != 0).sum(dim=-1) == 2).all()


@pytest.mark.parametrize("make", [CutMix, MixUp, v2.CutMix, v2.MixUp], ids=lambda t: f"{t.__module__}.{t.__name__}")
def test_supported_input_structures(make):
    torch.manual_seed(0)  # a box of zero area (one non-zero label) has probability ~1e-4 a batch
    mix = make(num_classes=CLASSES)
    loader = DataLoader(_Unique(BATCH), batch_size=BATCH)
    images, target = next(iter(loader))
    assert target.shape == (BATCH,)
    _check(*mix(images, target))  # unpacked
    packed = next(iter(loader))
    assert isinstance(packed, list)
    _check(*mix(packed))  # packed, as the DataLoader yields it
    for collate in (lambda b: mix(default_collate(b)), lambda b: mix(*default_collate(b))):
        _check(*next(iter(DataLoader(_Unique(BATCH), batch_size=BATCH, collate_fn=collate))))


@pytest.mark.parametrize("make", [CutMix, MixUp])
def test_the_errors_torchvision_code_catches_are_value_errors(make):
    from torchvision import tv_tensors

    images = torch.rand(9, 3, 12, 12)
    mix = make(alpha=0.5, num_classes=10)
    for bad in (
        v2.functional.to_pil_image(images[0]),
        tv_tensors.BoundingBoxes(torch.rand(2, 4), format="XYXY", canvas_size=(12, 12)),
    ):
        with pytest.raises(ValueError):
            mix(bad)
    for bad_call in (
        lambda: mix({"img": images, "Nothing_else": 3}),  # no labels found
        lambda: mix(images, torch.randint(0, 2, size=(2, 3))),  # wrong soft labels
        lambda: mix(images[None, None], torch.randint(0, 10, size=(9,))),  # 6-D images
        lambda: mix(images, torch.randint(0, 10, size=(10,))),  # batch sizes differ
    ):
        with pytest.raises(ValueError):
            bad_call()
