"""Real DataLoaders with worker processes, DDP with two processes, and pipelines."""

import json
import multiprocessing
import pickle

import pytest
import torch
from helpers import foreign_masks
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

from torchvision_mix import AttentiveCutMix, CutMix, MixCollate


class Samples(Dataset):
    """Distinct random images; the label is the sample index."""

    def __init__(self, n=64):
        self.images = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], i


def _lams(loader):
    """The partner weight of every sample of every batch, in loader order."""
    out = []
    for _images, labels in loader:
        out.append(sorted(round(float(v), 6) for v in labels.max(dim=1).values))
    return out


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
@pytest.mark.parametrize("seeded", [False, True])
def test_collate_with_worker_processes(start_method, seeded):
    data = Samples()
    generator = torch.Generator().manual_seed(3) if seeded else None
    collate = MixCollate(CutMix(num_classes=64, alpha=0.5, generator=generator))
    loader = DataLoader(
        data,
        batch_size=8,
        num_workers=2,
        collate_fn=collate,
        persistent_workers=True,
        multiprocessing_context=multiprocessing.get_context(start_method),
        generator=torch.Generator().manual_seed(0),
    )
    epochs = [_lams(loader) for _ in range(2)]
    for lams in epochs:
        assert len(lams) == 8
        # Worker 0 yields batches 0, 2, 4, 6 and worker 1 batches 1, 3, 5, 7: their streams differ.
        assert lams[0::2] != lams[1::2]
    assert epochs[0] != epochs[1]  # persistent workers go on with their streams
    # Every batch is a real mix: label rows sum to 1 and the pixels came from the batch.
    images, labels = next(iter(loader))
    assert images.shape == (8, 3, 16, 16) and torch.allclose(labels.sum(1), torch.ones(8))


def test_collate_reproduces_with_a_seeded_loader():
    def run():
        loader = DataLoader(
            Samples(),
            batch_size=8,
            num_workers=2,
            shuffle=True,
            collate_fn=MixCollate(CutMix(num_classes=64, generator=torch.Generator().manual_seed(1))),
            generator=torch.Generator().manual_seed(5),
        )
        return [(x.sum().item(), y.sum(0).tolist()) for x, y in loader]

    assert run() == run()


def test_collate_in_the_main_process_and_pickle():
    collate = MixCollate(CutMix(num_classes=4, per_sample=True), collate_fn=default_collate)
    clone = pickle.loads(pickle.dumps(collate))
    assert repr(clone).startswith("MixCollate(CutMix(")
    batch = [(torch.rand(3, 8, 8), i % 4) for i in range(5)]
    images, labels = clone(batch)
    assert images.shape == (5, 3, 8, 8) and labels.shape == (5, 4)
    dicts = [{"image": tv_tensors.Image(torch.rand(3, 8, 8)), "label": i % 4, "id": i} for i in range(4)]
    out = MixCollate(CutMix(num_classes=4))(dicts)
    # default_collate stacks Images into a plain tensor; the first plain tensor is the batch.
    assert out["image"].shape == (4, 3, 8, 8) and out["label"].shape == (4, 4)
    assert out["id"].tolist() == [0, 1, 2, 3]


def test_collate_rejects_a_collate_fn_that_returns_no_batch():
    with pytest.raises(TypeError, match=r"must return a batch .* but returned a int"):
        MixCollate(CutMix(num_classes=2), collate_fn=len)([1, 2])
    with pytest.raises(TypeError, match="transform must be callable"):
        MixCollate(3)
    with pytest.raises(TypeError, match="found no batch to mix"):
        MixCollate(CutMix(labels_getter=None), collate_fn=lambda b: {"a": 1})([1])


def test_ddp_two_processes_with_gloo(tmp_path):
    import torch.multiprocessing as mp
    from ddp_worker import run

    records = []
    for attempt in range(2):
        out = tmp_path / f"run{attempt}"
        out.mkdir()
        mp.spawn(run, args=(2, str(tmp_path / f"init{attempt}"), str(out), 7), nprocs=2, join=True)
        records.append([json.loads((out / f"rank{r}.json").read_text()) for r in range(2)])
    first, second = records
    assert first == second  # a generator seeded per rank reproduces the run
    assert first[0]["collate"] != first[1]["collate"]  # each rank draws its own boxes, in collate_fn
    assert first[0]["step"] != first[1]["step"]  # and in the training step
    assert len(first[0]["step"]) == 4  # 32 samples, 2 ranks, batches of 4


def test_pipelines_with_random_choice_random_apply_and_dict_samples():
    maps = torch.rand(6, 1, 7, 7)
    attentive = AttentiveCutMix(feature_extractor=lambda x: maps, num_classes=6)
    choice = v2.RandomChoice([CutMix(num_classes=6), attentive, v2.MixUp(num_classes=6)])
    pipeline = v2.Compose([v2.RandomApply([choice], p=0.9)])
    images = tv_tensors.Image(torch.rand(6, 3, 28, 28))
    sample = {"image": images, "label": torch.arange(6), "path": "x.png", "extra": torch.zeros(2)}
    torch.manual_seed(0)
    kinds = set()
    for _ in range(30):
        out = pipeline(sample)
        assert out["path"] == "x.png" and out["extra"] is sample["extra"]
        if out["label"].ndim == 1:
            kinds.add("none")
            continue
        pasted = foreign_masks(out["image"], images)
        if pasted.flatten(1).all(1).all():
            kinds.add("mixup")
        elif (pasted.flatten(1).sum(1) == 6 * 16).all():
            kinds.add("attentive")
        else:
            kinds.add("cutmix")
    assert kinds == {"none", "mixup", "attentive", "cutmix"}
