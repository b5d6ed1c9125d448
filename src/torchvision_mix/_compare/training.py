"""Settings, the networks, one training run, and the runs of a comparison in worker processes.

Every training is a :class:`Job` fixed by its method, budget (epochs) and seed; its result does not
depend on which process runs it or when, so ``--jobs 1`` and ``--jobs N`` give identical results.
The extractor of Attentive CutMix is a job too (no mixing, seed :data:`EXTRACTOR_SEED`, one per
budget); the jobs that need it start when it is done, and get its weights.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import math
import multiprocessing
import os
import queue
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .data import CommandError, Data
from .methods import ATTENTIVE, DEFAULT_METHODS, METHODS, LinearSchedule, MixContext, build_mix

EXTRACTOR_SEED = 12_345
DEFAULT_SEEDS = 3  # the default run's paired seeds (docs/comparison.rst: chosen to fit 7 minutes)


@dataclass
class Settings:
    dataset: str = "digits"
    model: str = "small"
    epochs: tuple[int, ...] = (30,)  # more than one: a budget sweep
    batch_size: int = 64
    seeds: int = DEFAULT_SEEDS
    lr: float = 0.05
    device: str = "cpu"
    threads: int = 1  # torch threads per job
    jobs: int = 1  # worker processes
    grid_size: int = 7
    top_k: tuple[int, ...] = (6,)  # more than one: a sweep over N
    alpha: float = 1.0
    image_size: int = 28
    methods: tuple[str, ...] = DEFAULT_METHODS
    augment: bool = False  # random 4-pixel shifts and horizontal flips (CIFAR-10 and folders)
    out: str = "torchvision-mix-report"
    section: str = "main"  # the generated part of the docs page that --write replaces

    @property
    def sweep(self) -> bool:
        return len(self.top_k) > 1

    @property
    def budgets(self) -> bool:
        return len(self.epochs) > 1


DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"model": "small", "epochs": (100,), "batch_size": 64, "lr": 0.05, "image_size": 28, "augment": False},
    "cifar10": {"model": "resnet18", "epochs": (30,), "batch_size": 128, "lr": 0.1, "image_size": 32, "augment": True},
    "folder": {"model": "resnet18", "epochs": (30,), "batch_size": 64, "lr": 0.05, "image_size": 32, "augment": True},
}


@dataclass(frozen=True)
class Arm:
    """One row of the table: a method, and for Attentive CutMix its number of cells."""

    key: str
    method: str
    title: str
    top_k: int


def arms_of(settings: Settings) -> list[Arm]:
    arms = []
    for method in settings.methods:
        title = METHODS[method][0]
        if method in ATTENTIVE and settings.sweep:
            arms += [Arm(f"{method}-k{k}", method, f"{title}, N = {k}", k) for k in settings.top_k]
        else:
            arms.append(Arm(method, method, title, settings.top_k[0]))
    return arms


def check_settings(settings: Settings) -> None:
    """Settings that are impossible whatever the data; checked before anything is loaded."""
    cells = settings.grid_size**2
    outside = [k for k in settings.top_k if not 1 <= k <= cells]
    if outside:
        raise CommandError(
            f"--top-k {outside[0]} is outside [1, {cells}], the {settings.grid_size}x{settings.grid_size} grid's cells"
        )
    if settings.grid_size > settings.image_size:
        raise CommandError(f"--grid-size {settings.grid_size} is larger than the images ({settings.image_size}px)")
    if settings.sweep and not any(m in ATTENTIVE for m in settings.methods):
        raise CommandError("a list of --top-k values sweeps Attentive CutMix: add attentive to --methods")
    if settings.sweep and settings.budgets:
        raise CommandError("sweep either --top-k or --epochs, not both at once")


# ------------------------------------------------------------------------------------------------
# Models and one training run
# ------------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Three conv stages (28x28 in → a 7x7 final feature map, like a ResNet's at 224), then a linear head."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *stage(in_channels, 16), nn.MaxPool2d(2), *stage(16, 32), nn.MaxPool2d(2), *stage(32, 64)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.features(x))
        return out


def build_model(name: str, in_channels: int, num_classes: int, seed: int) -> nn.Module:
    """The network for ``seed``: the same initial weights for every method given this seed."""
    torch.manual_seed(seed)
    if name == "small":
        return SmallCNN(in_channels, num_classes)
    from torchvision.models import resnet18

    # torchvision's ResNet-18 with the usual small-image stem (a 3x3 stride-1 conv, no max-pool).
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def trunk(model: nn.Module) -> nn.Module:
    """The convolutional part of a trained model: the feature extractor for Attentive CutMix."""
    if isinstance(model, SmallCNN):
        return model.features
    m: Any = model
    return nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)


def fingerprint(tensors: Sequence[Tensor]) -> str:
    """SHA-256 (12 hex digits) of the tensors' bytes: equal fingerprints, equal tensors."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def shift_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Per sample: a random shift of up to 4 pixels (zero padding) and a horizontal flip with p=0.5."""
    b, _, h, w = x.shape
    pad = 4
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass
class Trained:
    model: nn.Module
    init: str  # fingerprint of the initial weights
    order: str  # fingerprint of the data order (every epoch's permutation)
    loss: float  # mean training loss of the last epoch


def train(
    data: Data, settings: Settings, epochs: int, seed: int, mix: Any, tick: Callable[[], None] | None = None
) -> Trained:
    """Train ``epochs`` epochs from ``seed``'s initial weights, in ``seed``'s data order, mixing with
    ``mix`` (or not); ``tick`` is called after every epoch."""
    device = torch.device(settings.device)
    model = build_model(settings.model, data.train_x.shape[1], data.num_classes, seed).to(device)
    init = fingerprint(list(model.state_dict().values()))
    steps_per_epoch = math.ceil(len(data.train_y) / settings.batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=epochs * steps_per_epoch)
    order_gen = torch.Generator().manual_seed(seed)
    order_digest = hashlib.sha256()
    x_all, y_all = data.train_x.to(device), data.train_y.to(device)
    loss_sum = torch.zeros((), device=device)
    for epoch in range(epochs):
        if isinstance(mix, LinearSchedule):
            mix.set_epoch(epoch, epochs)
        model.train()
        order = torch.randperm(len(y_all), generator=order_gen)
        order_digest.update(order.numpy().tobytes())
        order = order.to(device)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, len(order), settings.batch_size):
            index = order[start : start + settings.batch_size]
            x, y = x_all[index], y_all[index]
            if settings.augment:
                x = shift_flip(x, order_gen)
            if mix is not None and len(index) > 1:
                x, y = mix(x, y)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach() * len(index)
        if tick is not None:
            tick()
    return Trained(model, init, order_digest.hexdigest()[:12], float(loss_sum) / len(y_all))


@torch.no_grad()
def accuracy(model: nn.Module, data: Data, device: str) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(data.test_y), 512):
        x = data.test_x[start : start + 512].to(device)
        y = data.test_y[start : start + 512].to(device)
        correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / len(data.test_y)


def mix_context(settings: Settings, arm: Arm, num_classes: int, extractor: Any, seed: int) -> MixContext:
    return MixContext(
        num_classes=num_classes,
        generator=torch.Generator().manual_seed(10_000 + seed),
        extractor=extractor,
        alpha=settings.alpha,
        grid_size=settings.grid_size,
        top_k=arm.top_k,
        image_size=settings.image_size,
        extractor_stride=4 if settings.model == "small" else 8,
    )


# ------------------------------------------------------------------------------------------------
# Jobs: one training each, in this process or in worker processes
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    arm: Arm | None  # None: the extractor (no mixing, EXTRACTOR_SEED)
    epochs: int
    seed: int

    @property
    def label(self) -> str:
        name = "extractor" if self.arm is None else f"{self.arm.title} seed {self.seed}"
        return f"{name}, {self.epochs} epochs"


@dataclass
class Done:
    """What a job sends back: plain values and CPU tensors only (it crosses processes)."""

    job: Job
    accuracy: float
    loss: float
    init: str
    order: str
    seconds: float
    weights: dict[str, Tensor] | None = None  # the extractor's trained network


def extractor_from(settings: Settings, data: Data, weights: dict[str, Tensor]) -> nn.Module:
    model = build_model(settings.model, data.train_x.shape[1], data.num_classes, EXTRACTOR_SEED)
    model.load_state_dict(weights)
    return trunk(model.to(settings.device)).eval().requires_grad_(False)


def run_job(
    data: Data, settings: Settings, job: Job, weights: dict[str, Tensor] | None, tick: Callable[[], None] | None
) -> Done:
    """One training and its test accuracy; ``weights`` are the extractor's, for the jobs that need it."""
    began = time.perf_counter()
    if job.arm is None:
        trained = train(data, settings, job.epochs, EXTRACTOR_SEED, None, tick)
        acc = accuracy(trained.model, data, settings.device)
        state = {k: v.detach().cpu().clone() for k, v in trained.model.state_dict().items()}
        return Done(job, acc, trained.loss, trained.init, trained.order, time.perf_counter() - began, state)
    extractor = extractor_from(settings, data, weights) if weights is not None else None
    mix = build_mix(job.arm.method, mix_context(settings, job.arm, data.num_classes, extractor, job.seed))
    trained = train(data, settings, job.epochs, job.seed, mix, tick)
    acc = accuracy(trained.model, data, settings.device)
    return Done(job, acc, trained.loss, trained.init, trained.order, time.perf_counter() - began)


def setup_process(settings: Settings) -> None:
    """The same torch settings in every process that trains (so every job runs alike)."""
    torch.set_num_threads(settings.threads)
    if settings.device.startswith("cuda"):
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


_WORKER: dict[str, Any] = {}


def _worker_init(data: Data, settings: Settings, ticks: Any) -> None:
    setup_process(settings)
    _WORKER.update(data=data, settings=settings, ticks=ticks)


def _worker_run(job: Job, weights: dict[str, Tensor] | None) -> Done:
    ticks = _WORKER["ticks"]
    return run_job(_WORKER["data"], _WORKER["settings"], job, weights, lambda: ticks.put(1))


class Progress:
    """A one-line progress bar over all jobs' epochs on stderr, with an ETA (no dependency)."""

    def __init__(self, total: int, jobs: int) -> None:
        self.total, self.done, self.start = max(1, total), 0, time.perf_counter()
        self.jobs, self.finished, self.of = jobs, 0, 0
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def step(self, epochs: int = 1) -> None:
        self.done += epochs
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        width = 24
        filled = int(width * self.done / self.total)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} epochs, "
            f"{self.finished}/{self.of} trainings, {self.jobs} jobs  elapsed {elapsed:4.0f}s  eta {eta:4.0f}s"
        )
        if self.tty:
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
        else:
            twentieth = 20 * self.done // self.total
            if twentieth != self.shown:
                self.shown = twentieth
                print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


@dataclass
class Run:
    arm: Arm
    epochs: int
    seed: int
    accuracy: float
    loss: float
    init: str
    order: str
    seconds: float


@dataclass
class Extractor:
    epochs: int
    accuracy: float
    seconds: float
    model: nn.Module | None = None


@dataclass
class Report:
    arms: list[Arm]
    runs: list[Run]
    epochs: tuple[int, ...] = (30,)
    seeds: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's and its workers' CPU time
    jobs: int = 1
    extractors: dict[int, Extractor] = field(default_factory=dict)

    def accuracies(self, key: str, epochs: int) -> list[float]:
        return [r.accuracy for r in sorted(self.runs, key=lambda r: r.seed) if r.arm.key == key and r.epochs == epochs]

    def seconds_of(self, key: str, epochs: int) -> list[float]:
        return [r.seconds for r in self.runs if r.arm.key == key and r.epochs == epochs]


def plan(settings: Settings) -> list[Job]:
    """Every job, the longest first (the extractors before all)."""
    arms = arms_of(settings)
    jobs = [Job(None, e, EXTRACTOR_SEED) for e in settings.epochs if any(m in ATTENTIVE for m in settings.methods)]
    runs = [Job(arm, e, s) for e in settings.epochs for s in range(settings.seeds) for arm in arms]
    return sorted(jobs, key=lambda j: -j.epochs) + sorted(runs, key=lambda j: -j.epochs)


def _children_cpu() -> float:
    try:
        usage = os.times()
        return usage.children_user + usage.children_system
    except OSError:  # pragma: no cover
        return 0.0


def run_compare(data: Data, settings: Settings) -> Report:
    """Train every arm at every budget on every seed, in ``settings.jobs`` processes."""
    check_settings(settings)
    h, w = data.train_x.shape[-2:]
    if settings.grid_size > min(h, w):
        raise CommandError(f"--grid-size {settings.grid_size} is larger than the images ({h}x{w})")
    if len(data.train_y) < 2 or len(data.test_y) < 1:
        raise CommandError("the dataset is empty or too small to train and test on")
    jobs = plan(settings)
    n_workers = max(1, min(settings.jobs, len(jobs)))
    progress = Progress(sum(j.epochs for j in jobs), n_workers)
    progress.of = len(jobs)
    start, cpu_start, children_start = time.perf_counter(), time.process_time(), _children_cpu()
    done = (
        _run_in_process(data, settings, jobs, progress)
        if n_workers == 1
        else _run_in_pool(data, settings, jobs, progress, n_workers)
    )
    progress.close()
    report = Report(arms_of(settings), [], settings.epochs, settings.seeds, jobs=n_workers)
    order = {job: i for i, job in enumerate(j for j in _table_order(settings))}
    for d in sorted(done, key=lambda d: order[d.job]):
        if d.job.arm is None:
            model = extractor_from(settings, data, d.weights) if d.weights is not None else None
            report.extractors[d.job.epochs] = Extractor(d.job.epochs, d.accuracy, d.seconds, model)
        else:
            # Seconds kept at the CSV's precision, so that tables made now and from the CSV agree.
            seconds = round(d.seconds, 2)
            report.runs.append(Run(d.job.arm, d.job.epochs, d.job.seed, d.accuracy, d.loss, d.init, d.order, seconds))
    report.seconds = time.perf_counter() - start
    report.cpu_seconds = time.process_time() - cpu_start + _children_cpu() - children_start
    return report


def _table_order(settings: Settings) -> list[Job]:
    """The order of the CSV: budget, seed, arm (whatever order the jobs finished in)."""
    arms = arms_of(settings)
    extractors = [Job(None, e, EXTRACTOR_SEED) for e in settings.epochs]
    return extractors + [Job(arm, e, s) for e in settings.epochs for s in range(settings.seeds) for arm in arms]


def _run_in_process(data: Data, settings: Settings, jobs: list[Job], progress: Progress) -> list[Done]:
    setup_process(settings)
    weights: dict[int, dict[str, Tensor]] = {}
    done = []
    for job in jobs:  # the extractors come first
        needs = job.arm is not None and job.arm.method in ATTENTIVE
        result = run_job(data, settings, job, weights[job.epochs] if needs else None, progress.step)
        if result.weights is not None:
            weights[job.epochs] = result.weights
        progress.finished += 1
        done.append(result)
    return done


def _run_in_pool(data: Data, settings: Settings, jobs: list[Job], progress: Progress, workers: int) -> list[Done]:
    context = multiprocessing.get_context("spawn")
    ticks = context.Queue()
    weights: dict[int, dict[str, Tensor]] = {}
    waiting = [j for j in jobs if j.arm is not None and j.arm.method in ATTENTIVE]  # for their extractor
    ready = [j for j in jobs if j not in waiting]
    done: list[Done] = []
    with futures.ProcessPoolExecutor(workers, context, _worker_init, (data, settings, ticks)) as pool:
        pending: dict[futures.Future[Done], Job] = {}
        try:
            while ready or waiting or pending:
                for job in ready:
                    needs = job.arm is not None and job.arm.method in ATTENTIVE
                    pending[pool.submit(_worker_run, job, weights[job.epochs] if needs else None)] = job
                ready = []
                finished, _ = futures.wait(list(pending), timeout=0.5, return_when=futures.FIRST_COMPLETED)
                _drain(ticks, progress)
                for future in finished:
                    del pending[future]
                    result = future.result()
                    progress.finished += 1
                    done.append(result)
                    if result.weights is not None:
                        weights[result.job.epochs] = result.weights
                        ready += [j for j in waiting if j.epochs == result.job.epochs]
                        waiting = [j for j in waiting if j.epochs != result.job.epochs]
                if not pending and not ready and waiting:  # pragma: no cover - an extractor job failed
                    raise RuntimeError("the extractor's training did not return its weights")
        except BaseException:  # an error or Ctrl-C: stop the workers too
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    _drain(ticks, progress)
    return done


def _drain(ticks: Any, progress: Progress) -> None:
    while True:
        try:
            ticks.get_nowait()
        except queue.Empty:
            return
        progress.step()
