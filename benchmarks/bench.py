"""Time torchvision_mix against torchvision, timm and kornia, interleaved in one process.

Run ``python benchmarks/bench.py`` (peers come with ``pip install -e ".[bench]"``). For every case
(dtype x batch shape x device) it runs all contenders round by round, in turn, and reports the
median time per batch, images per second, the ratio to torchvision's ``v2.CutMix`` measured in the
same rounds, and the peak extra memory of one call (CUDA: the allocator's peak; CPU: the peak
resident set of a fresh process, read from Linux's ``VmHWM`` after resetting it).
``copy (floor)`` is one ``torch.empty_like(x).copy_(x)``: the
memory-bandwidth cost of writing one new batch.

``--write docs/benchmarks.rst`` regenerates the page in the docs.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

Fn = Callable[[torch.Tensor, torch.Tensor], Any]
NUM_CLASSES = 1000
CASES = [
    ("float32", 64, 224),
    ("uint8", 64, 224),
    ("float32", 256, 32),
    ("uint8", 256, 32),
]


def contenders(device: torch.device, dtype: torch.dtype, size: int) -> dict[str, Callable[[], Fn] | str]:
    """Name → a factory of callable(images, labels), or → the reason it cannot run this case."""
    from torchvision.transforms import v2

    from torchvision_mix import AttentiveCutMix, CutMix, FMix, GridMix, MixUp, RandomMix, SaliencyMix

    out: dict[str, Callable[[], Fn] | str] = {}

    def copy_floor(x: torch.Tensor, y: torch.Tensor) -> Any:
        return torch.empty_like(x).copy_(x)

    def timm_mixup(mode: str) -> Fn:
        from timm.data import Mixup

        return Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode=mode, label_smoothing=0.0, num_classes=NUM_CLASSES)

    def timm_recipe(mode: str) -> Fn:
        from timm.data import Mixup

        return Mixup(
            mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, mode=mode, label_smoothing=0.1, num_classes=NUM_CLASSES
        )

    def recipe(per_sample: bool) -> Fn:
        children = [CutMix(alpha=1.0), MixUp(alpha=0.8)]
        return RandomMix(children, p=[0.5, 0.5], per_sample=per_sample, num_classes=NUM_CLASSES, label_smoothing=0.1)

    def kornia_cutmix() -> Fn:
        import kornia.augmentation as K

        return K.RandomCutMixV2(data_keys=["input", "class"], use_correct_lambda=True).to(device)

    def attentive_precomputed() -> Fn:
        cells = max(1, size // 32)
        heat = torch.rand(1, cells, cells, device=device)
        mix = AttentiveCutMix(grid_size=7, num_classes=NUM_CLASSES, attention_getter=lambda inputs: inputs[2])
        return lambda x, y: mix(x, y, heat.expand(x.shape[0], cells, cells))

    def nearly_free(x: torch.Tensor) -> torch.Tensor:
        return x[:, :1, ::32, ::32]

    out["copy (floor)"] = lambda: copy_floor
    out["torchvision v2.CutMix"] = lambda: v2.CutMix(num_classes=NUM_CLASSES)
    for mode in ("batch", "elem"):
        name = f"timm Mixup cutmix {mode}"
        out[name] = functools.partial(timm_mixup, mode) if _has("timm") else "timm not installed"
    if not _has("kornia"):
        out["kornia RandomCutMixV2"] = "kornia not installed"
    elif not dtype.is_floating_point:
        out["kornia RandomCutMixV2"] = "kornia refuses uint8 images"
    else:
        out["kornia RandomCutMixV2"] = kornia_cutmix
    out["ours CutMix"] = lambda: CutMix(num_classes=NUM_CLASSES)
    out["ours CutMix per_sample"] = lambda: CutMix(num_classes=NUM_CLASSES, per_sample=True)
    out["ours CutMix inplace"] = lambda: CutMix(num_classes=NUM_CLASSES, inplace=True)
    out["ours AttentiveCutMix (free extractor)"] = lambda: AttentiveCutMix(
        feature_extractor=nearly_free, grid_size=7, num_classes=NUM_CLASSES
    )
    out["ours AttentiveCutMix (precomputed)"] = attentive_precomputed
    if dtype.is_floating_point:
        out["torchvision v2.MixUp"] = lambda: v2.MixUp(num_classes=NUM_CLASSES)
    else:
        out["torchvision v2.MixUp"] = "torchvision refuses uint8 images"
    out["ours MixUp"] = lambda: MixUp(num_classes=NUM_CLASSES)
    out["ours MixUp per_sample"] = lambda: MixUp(num_classes=NUM_CLASSES, per_sample=True)
    out["ours MixUp inplace"] = lambda: MixUp(num_classes=NUM_CLASSES, inplace=True)
    for mode in ("batch", "elem"):
        name = f"timm Mixup recipe {mode}"
        if not _has("timm"):
            out[name] = "timm not installed"
        elif not dtype.is_floating_point:
            out[name] = "timm's MixUp fails on uint8 images"
        else:
            out[name] = functools.partial(timm_recipe, mode)
    out["ours RandomMix recipe"] = functools.partial(recipe, False)
    out["ours RandomMix recipe per_sample"] = functools.partial(recipe, True)
    out["ours SaliencyMix"] = lambda: SaliencyMix(num_classes=NUM_CLASSES)
    out["ours SaliencyMix per_sample"] = lambda: SaliencyMix(num_classes=NUM_CLASSES, per_sample=True)
    out["ours FMix"] = lambda: FMix(num_classes=NUM_CLASSES)
    out["ours FMix per_sample"] = lambda: FMix(num_classes=NUM_CLASSES, per_sample=True)
    out["ours GridMix"] = lambda: GridMix(num_classes=NUM_CLASSES)
    out["ours GridMix per_sample"] = lambda: GridMix(num_classes=NUM_CLASSES, per_sample=True)
    return out


#: The goals of the docs: (contender, peer) pairs whose time ratio is reported beside the table.
PEER_RATIOS = [
    ("ours CutMix", "torchvision v2.CutMix"),
    ("ours CutMix inplace", "torchvision v2.CutMix"),
    ("ours CutMix per_sample", "torchvision v2.CutMix"),
    ("ours MixUp", "torchvision v2.MixUp"),
    ("ours MixUp per_sample", "torchvision v2.MixUp"),
    ("ours RandomMix recipe per_sample", "timm Mixup recipe elem"),
    ("ours RandomMix recipe per_sample", "timm Mixup recipe batch"),
    ("ours RandomMix recipe", "timm Mixup recipe batch"),
]


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _inputs(dtype: str, batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    if dtype == "uint8":
        x = (x * 255).to(torch.uint8)
    return x.to(device), torch.randint(NUM_CLASSES, (batch,), generator=g).to(device)


def _release_free_memory() -> None:
    """Give freed heap memory back to the OS, so that no contender reuses pages another one freed.

    Without it, a call placed after one that freed a large block got its memory without page
    faults and looked several times faster than it is in a training loop.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_case(
    dtype: str, batch: int, size: int, device: torch.device, rounds: int, warmup: int
) -> dict[str, dict[str, Any]]:
    x, y = _inputs(dtype, batch, size, device)
    fns = contenders(device, x.dtype, size)
    runnable = {name: make() for name, make in fns.items() if not isinstance(make, str)}
    times: dict[str, list[float]] = {name: [] for name in runnable}
    for _ in range(warmup):
        for fn in runnable.values():
            fn(x, y)
    order = list(runnable)
    shuffle = random.Random(0)
    for _ in range(rounds):  # interleaved: every contender once per round, in a new order each round
        shuffle.shuffle(order)
        for name in order:
            fn = runnable[name]
            _release_free_memory()
            _sync(device)
            start = time.perf_counter()
            fn(x, y)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["torchvision v2.CutMix"])
    results: dict[str, dict[str, Any]] = {}
    for name, make in fns.items():
        if isinstance(make, str):
            results[name] = {"skipped": make}
            continue
        median = statistics.median(times[name])
        results[name] = {
            "median_ms": median * 1e3,
            "images_per_s": batch / median,
            "ratio": median / base,
        }
    return results


def _peak_cuda(name: str, dtype: str, batch: int, size: int, device: torch.device) -> float:
    x, y = _inputs(dtype, batch, size, device)
    make = contenders(device, x.dtype, size)[name]
    assert not isinstance(make, str)
    fn = make()
    fn(x, y)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    out = fn(x, y)
    torch.cuda.synchronize(device)
    del out
    return float(torch.cuda.max_memory_allocated(device) - base)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _memory_child(name: str, dtype: str, batch: int, size: int) -> None:
    """In a fresh process: the peak resident set over one call, above the resident set before it."""
    device = torch.device("cpu")
    x, y = _inputs(dtype, batch, size, device)
    make = contenders(device, x.dtype, size)[name]
    assert not isinstance(make, str)
    fn = make()
    fn(x[:2, :, :8, :8].clone(), y[:2])  # load lazy code paths without touching big memory
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident set
    before = _status_kib("VmRSS")
    out = fn(x, y)
    peak = _status_kib("VmHWM")
    del out
    print(json.dumps({"bytes": (peak - before) * 1024}))


def peak_memory(name: str, dtype: str, batch: int, size: int, device: torch.device) -> float | None:
    if device.type == "cuda":
        return _peak_cuda(name, dtype, batch, size, device)
    cmd = [sys.executable, __file__, "--memory-child", json.dumps([name, dtype, batch, size])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["bytes"])


def extractor_costs(device: torch.device, batch: int, rounds: int) -> list[tuple[str, float]]:
    """Median time of one ResNet-50 feature-extractor forward (the default of AttentiveCutMix)."""
    from torchvision_mix import AttentiveCutMix, attention

    extractor = attention.feature_extractor("resnet50", weights=None).to(device)  # same cost as pretrained
    x = torch.rand(batch, 3, 224, 224, device=device)
    y = torch.randint(NUM_CLASSES, (batch,), device=device)
    out = []
    variants: list[tuple[str, dict[str, Any]]] = [
        ("float32", {}),
        ("channels_last", {"channels_last": True}),
        ("autocast", {"autocast": True}),
        ("autocast + channels_last", {"autocast": True, "channels_last": True}),
    ]
    for name, kwargs in variants:
        mix = AttentiveCutMix(feature_extractor=extractor, num_classes=NUM_CLASSES, **kwargs)
        mix(x, y)
        times = []
        for _ in range(rounds):
            _sync(device)
            start = time.perf_counter()
            mix(x, y)
            _sync(device)
            times.append(time.perf_counter() - start)
        out.append((f"AttentiveCutMix with ResNet-50, {name}", statistics.median(times) * 1e3))
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}, "
        f"Python {platform.python_version()}, {datetime.date.today().isoformat()}"
    )


def render(
    all_results: list[tuple[str, str, dict[str, dict[str, Any]]]],
    rounds: int,
    extractor: list[tuple[str, int, str, float]],
) -> str:
    lines = [f"Machine: {machine()}. Median of {rounds} interleaved rounds.", ""]
    for title, batch_bytes, results in all_results:
        lines += [
            title,
            "",
            "| contender | median ms | images/s | × torchvision | peak extra memory |",
            "|---|---|---|---|---|",
        ]
        for name, r in results.items():
            if "skipped" in r:
                lines.append(f"| {name} | n/a | n/a | n/a | {r['skipped']} |")
                continue
            mem = r.get("peak_bytes")
            mem_s = "n/a" if mem is None else f"{mem / 2**20:.1f} MiB ({mem / float(batch_bytes):.2f} batches)"
            lines.append(f"| {name} | {r['median_ms']:.2f} | {r['images_per_s']:,.0f} | {r['ratio']:.2f} | {mem_s} |")
        lines.append("")
        timed = {name for name, r in results.items() if "median_ms" in r}
        pairs = [(a, b) for a, b in PEER_RATIOS if a in timed and b in timed]
        if pairs:
            lines += ["| ours | peer | time ratio (ours / peer) |", "|---|---|---|"]
            lines += [f"| {a} | {b} | {results[a]['median_ms'] / results[b]['median_ms']:.2f} |" for a, b in pairs]
            lines.append("")
    if extractor:
        lines += ["**The feature extractor's cost, next to the mixing (float32, 3 x 224 x 224)**", ""]
        lines += ["| device | batch | what | median ms |", "|---|---|---|---|"]
        lines += [f"| {dev} | {batch} | {name} | {ms:.1f} |" for dev, batch, name, ms in extractor]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", action="append", help="cpu and/or cuda (default: cpu, plus cuda if present)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--quick", action="store_true", help="one small case, 3 rounds (a smoke test)")
    parser.add_argument(
        "--case", action="append", metavar="DTYPE:BATCH:SIZE", help="only these cases, e.g. float32:64:224 (repeatable)"
    )
    parser.add_argument(
        "--extractor-batch", type=int, default=8, help="batch for timing the ResNet-50 extractor (0: skip)"
    )
    parser.add_argument("--write", help="write the tables into this .rst file (between the marker lines)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(*json.loads(args.memory_child))
        return 0
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    cases = [("float32", 8, 64)] if args.quick else CASES
    if args.case:
        cases = [(d, int(b), int(n)) for d, b, n in (c.split(":") for c in args.case)]
    rounds = 3 if args.quick else args.rounds
    all_results = []
    for dev in devices:
        device = torch.device(dev)
        for dtype, batch, size in cases:
            title = f"**{dev}, {dtype}, batch {batch} x 3 x {size} x {size}**"
            print(title, flush=True)
            results = time_case(dtype, batch, size, device, rounds, args.warmup)
            batch_bytes = batch * 3 * size * size * (4 if dtype == "float32" else 1)
            if not args.no_memory:
                for name, r in results.items():
                    if "skipped" not in r:
                        r["peak_bytes"] = peak_memory(name, dtype, batch, size, device)
            all_results.append((title, str(batch_bytes), results))
    extractor: list[tuple[str, int, str, float]] = []
    if args.extractor_batch > 0 and not args.quick:
        for dev in devices:
            extractor_rounds = 3 if dev == "cuda" else 1  # a CPU forward takes seconds
            for name, ms in extractor_costs(torch.device(dev), args.extractor_batch, extractor_rounds):
                extractor.append((dev, args.extractor_batch, name, ms))
    table = render(all_results, rounds, extractor)
    print(table)
    if args.write:
        begin, end = ".. begin-results", ".. end-results"
        with open(args.write) as f:
            text = f.read()
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        block = "\n".join("   " + line if line else "" for line in table.splitlines())
        with open(args.write, "w") as f:
            f.write(f"{head}{begin}\n\n.. code-block:: text\n\n{block}\n\n{end}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
