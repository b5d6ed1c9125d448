"""The public base MaskMix: a variant written as the docs show, its side inputs, its errors, its workers."""

from __future__ import annotations

import multiprocessing
import pickle

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from torchvision_mix import MaskMix, MixCollate


class Stripes(MaskMix):
    """Every other column band of width ``band`` comes from the partner, shifted by a random offset."""

    def __init__(self, *, band: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.band = band

    def make_masks(self, batch):
        b, h, w = batch.shape[0], batch.shape[-2], batch.shape[-1]
        offsets = torch.randint(self.band, (b if self.per_sample else 1,), generator=self.generator)
        cols = (torch.arange(w) + offsets[:, None]) // self.band % 2 == 1  # (b or 1, W)
        return cols[:, None, :].expand(b, h, w).to(batch.device)


class PeakRows(MaskMix):
    """Reads a side input: pastes the rows ``hint[i]`` names (one per sample)."""

    def get_side_inputs(self, inputs):
        return {"hint": inputs["hint"]} if isinstance(inputs, dict) else {}

    def check_batch(self, batch, hint=None):
        if hint is None or hint.shape != (batch.shape[0],):
            raise ValueError(f"PeakRows needs a 'hint' of shape ({batch.shape[0]},)")

    def make_masks(self, batch, hint):
        rows = torch.arange(batch.shape[-2], device=batch.device)
        m = rows[None, :] == hint.to(batch.device)[:, None]
        return m[:, :, None].expand(-1, -1, batch.shape[-1])


def _partner_columns(out, x):
    return torch.stack([(out[i] != x[i]).flatten(0, -3).any(dim=0) for i in range(x.shape[0])])


def test_variant_mixes_every_structure_and_type():
    x = torch.rand(5, 3, 6, 8)
    seg = torch.arange(5)[:, None, None].expand(5, 6, 8).clone()
    mix = Stripes(num_classes=5, generator=torch.Generator().manual_seed(0))
    sample = {"image": tv_tensors.Image(x), "mask": tv_tensors.Mask(seg), "labels": torch.arange(5), "id": "b7"}
    out = mix(sample)
    assert isinstance(out["image"], tv_tensors.Image) and isinstance(out["mask"], tv_tensors.Mask)
    assert out["id"] == "b7"
    pasted = _partner_columns(out["image"], x)
    for i in range(5):
        expected_mask = torch.where(pasted[i], seg[(i - 1) % 5], seg[i])
        assert torch.equal(out["mask"][i], expected_mask)  # the segmentation moves with the pixels
        fraction = float(pasted[i].double().mean())
        assert abs(float(out["labels"][i, (i - 1) % 5]) - fraction) < 1e-6
    for structure in ((x, torch.arange(5)), [x, torch.arange(5)]):
        images, labels = mix(structure)
        assert images.shape == x.shape and labels.shape == (5, 5)


def test_variant_gets_p_per_sample_inplace_and_smoothing_from_the_base():
    x = torch.rand(300, 1, 4, 4)
    labels = torch.arange(300) % 3
    out, soft = Stripes(num_classes=3, p=0.5, per_sample=True, label_smoothing=0.3,
                        generator=torch.Generator().manual_seed(1))(x, labels)
    unchanged = (out == x).flatten(1).all(dim=1)
    assert 100 < int(unchanged.sum()) < 200
    assert torch.allclose(soft[unchanged].max(dim=1).values, torch.full((int(unchanged.sum()),), 0.8))
    y = x.clone()
    out, _ = Stripes(num_classes=3, inplace=True)(y, labels)
    assert out is y and not torch.equal(y, x)


def test_side_inputs_reach_the_variant_and_pass_through():
    x = torch.rand(4, 3, 5, 5)
    hint = torch.tensor([0, 4, 2, 1])
    out = PeakRows(num_classes=4)({"image": x, "labels": torch.arange(4), "hint": hint})
    assert out["hint"] is hint
    for i in range(4):
        changed = (out["image"][i] != x[i]).any(dim=0).any(dim=1)
        assert changed.nonzero().flatten().tolist() == [int(hint[i])]
    with pytest.raises(ValueError, match="needs a 'hint'"):
        PeakRows(num_classes=4)(x, torch.arange(4))


class _Bad(MaskMix):
    def __init__(self, result, **kwargs):
        super().__init__(**kwargs)
        self.result = result

    def make_masks(self, batch):
        return self.result(batch)


@pytest.mark.parametrize(
    ("result", "error", "match"),
    [
        (lambda b: [[True]], TypeError, r"_Bad.make_masks\(\) must return a boolean tensor .* returned a list"),
        (lambda b: torch.ones(b.shape[0], 4, 4), TypeError, r"_Bad.make_masks\(\) .* dtype torch.float32"),
        (lambda b: torch.ones(b.shape[0], 3, 4, dtype=torch.bool), ValueError, r"shape \(B, H, W\) = \(2, 4, 4\)"),
        (lambda b: torch.ones(3, 4, 4, dtype=torch.bool), ValueError, r"_Bad.make_masks\(\) .* shape \(3, 4, 4\)"),
        (lambda b: torch.ones(2, 4, 4, dtype=torch.bool, device="meta"), ValueError, r"device cpu.* on meta"),
    ],
)
def test_subclass_mistakes_are_named_and_nothing_changes(result, error, match):
    x = torch.rand(2, 3, 4, 4)
    before = x.clone()
    with pytest.raises(error, match=match):
        _Bad(result, num_classes=2, inplace=True)(x, torch.arange(2))
    assert torch.equal(x, before)


def test_a_base_without_make_masks_says_what_to_implement():
    with pytest.raises(NotImplementedError, match="MaskMix must implement make_masks"):
        MaskMix(num_classes=2)(torch.rand(2, 3, 4, 4), torch.arange(2))


def test_pickle_round_trip_continues_the_same_stream():
    mix = Stripes(num_classes=4, per_sample=True, generator=torch.Generator().manual_seed(3))
    copy = pickle.loads(pickle.dumps(mix))
    x, labels = torch.rand(4, 3, 6, 6), torch.arange(4)
    for _ in range(3):
        assert torch.equal(mix(x, labels)[0], copy(x, labels)[0])


class _Images(torch.utils.data.Dataset):
    def __getitem__(self, i):
        return torch.full((1, 4, 8), float(i)), i

    def __len__(self):
        return 16


def test_variant_inside_mix_collate_with_spawn_workers():
    collate = MixCollate(Stripes(num_classes=16, per_sample=True, generator=torch.Generator().manual_seed(0)))
    loader = DataLoader(
        _Images(), batch_size=8, num_workers=2, collate_fn=collate,
        multiprocessing_context=multiprocessing.get_context("spawn"),
    )
    batches = 0
    for b, (images, labels) in enumerate(loader):
        for i in range(8):
            own, partner = 8 * b + i, 8 * b + (i - 1) % 8
            fraction = float((images[i] == partner).double().mean())
            assert fraction == 0.5 and bool(((images[i] == own) | (images[i] == partner)).all())
            assert float(labels[i, partner]) == fraction and float(labels[i, own]) == 1 - fraction
        batches += 1
    assert batches == 2
