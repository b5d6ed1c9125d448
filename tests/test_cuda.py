"""CUDA: no host synchronisation on the mixing path, dtype/device/memory format kept.

Skipped where no GPU is present (the CPU tests cover the same code; the meta-device tests in
test_cutmix.py / test_attentive.py show that nothing reads a device value back).
"""

import pytest
import torch
from torchvision import tv_tensors

from torchvision_mix import AttentiveCutMix, CutMix, FMix, GridMix, MixUp, RandomMix, SaliencyMix
from torchvision_mix.testing import check_mix_transform

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _transforms(num_classes):
    heat_net = torch.nn.Conv2d(3, 4, kernel_size=8, stride=8).cuda()  # 8x8 maps: not coarser than the 7x7 grid
    return [
        CutMix(num_classes=num_classes),
        CutMix(num_classes=num_classes, per_sample=True, p=0.7),
        CutMix(num_classes=num_classes, inplace=True),
        CutMix(num_classes=num_classes, per_sample=True, inplace=True, label_smoothing=0.1),
        AttentiveCutMix(feature_extractor=heat_net, num_classes=num_classes),
        AttentiveCutMix(feature_extractor=heat_net, num_classes=num_classes, top_k=None, alpha=1.0, per_sample=True),
        SaliencyMix(num_classes=num_classes),
        SaliencyMix(num_classes=num_classes, per_sample=True),
        FMix(num_classes=num_classes, per_sample=True),
        GridMix(num_classes=num_classes, per_sample=True, p=0.7),
        RandomMix([FMix(), GridMix(), MixUp()], per_sample=True, num_classes=num_classes),
        MixUp(num_classes=num_classes),
        MixUp(num_classes=num_classes, per_sample=True, p=0.7, inplace=True),
        RandomMix([CutMix(), MixUp(alpha=0.8)], per_sample=True, num_classes=num_classes, label_smoothing=0.1),
        RandomMix([CutMix(), MixUp(alpha=0.8)], num_classes=num_classes),
        AttentiveCutMix(num_classes=num_classes, attention_getter=lambda inputs: inputs[2]),
    ]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float32])
def test_no_sync_and_everything_kept(dtype):
    images = (torch.rand(16, 3, 64, 64, device="cuda") * 255).to(dtype)
    images = tv_tensors.Image(images.contiguous(memory_format=torch.channels_last))
    labels = torch.randint(10, (16,), device="cuda")
    heat = torch.rand(16, 7, 7, device="cuda")
    transforms = _transforms(10)
    for k, transform in enumerate(transforms):
        x = images.clone()
        args = (x, labels, heat) if k == len(transforms) - 1 else (x, labels)  # the last takes attention
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = transform(*args)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        out_images, out_labels = out[0], out[1]
        assert isinstance(out_images, tv_tensors.Image) and out_images.dtype == dtype
        assert out_images.device == images.device and out_labels.device == images.device
        assert out_images.is_contiguous(memory_format=torch.channels_last)


def test_invariants_hold_on_the_gpu():
    images = torch.rand(8, 3, 48, 40, device="cuda")
    labels = torch.arange(8, device="cuda")
    for transform in _transforms(8)[:2]:
        check_mix_transform(transform, images, labels, num_classes=8)


@pytest.mark.parametrize(
    "make",
    [
        lambda g: CutMix(num_classes=8, per_sample=True, generator=g),
        lambda g: CutMix(num_classes=8, generator=g),
        lambda g: MixUp(num_classes=8, per_sample=True, generator=g),
        lambda g: RandomMix([CutMix(), MixUp()], per_sample=True, num_classes=8, generator=g),
        lambda g: GridMix(num_classes=8, per_sample=True, generator=g),
        # SaliencyMix and FMix go through FFTs whose float32 rounding differs between devices, so a
        # saliency peak or an FMix threshold can fall on another pixel: not compared bit for bit.
    ],
)
def test_cpu_and_gpu_give_the_same_mix(make):
    images = torch.rand(8, 3, 32, 32)
    labels = torch.arange(8)
    cpu = make(torch.Generator().manual_seed(0))(images, labels)
    gpu = make(torch.Generator().manual_seed(0))(images.cuda(), labels.cuda())
    torch.testing.assert_close(cpu[0], gpu[0].cpu(), rtol=0, atol=1e-6)  # pastes equal, blends within an ulp
    torch.testing.assert_close(cpu[1], gpu[1].cpu())


def test_the_sync_debug_mode_catches_a_sync():
    """The no-sync test above is only as good as the detector: a read of a device value must raise under it."""
    value = torch.ones(1, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError, match="synchroniz"):
            value.item()
    finally:
        torch.cuda.set_sync_debug_mode("default")
