"""MixCollate reseeds every generator inside its transform, once in each DataLoader worker.

The loaders run with two workers: worker 0 makes batches 0 and 2, worker 1 batches 1 and 3. Every
batch holds the same images, so two batches differ only where their mixes drew different boxes.
"""

import types

import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from torchvision_mix import CutMix, MixCollate, collate

SIZE = 4  # samples per batch
BATCHES = 4  # batches per epoch
SEED = 5  # every generator starts from this seed, as in the bug report


def seeded(seed=SEED):
    return torch.Generator().manual_seed(seed)


def cutmix(generator=None):
    return CutMix(num_classes=SIZE, per_sample=True, generator=seeded() if generator is None else generator)


class SameImages(Dataset):
    """BATCHES batches of the same SIZE images (batched in order)."""

    def __init__(self):
        self.images = torch.rand(SIZE, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return SIZE * BATCHES

    def __getitem__(self, i):
        return self.images[i % SIZE], i % SIZE


class Wrapper(torch.nn.Module):
    """An nn.Module whose child is the transform."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, batch):
        return self.inner(batch)


class Fanout:
    """A plain callable (no nn.Module) with a ``transforms`` list: each pipeline mixes the batch; returns the images."""

    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, batch):
        return [t(batch)[0] for t in self.transforms]


class Noise:
    """A plain object (no nn.Module) with a ``generator`` attribute: adds noise drawn from it."""

    def __init__(self, generator):
        self.generator = generator

    def __call__(self, batch):
        images, labels = batch
        return images + torch.rand(images.shape, generator=self.generator), labels


class Idle(Noise):
    """Holds a generator and draws nothing."""

    def __call__(self, batch):
        return batch


class Steps:
    """A plain callable holding its steps in a tuple attribute that is not called ``transforms``."""

    def __init__(self, *steps):
        self.steps = steps

    def __call__(self, batch):
        for step in self.steps:
            batch = step(batch)
        return batch


# Each pipeline holds one CutMix whose generator is seeded with SEED.
PIPELINES = {
    "Compose": lambda: v2.Compose([cutmix()]),
    "RandomChoice": lambda: v2.RandomChoice([cutmix()]),
    "RandomApply": lambda: v2.RandomApply([cutmix()], p=1.0),
    "three levels": lambda: v2.Compose([v2.RandomApply([v2.RandomChoice([cutmix()])], p=1.0)]),
    "nn.Module child": lambda: Wrapper(v2.Compose([cutmix()])),
}


def run(transform, start_method="fork", persistent=False, epochs=2):
    """Per epoch, the loader's batches (whatever the transform returns), with a seeded loader."""
    loader = DataLoader(
        SameImages(),
        batch_size=SIZE,
        num_workers=2,
        collate_fn=MixCollate(transform),
        persistent_workers=persistent,
        multiprocessing_context=start_method,
        generator=torch.Generator().manual_seed(0),
    )
    return [list(loader) for _ in range(epochs)]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("persistent", [False, True], ids=["new-workers", "persistent"])
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_every_worker_reseeds_nested_generators(start_method, persistent):
    epochs = run(Fanout([make() for make in PIPELINES.values()]), start_method, persistent)
    for e, batches in enumerate(epochs):
        assert len(batches) == BATCHES
        for p, name in enumerate(PIPELINES):
            images = [batch[p] for batch in batches]
            for k in (0, 2):
                assert not torch.equal(images[k], images[k + 1]), f"{name}: workers 0 and 1 drew the same boxes"
            for k in (0, 1):
                assert not torch.equal(images[k], images[k + 2]), f"{name}: a worker repeated its boxes"
            if e == 1:
                first = [batch[p] for batch in epochs[0]]
                assert not any(map(torch.equal, first, images)), f"{name}: epoch 2 repeated the boxes of epoch 1"
        for batch in batches:  # pipelines of one worker: same seed, different positions, different boxes
            assert not any(torch.equal(a, b) for i, a in enumerate(batch) for b in batch[i + 1 :])
    # Reproducible from the loader's seed alone: a fork rerun (a spawn run) draws the same boxes as a fork run.
    again = run(Fanout([make() for make in PIPELINES.values()]), "fork", persistent)
    assert all(same(x, y) for a, b in zip(epochs, again, strict=True) for x, y in zip(a, b, strict=True))


def test_the_bug_report():
    (batches,) = run(v2.Compose([cutmix()]), epochs=1)
    assert not torch.equal(batches[0][0], batches[1][0])


def test_plain_objects_and_a_shared_generator():
    # A generator held by a plain object, in a tuple attribute, is reseeded (fork only: a bare
    # torch.Generator does not pickle into spawn workers).
    (batches,) = run(Steps(Noise(seeded())), epochs=1)
    assert not torch.equal(batches[0][0], batches[1][0])
    # A generator reached twice is reseeded once: a second holder that draws nothing changes nothing.
    shared = seeded()
    twice = run(Steps(cutmix(shared), Idle(shared)), epochs=1)
    once = run(Steps(cutmix()), epochs=1)
    assert all(same(a, b) for a, b in zip(twice[0], once[0], strict=True))


def fake_worker(monkeypatch, seed):
    monkeypatch.setattr(collate, "get_worker_info", lambda: types.SimpleNamespace(id=0, seed=seed))


def test_the_walk_reaches_every_generator_once(monkeypatch):
    generators = [seeded() for _ in range(7)]
    shared = generators[0]
    transform = Steps(
        v2.Compose([cutmix(shared), v2.RandomApply([cutmix(generators[1])])]),
        v2.RandomChoice([Wrapper(cutmix(generators[2])), cutmix(shared)]),
        Fanout([v2.RandomOrder([Noise(generators[3])]), {"mix": cutmix(generators[4])}]),
        Noise(generators[5]),
        [[(cutmix(generators[6]),)]],
    )
    collate_fn = MixCollate(transform)
    collate_fn._reseed_in_worker()  # the main process: nothing is reseeded
    assert [g.initial_seed() for g in generators] == [SEED] * 7

    fake_worker(monkeypatch, seed=123)
    collate_fn._reseed_in_worker()
    seeds = [g.initial_seed() for g in generators]
    assert len(set(seeds)) == 7 and SEED not in seeds  # all reseeded, all apart
    # Derived from the worker's seed, the initial seed and the position of first sight, once each.
    assert seeds == [collate._worker_seed(123, SEED, i) for i in range(7)]
    collate_fn._reseed_in_worker()  # later batches of the same worker: no reseeding
    assert [g.initial_seed() for g in generators] == seeds

    fake_worker(monkeypatch, seed=124)  # another worker (or a new one next epoch): other seeds
    other = MixCollate(Steps(*[Noise(seeded()) for _ in range(7)]))
    other._reseed_in_worker()
    assert not set(seeds) & {g.initial_seed() for g in collate._generators(other.transform)}
