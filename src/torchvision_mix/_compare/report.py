"""The report: tables (terminal, results.md, the docs' generated files), the runs' CSV and figures."""

from __future__ import annotations

import csv
import os
import platform
import re
import shutil
import statistics
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .data import CommandError, Data
from .methods import ATTENTIVE, PAPER_CIFAR10_RESNET18, PAPER_TOP_K, LinearSchedule, build_mix
from .statistics import Row, summarize
from .training import EXTRACTOR_SEED, Arm, Report, Run, Settings, mix_context

ONE_SEED = "one seed: the 95 % intervals need at least two paired seeds (--seeds 2 or more), so none are given"

HEADER = (
    "method",
    "test accuracy (%), mean ± std",
    "vs no mixing (points), mean [95 % CI]",
    "time per run (s)",
    "paper, CIFAR-10 ResNet-18 (%) (vs no mixing)",
)


def _acc(row: Row) -> str:
    return f"{row.mean:.2f}" + ("" if row.std is None else f" ± {row.std:.2f}")


def _diff(row: Row) -> str:
    if row.diff is None or row.half is None:
        return "—"
    return f"{row.diff:+.2f} [{row.diff - row.half:+.2f}, {row.diff + row.half:+.2f}]"


def _paper(row: Row) -> str:
    if row.paper is None:
        return "—"
    base = PAPER_CIFAR10_RESNET18["none"]
    return f"{row.paper:.2f}" + ("" if row.key == "none" else f" ({row.paper - base:+.2f})")


def cells(row: Row) -> tuple[str, ...]:
    return (row.title, _acc(row), _diff(row), f"{row.seconds:.1f}", _paper(row))


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def rst_table(rows: list[Row], caption: str) -> str:
    lines = [f".. list-table:: {caption}", "   :header-rows: 1", ""]
    for row in [HEADER, *[cells(r) for r in rows]]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines)


def tables(report: Report) -> list[tuple[int, list[Row]]]:
    """One table per budget."""
    return [(e, summarize(report, e)) for e in report.epochs]


# ------------------------------------------------------------------------------------------------
# Words
# ------------------------------------------------------------------------------------------------


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    cpu = names[0] if names else (platform.processor() or platform.machine())
    return f"{cpu} ({os.cpu_count()} cores)"


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        return None


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


@dataclass
class Load:
    """The machine's 1-minute load average when the trainings started and ended."""

    start: float | None = None
    end: float | None = None

    def __str__(self) -> str:
        if self.start is None or self.end is None:
            return ""
        return f"; load average {self.start:.2f} at the start, {self.end:.2f} at the end"


def describe(data: Data, settings: Settings, report: Report, command: str, load: Load | None = None) -> dict[str, str]:
    """The sentences shared by the terminal, results.md and the docs."""
    import torchvision

    where = settings.device if settings.device != "cpu" else f"CPU, {machine()}"
    model = "a 3-stage CNN" if settings.model == "small" else "torchvision's ResNet-18 (3x3 stem, no max-pool)"
    per_run = statistics.fmean(r.seconds for r in report.runs) if report.runs else 0.0
    budgets = (
        f"{len(report.epochs)} budgets ({', '.join(map(str, report.epochs))} epochs)"
        if len(report.epochs) > 1
        else f"{report.epochs[0]} epochs"
    )
    kind = "settings" if settings.sweep else "methods"
    out = {
        "command": command,
        "run": (
            f"{len(report.arms)} {kind} x {report.seeds} paired seeds x {budgets}; "
            f"{duration(report.seconds)} in all ({per_run:.1f} s per training run; CPU time "
            f"{duration(report.cpu_seconds)}) on {where}, {report.jobs} worker process"
            f"{'es' if report.jobs > 1 else ''} of {settings.threads} torch thread{'s' if settings.threads > 1 else ''}"
            f"{load or ''}; torch {torch.__version__}, torchvision {torchvision.__version__}"
        ),
        "data": (
            f"{data.name}: {data.description}; {len(data.train_y)} training and {len(data.test_y)} test images, "
            f"{data.num_classes} classes"
        ),
        "training": (
            f"{model}, batch {settings.batch_size}, SGD (Nesterov, momentum 0.9, weight decay 5e-4), one-cycle "
            f"learning rate up to {settings.lr}"
            + (", random 4-pixel shifts and flips" if settings.augment else "")
            + f"; alpha {settings.alpha} for MixUp and CutMix; Attentive CutMix: grid {settings.grid_size}"
            + (f", N = {settings.top_k[0]} cells" if not settings.sweep else ", N swept")
        ),
    }
    if report.extractors:
        each = ", ".join(
            f"{x.accuracy:.2f} % test accuracy at {e} epochs ({duration(x.seconds)})"
            for e, x in sorted(report.extractors.items())
        )
        out["extractor"] = f"the same network trained without mixing (seed {EXTRACTOR_SEED}): {each}"
    if report.seeds < 2:
        out["note"] = ONE_SEED
    return out


# ------------------------------------------------------------------------------------------------
# The runs' CSV
# ------------------------------------------------------------------------------------------------

CSV_COLUMNS = ("method", "title", "top_k", "epochs", "seed", "test_accuracy", "final_train_loss", "init", "order")
TIME_COLUMNS = ("seconds",)  # machine-time dependent: the only columns that differ between equal runs


def write_csv(path: str, report: Report) -> None:
    """One line per run; only :data:`TIME_COLUMNS` depend on the machine's speed."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*CSV_COLUMNS, *TIME_COLUMNS])
        for r in report.runs:
            top_k = r.arm.top_k if r.arm.method in ATTENTIVE else ""
            compared = [r.arm.key, r.arm.title, top_k, r.epochs, r.seed, repr(r.accuracy), repr(r.loss), r.init]
            writer.writerow([*compared, r.order, f"{r.seconds:.2f}"])


def read_csv(path: str) -> Report:
    """The runs of a ``results.csv`` (for recomputing its tables)."""
    arms: dict[str, Arm] = {}
    runs = []
    with open(path, newline="") as f:
        for line in csv.DictReader(f):
            key = line["method"]
            method = re.sub(r"-k\d+$", "", key)
            arm = arms.setdefault(key, Arm(key, method, line["title"], int(line["top_k"] or PAPER_TOP_K)))
            runs.append(
                Run(
                    arm,
                    int(line["epochs"]),
                    int(line["seed"]),
                    float(line["test_accuracy"]),
                    float(line["final_train_loss"]),
                    line["init"],
                    line["order"],
                    float(line["seconds"]),
                )
            )
    epochs = tuple(sorted({r.epochs for r in runs}))
    return Report(list(arms.values()), runs, epochs, len({r.seed for r in runs}))


# ------------------------------------------------------------------------------------------------
# results.md and the docs' generated files
# ------------------------------------------------------------------------------------------------


def section(settings: Settings, methods_text: str | None) -> str:
    """Which generated part of the docs page a run regenerates."""
    if settings.sweep:
        return "top-k"
    if settings.budgets:
        return "budgets"
    if methods_text is not None and methods_text.strip() == "cutmix-variants":
        return "cutmix-variants"
    return "main" if settings.dataset == "digits" else settings.dataset


def stem(name: str) -> str:
    return "compare" if name == "main" else f"compare-{name}"


def include_line(name: str) -> str:
    """The line of the docs page that includes a section's generated file."""
    return f".. include:: _static/{stem(name)}.inc"


def check_write_target(path: str, name: str) -> None:
    """Before a long run: the page must exist and include this section's generated file."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as error:
        raise CommandError(f"--write {path}: cannot read it ({error.strerror})") from None
    if include_line(name) not in text.splitlines():
        raise CommandError(f"--write {path}: it has no '{include_line(name)}' line for this run's results")


def summary_lines(text: dict[str, str]) -> list[str]:
    lines = [f"Command: ``{text['command']}``", "", f"Run: {text['run']}.", "", f"Data: {text['data']}."]
    lines += ["", f"Training: {text['training']}."]
    if "extractor" in text:
        lines += ["", f"Attentive CutMix's extractor: {text['extractor']}."]
    if "note" in text:
        lines += ["", f"Note: {text['note']}."]
    return lines


def caption(epochs: int) -> str:
    return f"Test accuracy over paired seeds, {epochs} epochs; the paper's CIFAR-10 ResNet-18 row beside it"


def write_report(
    out: str,
    data: Data,
    settings: Settings,
    report: Report,
    command: str,
    write: str | None = None,
    load: Load | None = None,
) -> list[str]:
    os.makedirs(out, exist_ok=True)
    text = describe(data, settings, report, command, load)
    md = [f"# torchvision-mix compare\n\nCommand: `{command}`\n"]
    md += [f"- {key}: {value}" for key, value in text.items() if key != "command"]
    for epochs, rows in tables(report):
        md += ["", f"## {epochs} epochs", "", markdown_table(rows)]
    md += [
        "",
        "Per-run wall time: " + ", ".join(f"{r.arm.key}/{r.epochs}/{r.seed}: {r.seconds:.1f} s" for r in report.runs),
    ]
    paths = [os.path.join(out, "results.md"), os.path.join(out, "results.csv")]
    with open(paths[0], "w") as f:
        f.write("\n".join(md) + "\n")
    write_csv(paths[1], report)
    figure = draw_figure(os.path.join(out, "compare.png"), data, settings, report)
    if figure:
        paths.append(figure)
    if write:
        paths += write_rst(write, settings, report, text, figure, paths[1])
    return paths


def generated_rst(settings: Settings, report: Report, text: dict[str, str], name: str, figure: bool) -> str:
    """The generated file of a section, included by the docs page."""
    lines = summary_lines(text)
    for epochs, rows in tables(report):
        lines += ["", rst_table(rows, caption(epochs))]
    csv_name = f"{stem(name)}.csv"
    lines += [
        "",
        f"Every run (seed, accuracy, final loss, fingerprints, time): :download:`{csv_name} </_static/{csv_name}>`.",
    ]
    if figure:
        if settings.sweep:
            alt = "Test accuracy against the number of pasted cells N, with 95 % intervals."
        elif settings.budgets:
            alt = "Test accuracy against the training budget, and the difference to no mixing, with 95 % intervals."
        else:
            alt = "Each method's mean difference to no mixing with its 95 % interval, and mixed training samples."
        lines += ["", f".. image:: /_static/{stem(name)}.png", f"   :alt: {alt}"]
    return "\n".join(lines) + "\n"


def write_rst(
    path: str, settings: Settings, report: Report, text: dict[str, str], figure: str | None, runs_csv: str
) -> list[str]:
    """Write this run's section as ``_static/<stem>.inc`` beside ``path`` (which includes it), with
    its figure and the runs' CSV (which lets a test recompute the tables)."""
    name = settings.section
    check_write_target(path, name)
    static = os.path.join(os.path.dirname(os.path.abspath(path)), "_static")
    os.makedirs(static, exist_ok=True)
    written = [os.path.join(static, f"{stem(name)}.{ext}") for ext in ("inc", "csv")]
    shutil.copyfile(runs_csv, written[1])
    if figure:
        written.append(os.path.join(static, f"{stem(name)}.png"))
        shutil.copyfile(figure, written[2])
    with open(written[0], "w") as f:
        f.write(generated_rst(settings, report, text, name, figure is not None))
    return written


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


def draw_figure(path: str, data: Data, settings: Settings, report: Report) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('(no figure: pip install "torchvision-mix[demo]" for matplotlib)', file=sys.stderr)
        return None
    if settings.sweep:
        fig = _sweep_figure(plt, settings, report)
    elif settings.budgets:
        fig = _budget_figure(plt, data, report)
    else:
        fig = _methods_figure(plt, data, settings, report)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


COLOURS = ("0.3", "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def _budget_figure(plt: Any, data: Data, report: Report) -> Any:
    """The crossover figure: accuracy against the budget, and the paired difference to no mixing."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.4), layout="constrained")
    by_budget = dict(tables(report))
    paired = report.seeds > 1
    base = {r.epochs: r.mean for e in report.epochs for r in by_budget[e] if r.key == "none"}
    for i, arm in enumerate(report.arms):
        rows = [r for e in report.epochs for r in by_budget[e] if r.key == arm.key]
        xs = [r.epochs for r in rows]
        colour = COLOURS[i % len(COLOURS)]
        means = [r.mean for r in rows]
        halves = [r.mean_half or 0.0 for r in rows]
        left.errorbar(xs, means, yerr=halves if paired else None, fmt="o-", color=colour, capsize=3, label=arm.title)
        if arm.key == "none" or not all(r.epochs in base for r in rows):
            continue
        if paired and all(r.diff is not None for r in rows):
            diffs, errors = [r.diff for r in rows], [r.half for r in rows]
        else:  # one seed: the plain difference, no interval
            diffs, errors = [r.mean - base[r.epochs] for r in rows], None
        right.errorbar(xs, diffs, yerr=errors, fmt="o-", color=colour, capsize=3, label=arm.title)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(list(report.epochs), [str(e) for e in report.epochs])
        ax.minorticks_off()
        ax.set_xlabel("training budget (epochs)")
    if paired:
        left.set_ylabel("test accuracy (%), mean over seeds\nbars: 95 % t interval of the mean")
        right.set_ylabel("minus no mixing on the same seed (points)\nbars: 95 % paired t interval")
    else:
        left.set_ylabel("test accuracy (%), one seed: no intervals")
        right.set_ylabel("minus no mixing on the same seed (points)\none seed: no intervals")
    right.axhline(0.0, color="0.3", linewidth=1)
    left.legend(fontsize=8)
    seeds = f"{report.seeds} paired seeds" if paired else "one seed"
    fig.suptitle(f"{data.name}: test accuracy against the training budget, {seeds}", fontsize=10)
    return fig


def _sweep_figure(plt: Any, settings: Settings, report: Report) -> Any:
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    rows = summarize(report)
    base = next((r for r in rows if r.key == "none"), None)
    for method, colour in zip(ATTENTIVE, ("#c44e52", "#4c72b0"), strict=True):
        sweep = [r for r in rows if re.fullmatch(rf"{method}-k\d+", r.key)]
        if not sweep:
            continue
        ks = [int(r.key.rsplit("-k", 1)[1]) for r in sweep]
        title = sweep[0].title.rsplit(", N =", 1)[0]
        if all(r.half is not None for r in sweep):
            ax.errorbar(
                ks,
                [r.mean for r in sweep],
                yerr=[r.half for r in sweep],
                fmt="o-",
                color=colour,
                capsize=3,
                label=title,
            )
        else:
            ax.plot(ks, [r.mean for r in sweep], "o-", color=colour, label=title)
        ax.set_xticks(ks)
    if base is not None:
        ax.axhline(base.mean, color="0.3", linestyle="--", label=f"no mixing ({base.mean:.2f} %)")
    ax.set_ylabel("test accuracy (%), mean over seeds\nbars: 95 % CI of the paired difference to no mixing")
    ax.axvline(PAPER_TOP_K, color="0.6", linestyle=":", label=f"the paper's choice, N = {PAPER_TOP_K}")
    ax.set_xlabel(f"N, cells pasted (of {settings.grid_size}x{settings.grid_size})")
    ax.legend(fontsize=8)
    ax.set_title(f"Attentive CutMix against N: {report.seeds} paired seeds, {report.epochs[0]} epochs", fontsize=10)
    return fig


def _methods_figure(plt: Any, data: Data, settings: Settings, report: Report) -> Any:
    rows = summarize(report)
    epochs = report.epochs[0]
    arms = report.arms
    n_show = min(8, len(data.train_y))
    shown = [r for r in rows if r.key != "none"]
    top_height = 1.4 + 0.42 * max(1, len(shown))
    fig = plt.figure(figsize=(10.0, top_height + 1.25 * len(arms)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[top_height, 1.25 * len(arms)])
    ax = top.subplots()
    positions = list(range(len(shown)))
    if shown and all(r.diff is not None for r in shown):
        diffs = [r.diff for r in shown]
        halves = [r.half for r in shown]
        ax.errorbar(diffs, positions, xerr=halves, fmt="o", color="#4c72b0", capsize=4, label="this run, 95 % CI")
        paper = [(r.paper - PAPER_CIFAR10_RESNET18["none"], i) for i, r in enumerate(shown) if r.paper is not None]
        if paper:
            ax.plot(*zip(*paper, strict=True), "D", mfc="none", color="#dd8452", label="paper, CIFAR-10 ResNet-18")
        ax.axvline(0.0, color="0.3", linewidth=1)
        ax.set_xlabel("test accuracy minus no mixing's on the same seed (points)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.barh(positions, [r.mean for r in shown], color="#4c72b0")
        ax.set_xlabel("test accuracy (%)" + ("; one seed, no intervals" if report.seeds < 2 else ""))
    ax.set_yticks(positions, [f"{r.title}  {_acc(r)} %" for r in shown], fontsize=8)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    base = next((r for r in rows if r.key == "none"), None)
    title = f"{data.name}: {report.seeds} paired seeds, {epochs} epochs"
    ax.set_title(title + (f"; no mixing {_acc(base)} %" if base else ""), fontsize=10)
    axes = bottom.subplots(len(arms), n_show, squeeze=False)
    bottom.suptitle("training samples as each method mixes them (seed 0), titled class:weight", fontsize=9)
    x, y = data.train_x[:n_show], data.train_y[:n_show]
    extractor = report.extractors[epochs].model if epochs in report.extractors else None
    for r, arm in enumerate(arms):
        mix = build_mix(arm.method, mix_context(settings, arm, data.num_classes, extractor, seed=0))
        if isinstance(mix, LinearSchedule):
            mix.set_epoch(1, 1)  # scheduled CutMix at the end of training
        if mix is None:
            mixed, soft = x, nn.functional.one_hot(y, data.num_classes).float()
        else:
            mixed, soft = mix(x.to(settings.device), y.to(settings.device))
            mixed, soft = mixed.cpu(), soft.cpu()
        for c in range(n_show):
            sub = axes[r, c]
            image = mixed[c].permute(1, 2, 0).clamp(0, 1).numpy()
            sub.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            top_k = soft[c].topk(min(2, data.num_classes))
            parts = [f"{int(k)}:{float(v):.2f}" for k, v in zip(top_k.indices, top_k.values, strict=True) if v > 0]
            sub.set_title(" ".join(parts), fontsize=7)
            sub.set_xticks([])
            sub.set_yticks([])
            if c == 0:
                sub.set_ylabel(arm.title, fontsize=8, rotation=0, ha="right", va="center")
    return fig
