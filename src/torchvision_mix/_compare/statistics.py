"""Paired statistics: each method's mean ± std and its mean difference to no mixing with a t interval."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .data import CommandError
from .methods import PAPER_CIFAR10_RESNET18, PAPER_TOP_K
from .training import Report


def t_quantile(level: float, df: int) -> float:
    """The t with P(|T| <= t) = ``level`` (two-sided): 2.776 for a 95 % interval with 4 degrees of freedom."""
    if df < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need df >= 1 and 0 < level < 1, got df={df}, level={level}")
    try:
        from scipy.stats import t
    except ImportError:
        raise CommandError('the intervals need scipy: pip install "torchvision-mix[demo]"') from None
    return float(t.ppf(0.5 + level / 2.0, df))


def mean_interval(values: Sequence[float], level: float = 0.95) -> float | None:
    """Half-width of the t interval of the mean of ``values`` (None for fewer than 2)."""
    if len(values) < 2:
        return None
    return t_quantile(level, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def paired_difference(values: Sequence[float], baseline: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean of ``values[i] - baseline[i]`` over the paired seeds, and the half-width of its t interval."""
    if len(values) != len(baseline) or len(values) < 2:
        raise ValueError("a paired interval needs the same seeds on both sides, at least 2")
    diffs = [a - b for a, b in zip(values, baseline, strict=True)]
    half = t_quantile(level, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return statistics.fmean(diffs), half


@dataclass
class Row:
    key: str
    title: str
    epochs: int
    mean: float
    std: float | None
    n: int
    seconds: float  # mean wall time of one training run
    diff: float | None = None  # mean difference to no mixing over the paired seeds (points)
    half: float | None = None  # half-width of its 95 % t interval
    paper: float | None = None  # the paper's CIFAR-10 ResNet-18 accuracy for this method
    mean_half: float | None = None  # half-width of the 95 % t interval of the mean accuracy


def summarize(report: Report, epochs: int | None = None) -> list[Row]:
    """The table of one budget (the first by default)."""
    budget = report.epochs[0] if epochs is None else epochs
    base = report.accuracies("none", budget) if any(a.key == "none" for a in report.arms) else None
    rows = []
    for arm in report.arms:
        accs = report.accuracies(arm.key, budget)
        if not accs:
            continue
        std = statistics.stdev(accs) if len(accs) > 1 else None
        seconds = statistics.fmean(report.seconds_of(arm.key, budget))
        row = Row(arm.key, arm.title, budget, statistics.fmean(accs), std, len(accs), seconds)
        row.mean_half = mean_interval(accs)
        if base is not None and arm.key != "none" and len(accs) > 1 and len(base) == len(accs):
            row.diff, row.half = paired_difference(accs, base)
        if arm.method in PAPER_CIFAR10_RESNET18 and (arm.method != "attentive" or arm.top_k == PAPER_TOP_K):
            row.paper = PAPER_CIFAR10_RESNET18[arm.method]
        rows.append(row)
    return rows
