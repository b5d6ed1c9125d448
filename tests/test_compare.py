"""The comparison harness: parallel jobs, one seed, the budget sweep and the attention label rule."""

import csv

import pytest
import torch

from torchvision_mix import __main__ as cli
from torchvision_mix._compare import data as cdata
from torchvision_mix._compare import methods, report, statistics, training


@pytest.fixture(scope="module")
def small_digits():
    """Cluttered digits, 64 training and 48 test images (the default construction, fewer images)."""
    data = cdata.load_cluttered_digits(train=64)
    data.test_x, data.test_y = data.test_x[:48], data.test_y[:48]
    return data


@pytest.fixture
def tiny(monkeypatch, small_digits):
    monkeypatch.setattr(cdata, "load_data", lambda name, root, image_size: small_digits)
    return small_digits


def _compare(tmp_path, name, *args):
    out = tmp_path / name
    assert cli.main(["compare", "--batch-size", "32", "--out", str(out), *args]) == 0
    return out


def _lines(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _compared_columns(path):
    """The CSV without its machine-time columns, which are excluded by name (report.TIME_COLUMNS)."""
    lines = _lines(path)
    keep = [i for i, name in enumerate(lines[0]) if name not in report.TIME_COLUMNS]
    assert len(keep) == len(lines[0]) - len(report.TIME_COLUMNS)
    return "\n".join(",".join(line[i] for i in keep) for line in lines) + "\n"


def test_jobs_1_and_jobs_2_give_identical_csvs(tmp_path, tiny):
    """Every training is fixed by its method, budget and seed: worker processes change nothing."""
    args = ("--epochs", "2", "--seeds", "2", "--methods", "none,cutmix,attentive,cutmix-scheduled")
    one = _compare(tmp_path, "one", *args, "--jobs", "1")
    two = _compare(tmp_path, "two", *args, "--jobs", "2")
    text = _compared_columns(one / "results.csv")
    assert len(text.splitlines()) == 1 + 4 * 2
    assert text == _compared_columns(two / "results.csv")
    assert "test_accuracy" in text.splitlines()[0] and "seconds" not in text.splitlines()[0]


def test_one_seed_runs_and_says_the_intervals_need_two(tmp_path, tiny, capsys):
    out = _compare(tmp_path, "r", "--epochs", "1", "--seeds", "1", "--methods", "none,cutmix", "--jobs", "1")
    captured = capsys.readouterr()
    assert report.ONE_SEED in captured.out and report.ONE_SEED in captured.err
    assert "| CutMix |" in captured.out and "| — |" in captured.out  # no interval
    assert report.ONE_SEED in (out / "results.md").read_text()
    assert len(_lines(out / "results.csv")) == 1 + 2


def test_budget_sweep_trains_every_budget_on_paired_seeds(tmp_path, tiny, capsys):
    page = tmp_path / "docs" / "page.rst"
    page.parent.mkdir()
    page.write_text("Title\n=====\n\n.. include:: _static/compare-budgets.inc\n")
    args = ("--epochs", "2,1", "--seeds", "2", "--methods", "none,mixup,attentive", "--jobs", "2")
    out = _compare(tmp_path, "b", *args, "--write", str(page))
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epochs"], r["seed"], r["method"]) for r in rows] == [
        (e, s, m) for e in ("1", "2") for s in ("0", "1") for m in ("none", "mixup", "attentive")
    ]
    for seed in ("0", "1"):  # the same start and, per budget, the same order for every method
        assert len({r["init"] for r in rows if r["seed"] == seed}) == 1
        for e in ("1", "2"):
            assert len({r["order"] for r in rows if r["seed"] == seed and r["epochs"] == e}) == 1
    captured = capsys.readouterr().out
    assert "1 epochs:\n| method |" in captured and "2 epochs:\n| method |" in captured
    generated = (tmp_path / "docs" / "_static" / "compare-budgets.inc").read_text()
    runs = report.read_csv(str(out / "results.csv"))
    assert runs.epochs == (1, 2)
    for epochs in (1, 2):
        assert report.rst_table(statistics.summarize(runs, epochs), report.caption(epochs)) in generated
    assert "2 budgets (1, 2 epochs)" in generated and ".. image:: /_static/compare-budgets.png" in generated
    assert (tmp_path / "docs" / "_static" / "compare-budgets.png").stat().st_size > 10_000


def test_the_budget_tables_are_each_budgets_own_runs():
    arms = [training.Arm("none", "none", "no mixing", 6), training.Arm("cutmix", "cutmix", "CutMix", 6)]
    runs = [training.Run(arms[0], e, s, 80.0 + e + s, 0.0, "", "", 1.0) for e in (30, 60) for s in (0, 1, 2)]
    runs += [training.Run(arms[1], e, s, 79.0 + 2 * e + s * s, 0.0, "", "", 2.0) for e in (30, 60) for s in (0, 1, 2)]
    both = training.Report(arms, runs, (30, 60), 3)
    for epochs in (30, 60):
        none, cutmix = statistics.summarize(both, epochs)
        assert none.epochs == cutmix.epochs == epochs
        assert none.mean == pytest.approx(81.0 + epochs)
        assert cutmix.diff == pytest.approx(epochs - 1 + 5 / 3 - 1)


def test_the_jobs_wait_for_their_extractor_and_get_its_weights(tiny, monkeypatch):
    given, trained = [], {}
    real = training.run_job

    def spy(data, settings, job, weights, tick):
        given.append((job, None if weights is None else training.fingerprint(list(weights.values()))))
        done = real(data, settings, job, weights, tick)
        if done.weights is not None:
            trained[job.epochs] = training.fingerprint(list(done.weights.values()))
        return done

    monkeypatch.setattr(training, "run_job", spy)
    settings = training.Settings(epochs=(1, 2), seeds=1, methods=("none", "attentive"), batch_size=32)
    result = training.run_compare(tiny, settings)
    assert [(job.arm, job.epochs) for job, _ in given[:2]] == [(None, 2), (None, 1)]  # the extractors first
    assert set(trained) == set(result.extractors) == {1, 2} and trained[1] != trained[2]
    for job, weights in given[2:]:
        assert weights == (trained[job.epochs] if job.arm.method == "attentive" else None)


def test_attentive_attention_weighs_the_label_by_the_pasted_attention():
    class Corner(torch.nn.Module):
        """All attention in the top-left of 2 x 2 cells."""

        def forward(self, x):
            heat = torch.zeros(x.shape[0], 1, 2, 2)
            heat[:, :, 0, 0] = 1.0
            return heat

    def mixed_labels(method):
        ctx = methods.MixContext(
            num_classes=4,
            generator=torch.Generator().manual_seed(0),
            extractor=Corner(),
            grid_size=2,
            top_k=1,
            image_size=8,
        )
        mix = methods.build_mix(method, ctx)
        images, labels = torch.rand(4, 1, 8, 8), torch.arange(4)
        out, soft = mix(images, labels)
        changed = [i for i in range(4) if not torch.equal(out[i], images[i])]
        assert changed  # something was pasted
        return soft[changed]

    area = mixed_labels("attentive")
    assert torch.allclose(area.sort(dim=1, descending=True).values[:, :2], torch.tensor([0.75, 0.25]))
    attention = mixed_labels("attentive-attention")  # the pasted cell holds all of the donor's attention
    assert torch.allclose(attention.max(dim=1).values, torch.ones(len(attention)))


def test_each_run_writes_its_own_generated_file():
    def name(methods_text=None, **kwargs):
        return report.section(training.Settings(**kwargs), methods_text)

    assert name() == "main" and name("cutmix-variants") == "cutmix-variants"
    assert name(top_k=(1, 2)) == "top-k" and name(epochs=(30, 60)) == "budgets"
    assert name(dataset="cifar10") == "cifar10" and report.include_line("cifar10") == (
        ".. include:: _static/compare-cifar10.inc"
    )
