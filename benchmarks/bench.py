"""Time torchvision_mix against torchvision, timm and kornia, interleaved in one process.

Run ``python benchmarks/bench.py`` (peers come with ``pip install -e ".[bench]"``). For every case
(dtype x batch shape x device) it runs all contenders round by round, in turn, and reports the
median time per batch, images per second, the ratio to torchvision's ``v2.CutMix`` measured in the
same rounds, and the peak extra memory of one call (CUDA: the allocator's peak; CPU: the peak
resident set of a process forked for that call from a fresh one, read from Linux's ``VmHWM``
after resetting it), then the goals of the docs, met or missed, and the load average before and after.
``copy (floor)`` is one ``torch.empty_like(x).copy_(x)``: the
memory-bandwidth cost of writing one new batch. Contenders that write into their input (timm's
``Mixup``, ours with ``inplace=True``) get a fresh copy of the batch before each call, outside the
timer; the ``+ copy`` rows time timm with that copy inside the timer, as a new batch costs ours.

``--baseline SRC`` also times the mixes of another checkout of this package (``SRC`` is its ``src``
folder, e.g. a ``git worktree`` of an older commit), as ``before: ours ...`` rows in the same
interleaved rounds, and adds a ``before`` column to the goals table: before/after from one run.
``--scaling`` adds the time per image against image side and batch size (CPU, float32).
``--write docs/benchmarks.rst`` regenerates the sections of the page that this run measured
(``.. begin-results-cpu``, ``.. begin-results-cuda``, ``.. begin-scaling`` to their ``.. end-`` lines).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import functools
import itertools
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
    """Name → a factory of callable(images, labels), or → the reason it cannot run this case.

    With a baseline loaded (``--baseline``), its mixes follow as ``before: ours ...``.
    """
    import torchvision_mix

    out = _contenders(device, dtype, size, torchvision_mix)
    if _BASELINE is not None:
        before = _contenders(device, dtype, size, _BASELINE)
        out.update({BEFORE + name: make for name, make in before.items() if name.startswith("ours ")})
    return out


def _contenders(device: torch.device, dtype: torch.dtype, size: int, lib: Any) -> dict[str, Callable[[], Fn] | str]:
    """The contenders, ours built from ``lib`` (this package, or a baseline's copy of it)."""
    from torchvision.transforms import v2

    AttentiveCutMix, CutMix, FMix = lib.AttentiveCutMix, lib.CutMix, lib.FMix
    GridMix, MixUp, RandomMix, SaliencyMix = lib.GridMix, lib.MixUp, lib.RandomMix, lib.SaliencyMix

    out: dict[str, Callable[[], Fn] | str] = {}

    def seeded(cls: Any, *args: Any, **kwargs: Any) -> Fn:
        """One of ours with a generator of its own, seeded alike: a baseline's copy draws the same parameters."""
        return cls(*args, generator=torch.Generator().manual_seed(0), **kwargs)

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
        return seeded(
            RandomMix, children, p=[0.5, 0.5], per_sample=per_sample, num_classes=NUM_CLASSES, label_smoothing=0.1
        )

    def kornia_cutmix() -> Fn:
        import kornia.augmentation as K

        return K.RandomCutMixV2(data_keys=["input", "class"], use_correct_lambda=True).to(device)

    def attentive_precomputed() -> Fn:
        cells = 7  # one attention value per grid cell, the size of a ResNet map of 224 x 224 images
        heat = torch.rand(1, cells, cells, generator=torch.Generator().manual_seed(0)).to(device)
        mix = seeded(AttentiveCutMix, grid_size=7, num_classes=NUM_CLASSES, attention_getter=lambda inputs: inputs[2])
        return lambda x, y: mix(x, y, heat.expand(x.shape[0], cells, cells))

    def nearly_free(x: torch.Tensor) -> torch.Tensor:
        stride = max(1, x.shape[-1] // 7)  # a map no coarser than the 7 x 7 grid (7 x 7 at 224 x 224)
        return x[:, :1, ::stride, ::stride]

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
    out["ours CutMix"] = lambda: seeded(CutMix, num_classes=NUM_CLASSES)
    out["ours CutMix per_sample"] = lambda: seeded(CutMix, num_classes=NUM_CLASSES, per_sample=True)
    out["ours CutMix inplace"] = lambda: seeded(CutMix, num_classes=NUM_CLASSES, inplace=True)
    out["ours AttentiveCutMix (free extractor)"] = lambda: seeded(
        AttentiveCutMix, feature_extractor=nearly_free, grid_size=7, num_classes=NUM_CLASSES
    )
    out["ours AttentiveCutMix (precomputed)"] = attentive_precomputed
    if dtype.is_floating_point:
        out["torchvision v2.MixUp"] = lambda: v2.MixUp(num_classes=NUM_CLASSES)
    else:
        out["torchvision v2.MixUp"] = "torchvision refuses uint8 images"
    out["ours MixUp"] = lambda: seeded(MixUp, num_classes=NUM_CLASSES)
    out["ours MixUp per_sample"] = lambda: seeded(MixUp, num_classes=NUM_CLASSES, per_sample=True)
    out["ours MixUp inplace"] = lambda: seeded(MixUp, num_classes=NUM_CLASSES, inplace=True)
    for mode in ("batch", "elem"):
        name = f"timm Mixup recipe {mode}"
        if not _has("timm"):
            out[name] = "timm not installed"
        elif not dtype.is_floating_point:
            out[name] = "timm's MixUp fails on uint8 images"
        else:
            out[name] = functools.partial(timm_recipe, mode)
    for mode in ("batch", "elem"):
        peer = out[f"timm Mixup recipe {mode}"]
        out[f"timm Mixup recipe {mode} + copy"] = peer if isinstance(peer, str) else functools.partial(_with_copy, peer)
    out["ours RandomMix recipe"] = functools.partial(recipe, False)
    out["ours RandomMix recipe per_sample"] = functools.partial(recipe, True)
    out["ours SaliencyMix"] = lambda: seeded(SaliencyMix, num_classes=NUM_CLASSES)
    out["ours SaliencyMix per_sample"] = lambda: seeded(SaliencyMix, num_classes=NUM_CLASSES, per_sample=True)
    out["ours FMix"] = lambda: seeded(FMix, num_classes=NUM_CLASSES)
    out["ours FMix per_sample"] = lambda: seeded(FMix, num_classes=NUM_CLASSES, per_sample=True)
    out["ours GridMix"] = lambda: seeded(GridMix, num_classes=NUM_CLASSES)
    out["ours GridMix per_sample"] = lambda: seeded(GridMix, num_classes=NUM_CLASSES, per_sample=True)
    return out


def _with_copy(make: Callable[[], Fn]) -> Fn:
    """An in-place contender that first copies the batch, inside the timer: it leaves the caller's batch as ours do."""
    fn = make()
    return lambda x, y: fn(x.clone(), y)


#: Contenders that write into the batch they are given. Each timed (and memory-measured) call gets a fresh
#: copy of the batch made outside the timer, so that no round mixes an already mixed batch and the copy's
#: cost is not theirs; the ``+ copy`` rows time that copy inside the timer (``copy (floor)`` is its cost).
INPLACE = frozenset(
    {
        "timm Mixup cutmix batch",
        "timm Mixup cutmix elem",
        "timm Mixup recipe batch",
        "timm Mixup recipe elem",
        "ours CutMix inplace",
        "ours MixUp inplace",
    }
)


def _in_place(name: str) -> bool:
    return name.removeprefix(BEFORE) in INPLACE


#: The prefix of the rows that time a baseline's mixes (``--baseline``).
BEFORE = "before: "
_BASELINE: Any = None  # the baseline's copy of the package, once loaded
_BASELINE_SRC: str | None = None
_LOADS = itertools.count()


def load_baseline(src: str) -> Any:
    """Import another checkout's package (``src/torchvision_mix``) beside this one, as ``torchvision_mix_baseline_N``.

    The package is copied under a name of its own (its imports are relative), and so are its torch
    custom operators: under one name, the copy loaded last would serve both.
    """
    global _BASELINE, _BASELINE_SRC
    import importlib
    import shutil
    import tempfile
    from pathlib import Path

    package = Path(src) / "torchvision_mix"
    if not (package / "__init__.py").is_file():
        raise SystemExit(f"--baseline {src}: no torchvision_mix package there (give the checkout's src folder)")
    folder = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    name = f"torchvision_mix_baseline_{next(_LOADS)}"  # a new name for every load
    copy = folder / name
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*.py"):
        text = path.read_text()
        if "torchvision_mix::" in text:
            path.write_text(text.replace("torchvision_mix::", f"{name}::"))
    sys.path.insert(0, str(folder))
    _BASELINE, _BASELINE_SRC = importlib.import_module(name), src
    return _BASELINE


def baseline_label() -> str:
    """The baseline as the page names it: its git commit, else its folder's name (no path of this machine)."""
    if _BASELINE_SRC is None:
        return "another checkout"
    done = subprocess.run(
        ["git", "-C", _BASELINE_SRC, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    if done.returncode == 0 and done.stdout.strip():
        return f"commit {done.stdout.strip()}"
    return os.path.basename(os.path.abspath(os.path.join(_BASELINE_SRC, os.pardir)))


#: (contender, peer) pairs whose time ratio is reported beside each table.
PEER_RATIOS = [
    ("ours CutMix", "torchvision v2.CutMix"),
    ("ours CutMix inplace", "torchvision v2.CutMix"),
    ("ours CutMix per_sample", "torchvision v2.CutMix"),
    ("ours MixUp", "torchvision v2.MixUp"),
    ("ours MixUp per_sample", "torchvision v2.MixUp"),
    ("ours RandomMix recipe per_sample", "timm Mixup recipe elem + copy"),
    ("ours RandomMix recipe per_sample", "timm Mixup recipe batch + copy"),
    ("ours RandomMix recipe", "timm Mixup recipe batch + copy"),
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


def _loadavg() -> str:
    """The 1, 5 and 15 minute load averages (Linux), or "unknown"."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def time_case(
    dtype: str,
    batch: int,
    size: int,
    device: torch.device,
    rounds: int,
    warmup: int,
    names: tuple[str, ...] | None = None,
) -> dict[str, dict[str, Any]]:
    """Median time of every contender (or of ``names``), interleaved round by round."""
    x, y = _inputs(dtype, batch, size, device)
    fns = contenders(device, x.dtype, size)
    if names is not None:
        fns = {name: fns[name] for name in names}
    runnable = {name: make() for name, make in fns.items() if not isinstance(make, str)}
    times: dict[str, list[float]] = {name: [] for name in runnable}
    for _ in range(warmup):
        for name, fn in runnable.items():
            fn(x.clone() if _in_place(name) else x, y)
    order = list(runnable)
    shuffle = random.Random(0)
    for _ in range(rounds):  # interleaved: every contender once per round, in a new order each round
        shuffle.shuffle(order)
        for name in order:
            fn = runnable[name]
            arg = x.clone() if _in_place(name) else x  # a fresh copy, outside the timer
            _release_free_memory()
            _sync(device)
            start = time.perf_counter()
            fn(arg, y)
            _sync(device)
            times[name].append(time.perf_counter() - start)
            del arg
    base = statistics.median(times["torchvision v2.CutMix"]) if "torchvision v2.CutMix" in times else None
    results: dict[str, dict[str, Any]] = {}
    for name, make in fns.items():
        if isinstance(make, str):
            results[name] = {"skipped": make}
            continue
        median = statistics.median(times[name])
        results[name] = {
            "median_ms": median * 1e3,
            "images_per_s": batch / median,
            "ratio": None if base is None else median / base,
        }
    return results


def _peak_cuda(name: str, dtype: str, batch: int, size: int, device: torch.device) -> float:
    x, y = _inputs(dtype, batch, size, device)
    make = contenders(device, x.dtype, size)[name]
    assert not isinstance(make, str)
    fn = make()
    fn(x.clone() if _in_place(name) else x, y)
    arg = x.clone() if _in_place(name) else x
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    out = fn(arg, y)
    torch.cuda.synchronize(device)
    del out
    return float(torch.cuda.max_memory_allocated(device) - base)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _measure_one(name: str, dtype: str, batch: int, size: int) -> int:
    """The peak resident set over one call of ``name``, above the resident set just before it (bytes)."""
    device = torch.device("cpu")
    x, y = _inputs(dtype, batch, size, device)
    make = contenders(device, x.dtype, size)[name]
    assert not isinstance(make, str)
    fn = make()
    fn(x[:2].clone(), y[:2])  # load lazy code paths, touching little memory
    arg = x.clone() if _in_place(name) else x
    _release_free_memory()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident set
    before = _status_kib("VmRSS")
    out = fn(arg, y)
    peak = _status_kib("VmHWM")
    del out
    return (peak - before) * 1024


def _memory_child(dtype: str, batch: int, size: int, names: list[str], baseline: str | None = None) -> None:
    """A fresh process that forks one child per contender, each measuring one call (``_measure_one``).

    The parent only imports the libraries (importing once saves seconds per contender); every child
    builds its own inputs, so the parent never runs a parallel region before forking.
    """
    for module in ("torchvision_mix", "timm.data", "kornia.augmentation"):
        if _has(module.split(".")[0]):
            __import__(module)
    if baseline is not None:
        load_baseline(baseline)
    out: dict[str, int | None] = {}
    for name in names:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read)
            code = 1
            try:
                os.write(write, json.dumps(_measure_one(name, dtype, batch, size)).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read) as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        out[name] = int(data) if status == 0 and data else None
    print(json.dumps(out))


def peak_memory(names: list[str], dtype: str, batch: int, size: int, device: torch.device) -> dict[str, float | None]:
    """Peak extra memory of one call of each contender, in bytes (None where it could not be measured)."""
    if device.type == "cuda":
        return {name: _peak_cuda(name, dtype, batch, size, device) for name in names}
    cmd = [sys.executable, __file__, "--memory-child", json.dumps([dtype, batch, size, names, _BASELINE_SRC])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"memory measurement failed:\n{done.stderr}", file=sys.stderr)
        return dict.fromkeys(names)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: None if got.get(name) is None else float(got[name]) for name in names}


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


# --- goals ------------------------------------------------------------------------------------------

TV_CUTMIX = "torchvision v2.CutMix"
GOAL_BATCH, GOAL_SIZE = 64, 224  # the goals are read off the 64 x 3 x 224 x 224 cases


@dataclasses.dataclass(frozen=True)
class Goal:
    """``ours`` / ``peer`` time ratio <= ``bound``, or (``peer`` None) peak extra memory <= ``bound`` batches."""

    ours: str
    peer: str | None
    dtype: str
    bound: float
    source: str


GOALS = [
    Goal("ours FMix per_sample", TV_CUTMIX, "float32", 1.0, "issue 18"),
    Goal("ours FMix per_sample", TV_CUTMIX, "uint8", 1.0, "issue 18"),
    Goal("ours FMix", TV_CUTMIX, "uint8", 1.0, "issue 18"),
    Goal("ours GridMix", TV_CUTMIX, "uint8", 1.0, "issue 18"),
    Goal("ours GridMix per_sample", TV_CUTMIX, "uint8", 1.0, "issue 18"),
    Goal("ours CutMix per_sample", TV_CUTMIX, "uint8", 1.0, "issue 18"),
    Goal("ours SaliencyMix", TV_CUTMIX, "float32", 1.5, "issue 18"),
    Goal("ours SaliencyMix per_sample", TV_CUTMIX, "float32", 1.5, "issue 18"),
    Goal("ours SaliencyMix", TV_CUTMIX, "uint8", 1.5, "issue 18"),
    Goal("ours SaliencyMix per_sample", TV_CUTMIX, "uint8", 1.5, "issue 18"),
    Goal("ours RandomMix recipe per_sample", "timm Mixup recipe elem + copy", "float32", 0.5, "issue 18"),
    Goal("ours RandomMix recipe per_sample", "timm Mixup recipe batch + copy", "float32", 1.0, "issue 18"),
    Goal("ours MixUp", None, "uint8", 2.0, "issue 18"),
    Goal("ours MixUp per_sample", None, "uint8", 2.0, "issue 18"),
    Goal("ours RandomMix recipe per_sample", None, "uint8", 2.0, "issue 18"),
    Goal("ours CutMix", TV_CUTMIX, "float32", 0.8, "earlier"),
    Goal("ours CutMix", TV_CUTMIX, "uint8", 0.8, "earlier"),
    Goal("ours CutMix inplace", TV_CUTMIX, "float32", 0.35, "earlier"),
    Goal("ours CutMix inplace", TV_CUTMIX, "uint8", 0.35, "earlier"),
    Goal("ours CutMix per_sample", TV_CUTMIX, "float32", 1.0, "earlier"),
    Goal("ours AttentiveCutMix (precomputed)", TV_CUTMIX, "float32", 1.0, "earlier"),
    Goal("ours AttentiveCutMix (precomputed)", TV_CUTMIX, "uint8", 1.0, "earlier"),
    Goal("ours MixUp", "torchvision v2.MixUp", "float32", 0.6, "earlier"),
    Goal("ours MixUp per_sample", "torchvision v2.MixUp", "float32", 0.7, "earlier"),
    Goal("ours FMix", TV_CUTMIX, "float32", 1.0, "earlier"),
    Goal("ours GridMix", TV_CUTMIX, "float32", 1.0, "earlier"),
    Goal("ours GridMix per_sample", TV_CUTMIX, "float32", 1.0, "earlier"),
]


def evaluate_goals(cases: list[dict[str, Any]], goals: list[Goal] = GOALS) -> list[dict[str, Any]]:
    """Each goal with its measured value (a time ratio, or batches of memory) and ``met``/``missed``/``n/a``."""
    by_dtype = {c["dtype"]: c for c in cases if (c["batch"], c["size"]) == (GOAL_BATCH, GOAL_SIZE)}
    rows = []
    for goal in goals:
        row: dict[str, Any] = {"goal": goal, "value": None, "status": "n/a"}
        rows.append(row)
        case = by_dtype.get(goal.dtype)
        if case is None:
            row["why"] = f"the {goal.dtype} {GOAL_BATCH} x 3 x {GOAL_SIZE} x {GOAL_SIZE} case was not run"
            continue
        results = case["results"]
        ours = results.get(goal.ours, {})
        if goal.peer is None:
            peak = ours.get("peak_bytes")
            if peak is None:
                row["why"] = ours.get("skipped", "not measured")
                continue
            row["value"] = peak / float(case["batch_bytes"])
        else:
            peer = results.get(goal.peer, {})
            missing = next((r["skipped"] for r in (ours, peer) if "skipped" in r), None)
            if missing is not None or "median_ms" not in ours or "median_ms" not in peer:
                row["why"] = missing or "not timed"
                continue
            row["value"] = ours["median_ms"] / peer["median_ms"]
        row["status"] = "met" if row["value"] <= goal.bound else "missed"
        before = results.get(BEFORE + goal.ours, {})
        if goal.peer is None and before.get("peak_bytes") is not None:
            row["before"] = before["peak_bytes"] / float(case["batch_bytes"])
        elif goal.peer is not None and "median_ms" in before:
            row["before"] = before["median_ms"] / results[goal.peer]["median_ms"]
    return rows


def _rst_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """An RST simple table."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    rule = "  ".join("=" * w for w in widths)
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return [rule, fmt(header), rule, *(fmt(r) for r in rows), rule]


def render_goals(rows: list[dict[str, Any]]) -> list[str]:
    """The goals table; with a baseline's rows (``--baseline``), its value beside each goal's, as ``before``."""
    table = []
    with_before = any("before" in row for row in rows)
    for row in rows:
        goal = row["goal"]
        what = f"<= {goal.bound} batches peak extra memory" if goal.peer is None else f"<= {goal.bound}x {goal.peer}"
        unit = " batches" if goal.peer is None else "x"
        value = row["value"]
        if value is None:
            measured, status = "n/a", f"n/a ({row['why']})"
        else:
            measured = f"{value:.2f}{unit}"
            status = "met" if row["status"] == "met" else "**missed**"
        cells = [f"``{goal.ours}``", goal.dtype, what, measured, status, goal.source]
        if with_before:
            cells.insert(3, "n/a" if row.get("before") is None else f"{row['before']:.2f}{unit}")
        table.append(cells)
    met = sum(r["status"] == "met" for r in rows)
    missed = sum(r["status"] == "missed" for r in rows)
    head = [
        f"Goals ({GOAL_BATCH} x 3 x {GOAL_SIZE} x {GOAL_SIZE}; each time ratio is of medians measured in the same "
        f"rounds): {met} met, {missed} missed, {len(rows) - met - missed} not measured.",
        "",
    ]
    header = ["ours", "dtype", "goal", "measured", "met", "set in"]
    if with_before:
        head[0] += f" ``before``: the same goal measured in the same rounds on the baseline ({baseline_label()})."
        header.insert(3, "before")
    return head + _rst_table(header, table)


# --- scaling ----------------------------------------------------------------------------------------

SCALING_CONTENDERS = ("copy (floor)", "ours CutMix", "ours MixUp", "ours FMix", "ours RandomMix recipe per_sample")
SCALING_SIDES = (32, 64, 128, 224, 384)
SCALING_SIDE_BATCH = 64
SCALING_BATCHES = (32, 64, 128, 256, 512)
SCALING_BATCH_SIDE = 64
#: A per-pixel (side sweep) or per-image (batch sweep) cost this far from the reference point is called out.
SCALING_TOLERANCE = 1.5


def run_scaling(device: torch.device, rounds: int, warmup: int) -> dict[str, Any]:
    """Median ms per batch of the scaling contenders (float32) against the image side and the batch size."""
    sides, batches = {}, {}
    for side in SCALING_SIDES:
        print(f"scaling: batch {SCALING_SIDE_BATCH}, side {side}", flush=True)
        r = time_case("float32", SCALING_SIDE_BATCH, side, device, rounds, warmup, SCALING_CONTENDERS)
        sides[side] = {name: v["median_ms"] for name, v in r.items()}
    for batch in SCALING_BATCHES:
        print(f"scaling: batch {batch}, side {SCALING_BATCH_SIDE}", flush=True)
        r = time_case("float32", batch, SCALING_BATCH_SIDE, device, rounds, warmup, SCALING_CONTENDERS)
        batches[batch] = {name: v["median_ms"] for name, v in r.items()}
    ops = {dtype: {b: count_ops(dtype, b, OPS_SIDE) for b in OPS_BATCHES} for dtype in ("float32", "uint8")}
    return {"device": device.type, "rounds": rounds, "sides": sides, "batches": batches, "ops": ops}


#: Operator counts per call: at these two batch sizes (CPU, side OPS_SIDE), for every contender of ours and timm's.
OPS_BATCHES = (16, 256)
OPS_SIDE = 32
#: A count that grows more than this between the two batches is a per-sample loop.
OPS_GROWTH = 2.0


def count_ops(
    dtype: str, batch: int, size: int, calls: int = 3, names: tuple[str, ...] | None = None
) -> dict[str, int | None]:
    """The number of torch operators one call dispatches (median of ``calls``), per contender of ours and timm's.

    A vectorised path dispatches as many operators for 256 samples as for 16; a Python loop over the
    samples (timm's ``elem`` mode) dispatches more with every sample. Work done outside torch (numpy,
    plain Python) is not counted: the time per image at small images (the tables above) shows it.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            Counter.count += 1
            return func(*args, **(kwargs or {}))

    device = torch.device("cpu")
    x, y = _inputs(dtype, batch, size, device)
    fns = contenders(device, x.dtype, size)
    out: dict[str, int | None] = {}
    for name, make in fns.items():
        if isinstance(make, str) or not name.startswith(("ours", "timm")) or (names and name not in names):
            continue
        fn = make()
        counts = []
        try:
            for _ in range(calls):
                arg = x.clone() if _in_place(name) else x
                Counter.count = 0
                with Counter():
                    fn(arg, y)
                counts.append(Counter.count)
            out[name] = int(statistics.median(counts))
        except Exception:  # a contender that cannot run under a dispatch mode is reported as such
            out[name] = None
    return out


def ops_analysis(ops: dict[str, Any]) -> list[str]:
    """A line for every contender whose operator count grows with the batch (a per-sample loop)."""
    lines = []
    for dtype, by_batch in ops.items():
        counts = {int(b): c for b, c in by_batch.items()}
        small, large = min(counts), max(counts)
        for name, n_small in counts[small].items():
            n_large = counts[large].get(name)
            if n_small and n_large and n_large > OPS_GROWTH * n_small:
                # In proportion to the batch: a loop over the samples; less: a loop over blocks of them.
                per_sample = n_large / n_small >= large / small / 2
                what = "a Python loop over the samples" if per_sample else "a loop over blocks of samples, not each"
                lines.append(
                    f"{name} ({dtype}): {n_small} operators per call at batch {small}, {n_large} at batch {large}: "
                    f"{what}."
                )
    return lines


def _off_lines(name: str, what: str, unit: str, ms: dict[int, float], per_unit: dict[int, float]) -> list[str]:
    """Where ``per_unit`` (cost per pixel or per image) is off its value at the largest size by > the tolerance."""
    keys = sorted(ms)
    ref = keys[-1]
    whats = what + ("es" if what.endswith("h") else "s")
    off = {k: per_unit[k] / per_unit[ref] for k in keys}
    high = [k for k in keys if off[k] > SCALING_TOLERANCE]
    low = [k for k in keys if off[k] < 1 / SCALING_TOLERANCE]
    lines = []
    if high:
        where = ", ".join(f"{what} {k} costs x{off[k]:.1f}" for k in high)
        lines.append(
            f"{name}: per {unit}, {where} of {what} {ref}: one call at {what} {keys[0]} still takes "
            f"{ms[keys[0]]:.2f} ms, a cost per call that does not shrink with the {what} (Python, per-call set-up, "
            f"the label work), which the smaller {whats} do not amortise."
        )
    if low:
        where = ", ".join(f"{what} {k} costs x{off[k]:.2f}" for k in low)
        lines.append(
            f"{name}: per {unit}, {where} of {what} {ref}: the cost grows faster than the {unit}s towards the "
            f"larger {whats} (the batch and its temporaries outgrow the caches; more first-touch page faults)."
        )
    return lines


def scaling_analysis(data: dict[str, Any]) -> list[str]:
    """Lines saying where the cost is not linear in pixels / not flat per image in batch, against the largest size."""
    lines = []
    sides = {int(k): v for k, v in data["sides"].items()}
    batches = {int(k): v for k, v in data["batches"].items()}
    names = list(next(iter(sides.values()))) if sides else list(next(iter(batches.values()), {}))
    for name in names:
        if sides:
            ms = {s: sides[s][name] for s in sides}
            per_pixel = {s: ms[s] / (SCALING_SIDE_BATCH * s * s) for s in sides}
            lines += _off_lines(name, "side", "pixel", ms, per_pixel)
        if batches:
            ms = {b: batches[b][name] for b in batches}
            lines += _off_lines(name, "batch", "image", ms, {b: ms[b] / b for b in batches})
    return lines


def render_scaling(data: dict[str, Any]) -> str:
    sides = {int(k): v for k, v in data["sides"].items()}
    batches = {int(k): v for k, v in data["batches"].items()}
    names = list(next(iter(sides.values()))) if sides else list(next(iter(batches.values())))
    lines = [
        f"Machine: {machine()}. {data['device']}, float32, median of {data['rounds']} interleaved rounds. "
        f"Load average (1, 5, 15 min) before: {data['load_before']}, after: {data['load_after']}.",
        "",
        *load_warning(data["load_before"], data["load_after"]),
        ".. code-block:: text",
        "",
        f"   microseconds per image, batch {SCALING_SIDE_BATCH} x 3 x side x side "
        "(linear in pixels: x4 for each doubling of the side)",
        "",
        "   | contender | " + " | ".join(f"side {s}" for s in sides) + " |",
        "   |---|" + "---|" * len(sides),
    ]
    lines += [
        f"   | {n} | " + " | ".join(f"{sides[s][n] * 1e3 / SCALING_SIDE_BATCH:.1f}" for s in sides) + " |"
        for n in names
    ]
    lines += ["", "   nanoseconds per pixel, same runs (flat if linear in pixels)", ""]
    lines += ["   | contender | " + " | ".join(f"side {s}" for s in sides) + " |", "   |---|" + "---|" * len(sides)]
    lines += [
        f"   | {n} | " + " | ".join(f"{sides[s][n] * 1e6 / (SCALING_SIDE_BATCH * s * s):.2f}" for s in sides) + " |"
        for n in names
    ]
    lines += [
        "",
        f"   microseconds per image, batch x 3 x {SCALING_BATCH_SIDE} x {SCALING_BATCH_SIDE} (flat per image)",
        "",
    ]
    lines += [
        "   | contender | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "   |---|" + "---|" * len(batches),
    ]
    lines += [f"   | {n} | " + " | ".join(f"{batches[b][n] * 1e3 / b:.1f}" for b in batches) + " |" for n in names]
    analysis = scaling_analysis(data)
    lines += [
        "",
        f"Where the cost is off by more than x{SCALING_TOLERANCE:g} from linear (per pixel, or per image, against "
        "the largest side or batch):",
        "",
    ]
    lines += [f"* {line}" for line in analysis] or ["* nowhere: linear in pixels and flat per image throughout."]
    if data.get("ops"):
        ops = {dtype: {int(b): c for b, c in by_batch.items()} for dtype, by_batch in data["ops"].items()}
        columns = [(dtype, b) for dtype, by_batch in ops.items() for b in sorted(by_batch)]
        names = list(dict.fromkeys(n for dtype, b in columns for n in ops[dtype][b]))
        lines += [
            "",
            f"Torch operators dispatched by one call (median of 3 calls; CPU, side {OPS_SIDE}): the same count for "
            "any batch size means no per-sample loop over torch operators.",
            "",
            ".. code-block:: text",
            "",
            "   | contender | " + " | ".join(f"{dtype} batch {b}" for dtype, b in columns) + " |",
            "   |---|" + "---|" * len(columns),
        ]
        cell = lambda c: "n/a" if c is None else str(c)  # noqa: E731
        lines += [f"   | {n} | " + " | ".join(cell(ops[d][b].get(n)) for d, b in columns) + " |" for n in names]
        growth = ops_analysis(data["ops"])
        lines += ["", f"Operator counts that grow more than x{OPS_GROWTH:g} with the batch:", ""]
        lines += [f"* {line}" for line in growth] or ["* none."]
    return "\n".join(lines)


# --- the page ---------------------------------------------------------------------------------------


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


def render_tables(cases: list[dict[str, Any]], extractor: list[tuple[str, int, str, float]]) -> list[str]:
    lines: list[str] = []
    for case in cases:
        results = case["results"]
        lines += [
            case["title"],
            "",
            "| contender | median ms | images/s | × torchvision | peak extra memory |",
            "|---|---|---|---|---|",
        ]
        for name, r in results.items():
            if "skipped" in r:
                lines.append(f"| {name} | n/a | n/a | n/a | {r['skipped']} |")
                continue
            mem = r.get("peak_bytes")
            mem_s = "n/a" if mem is None else f"{mem / 2**20:.1f} MiB ({mem / float(case['batch_bytes']):.2f} batches)"
            ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
            lines.append(f"| {name} | {r['median_ms']:.2f} | {r['images_per_s']:,.0f} | {ratio} | {mem_s} |")
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
    return lines


def load_warning(*loads: str) -> list[str]:
    """A warning paragraph when the 1-minute load average reached the number of cores (else nothing)."""
    cores = os.cpu_count() or 1
    ones = [float(load.split()[0]) for load in loads if load != "unknown"]
    if not ones or max(ones) < cores:
        return []
    return [
        f"**Loaded machine** (1-minute load average up to {max(ones):g} on {cores} cores): every time is inflated, "
        "and most the per-sample Python loops (timm's ``elem`` mode), whose hundreds of small multi-threaded "
        "operations each wait for a descheduled thread; rerun on an idle machine (or with ``--threads 1``).",
        "",
    ]


def render_device(section: dict[str, Any], extractor: list[tuple[str, int, str, float]]) -> str:
    """One device's section of the page: machine and load, the goals table, the full tables."""
    lines = [
        f"Machine: {machine()}. Median of {section['rounds']} interleaved rounds. "
        f"Load average (1, 5, 15 min) before: {section['load_before']}, after: {section['load_after']}.",
        "",
        *load_warning(section["load_before"], section["load_after"]),
    ]
    lines += render_goals(evaluate_goals(section["cases"]))
    block = render_tables(section["cases"], extractor)
    lines += ["", ".. code-block:: text", ""] + ["   " + line if line else "" for line in block]
    return "\n".join(lines).rstrip()


def write_sections(path: str, sections: dict[str, str]) -> None:
    """Replace the text between ``.. begin-NAME`` and ``.. end-NAME`` for every NAME in ``sections``."""
    with open(path) as f:
        text = f.read()
    for name, body in sections.items():
        begin, end = f".. begin-{name}", f".. end-{name}"
        if text.count(begin) != 1 or text.count(end) != 1:
            raise SystemExit(f"{path}: needs exactly one '{begin}' line and one '{end}' line")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n\n{body}\n\n{end}{tail}"
    with open(path, "w") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", action="append", help="cpu and/or cuda (default: cpu, plus cuda if present)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--quick", action="store_true", help="one small case, 3 rounds (a smoke test)")
    parser.add_argument(
        "--case", action="append", metavar="DTYPE:BATCH:SIZE", help="only these cases, e.g. float32:64:224 (repeatable)"
    )
    parser.add_argument(
        "--extractor-batch", type=int, default=8, help="batch for timing the ResNet-50 extractor (0: skip)"
    )
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="only these contenders (repeatable; the goals need theirs)"
    )
    parser.add_argument("--scaling", action="store_true", help="also the scaling table (CPU, float32)")
    parser.add_argument("--scaling-only", action="store_true", help="only the scaling table")
    parser.add_argument("--scaling-rounds", type=int, default=7)
    parser.add_argument("--write", help="write the sections measured into this .rst file (between the marker lines)")
    parser.add_argument("--json", help="write every number measured into this JSON file")
    parser.add_argument(
        "--baseline", metavar="SRC", help="also time the mixes of another checkout's src folder, in the same rounds"
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(*json.loads(args.memory_child))
        return 0
    if args.baseline:
        load_baseline(args.baseline)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    cases = [("float32", 8, 64)] if args.quick else CASES
    if args.case:
        cases = [(d, int(b), int(n)) for d, b, n in (c.split(":") for c in args.case)]
    rounds = 3 if args.quick else args.rounds
    started = time.perf_counter()
    report: dict[str, Any] = {"machine": machine(), "devices": {}}
    sections: dict[str, str] = {}
    extractor: list[tuple[str, int, str, float]] = []
    for dev in [] if args.scaling_only else devices:
        device = torch.device(dev)
        section: dict[str, Any] = {"rounds": rounds, "load_before": _loadavg(), "cases": []}
        for dtype, batch, size in cases:
            title = f"**{dev}, {dtype}, batch {batch} x 3 x {size} x {size}**"
            print(title, flush=True)
            only = None if args.only is None else tuple(dict.fromkeys([TV_CUTMIX, *args.only]))
            if only is not None and _BASELINE is not None:  # each of ours with its baseline
                only += tuple(BEFORE + name for name in only if name.startswith("ours "))
            results = time_case(dtype, batch, size, device, rounds, args.warmup, only)
            batch_bytes = batch * 3 * size * size * (4 if dtype == "float32" else 1)
            if not args.no_memory:
                names = [name for name, r in results.items() if "skipped" not in r]
                for name, peak in peak_memory(names, dtype, batch, size, device).items():
                    results[name]["peak_bytes"] = peak
            section["cases"].append(
                {
                    "title": title,
                    "dtype": dtype,
                    "batch": batch,
                    "size": size,
                    "batch_bytes": batch_bytes,
                    "results": results,
                }
            )
        dev_extractor: list[tuple[str, int, str, float]] = []
        if args.extractor_batch > 0 and not args.quick:
            extractor_rounds = 3 if dev == "cuda" else 1  # a CPU forward takes seconds
            for name, ms in extractor_costs(device, args.extractor_batch, extractor_rounds):
                dev_extractor.append((dev, args.extractor_batch, name, ms))
        section["load_after"] = _loadavg()
        section["goals"] = [
            {**{k: v for k, v in row.items() if k != "goal"}, **dataclasses.asdict(row["goal"])}
            for row in evaluate_goals(section["cases"])
        ]
        section["extractor"] = dev_extractor
        extractor += dev_extractor
        report["devices"][dev] = section
        sections[f"results-{dev}"] = render_device(section, dev_extractor)
        print(sections[f"results-{dev}"], flush=True)
    if args.scaling or args.scaling_only:
        load_before = _loadavg()
        scaling = run_scaling(torch.device("cpu"), args.scaling_rounds, 1)
        scaling.update(load_before=load_before, load_after=_loadavg())
        report["scaling"] = scaling
        sections["scaling"] = render_scaling(scaling)
        print(sections["scaling"], flush=True)
    report["seconds"] = time.perf_counter() - started
    print(f"done in {report['seconds']:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.write:
        write_sections(args.write, sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
