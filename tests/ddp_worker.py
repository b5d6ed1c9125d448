"""The per-rank body of the DDP test (importable, so spawned processes can run it)."""

import json
import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from torchvision_mix import CutMix, MixCollate


def run(rank: int, world_size: int, init_file: str, out_dir: str, seed: int) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.manual_seed(0)  # the same global seed on every rank, as many scripts do
    images = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    data = TensorDataset(images, torch.arange(32) % 4)
    sampler = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True, seed=0)
    # One generator per rank: seeded with seed + rank, so ranks differ and a rerun reproduces.
    in_loader = CutMix(num_classes=4, generator=torch.Generator().manual_seed(seed + rank))
    in_step = CutMix(num_classes=4, per_sample=True, generator=torch.Generator().manual_seed(10_000 + seed + rank))
    loader = DataLoader(data, batch_size=4, sampler=sampler, collate_fn=MixCollate(in_loader))
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3 * 16 * 16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    record = {"collate": [], "step": []}
    for x, y in loader:
        record["collate"].append(y.tolist())  # mixed in collate_fn
        x, y = in_step(x, y)  # the mix inside the training step
        loss = torch.nn.functional.cross_entropy(model(x.flatten(1)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        record["step"].append(y.tolist())
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(record, f)
    dist.barrier()
    dist.destroy_process_group()
