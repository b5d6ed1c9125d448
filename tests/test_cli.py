"""The commands: compare and demo, for real on small settings, and their one-line errors."""

import csv
import hashlib
import math
import os
import statistics
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import torchvision_mix
from torchvision_mix import __main__ as cli
from torchvision_mix import _compare, _demo
from torchvision_mix._compare import data as cdata
from torchvision_mix._compare import methods, report, training

DOCS = os.path.join(os.path.dirname(__file__), os.pardir, "docs")


def _images(folder, classes=2, per_class=4, size=12):
    rng = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(folder / f"class{c}", exist_ok=True)
        for i in range(per_class):
            array = rng.integers(0, 255, (size, size + 3, 3), dtype=np.uint8)
            PIL.Image.fromarray(array).save(folder / f"class{c}" / f"{i}.png")


@pytest.fixture(scope="module")
def small_digits():
    """Cluttered digits, 96 training and 64 test images (the default construction, fewer images)."""
    data = _compare.load_cluttered_digits(train=96)
    data.test_x, data.test_y = data.test_x[:64], data.test_y[:64]
    return data


@pytest.fixture
def tiny(monkeypatch, small_digits):
    """The CLI on the small cluttered digits."""
    monkeypatch.setattr(cdata, "load_data", lambda name, root, image_size: small_digits)
    return small_digits


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run(tmp_path, name, *args):
    out = tmp_path / name
    assert cli.main(["compare", "--epochs", "2", "--jobs", "1", "--out", str(out), *args]) == 0
    return out


# --- the default data set ------------------------------------------------------------------------


def test_cluttered_digits_are_built_as_documented():
    data = _compare.load_cluttered_digits()
    assert data.train_x.shape == (600, 1, 28, 28) and data.test_x.shape == (1197, 1, 28, 28)
    assert data.train_x.min() >= 0 and data.train_x.max() <= 1
    assert sorted(set(data.train_y.tolist())) == list(range(10))
    again = _compare.load_cluttered_digits()
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)


def test_clutter_places_the_digit_and_pieces_of_others():
    digits = torch.zeros(3, 1, 12, 12)
    digits[0] = 1.0  # only digit 0 has ink: the others' images hold only clutter cut from it
    out = _compare.clutter_digits(digits, canvas=28, pieces=4, piece=4, generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 1, 28, 28)
    assert int(out[0].sum()) >= 144  # the whole 12 x 12 digit, plus any clutter beside it
    for i in (1, 2):
        assert int(out[i].sum()) <= 4 * 16  # at most four 4 x 4 pieces
        assert set(out[i].unique().tolist()) <= {0.0, 1.0}


# --- the command end to end ------------------------------------------------------------------------


def test_compare_on_the_default_dataset_writes_the_report(tmp_path, capsys):
    out = tmp_path / "report"
    code = cli.main(
        ["compare", "--epochs", "1", "--seeds", "2", "--jobs", "1", "--out", str(out), "--image-size", "16"]
    )
    assert code == 0
    captured = capsys.readouterr()
    for key in _compare.DEFAULT_METHODS:
        assert f"| {_compare.METHODS[key][0]} |" in captured.out
    assert "1 jobs of 1 torch threads" in captured.err and "1 jobs" in captured.out
    assert "cluttered digits: 600 train / 1197 test images" in captured.err
    assert sorted(os.listdir(out)) == ["compare.png", "results.csv", "results.md"]
    rows = _rows(out / "results.csv")
    n = len(_compare.DEFAULT_METHODS)
    assert len(rows) == n * 2 and all(0 <= float(r["test_accuracy"]) <= 100 for r in rows)
    assert all(float(r["seconds"]) > 0 for r in rows)
    assert "torchvision-mix compare --epochs 1" in (out / "results.md").read_text()


def _without_time(path):
    """The CSV's text without its machine-time columns (report.TIME_COLUMNS), which are named explicitly."""
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    assert tuple(lines[0][-len(report.TIME_COLUMNS) :]) == report.TIME_COLUMNS
    return "\n".join(",".join(line[: -len(report.TIME_COLUMNS)]) for line in lines)


def test_the_same_command_twice_gives_identical_csvs(tmp_path, tiny):
    args = ("--seeds", "2", "--methods", "none,mixup,cutmix,attentive,cutmix-scheduled")
    first, second = _run(tmp_path, "a", *args), _run(tmp_path, "b", *args)
    text = _without_time(first / "results.csv")
    assert len(text.splitlines()) == 1 + 5 * 2
    assert text == _without_time(second / "results.csv")


def test_paired_seeds_same_initial_weights_and_data_order_for_every_method(tmp_path, tiny):
    out = _run(tmp_path, "r", "--seeds", "2", "--methods", "none,cutmix,attentive,mixup")
    rows = _rows(out / "results.csv")
    for seed in (0, 1):
        model = training.build_model("small", 1, 10, seed)
        expected_init = training.fingerprint(list(model.state_dict().values()))
        generator, digest = torch.Generator().manual_seed(seed), hashlib.sha256()
        for _ in range(2):  # epochs
            digest.update(torch.randperm(len(tiny.train_y), generator=generator).numpy().tobytes())
        of_seed = [r for r in rows if r["seed"] == str(seed)]
        assert len(of_seed) == 4
        assert {r["init"] for r in of_seed} == {expected_init}
        assert {r["order"] for r in of_seed} == {digest.hexdigest()[:12]}
    assert len({r["init"] for r in rows}) == 2 and len({r["order"] for r in rows}) == 2


def test_two_methods_given_the_same_seed_start_from_identical_weights(tiny, monkeypatch):
    starts = []
    real = training.build_model

    def spy(*args):
        model = real(*args)
        starts.append([t.clone() for t in model.state_dict().values()])
        return model

    monkeypatch.setattr(training, "build_model", spy)
    settings = _compare.Settings(epochs=(1,), seeds=1, methods=("none", "cutmix"))
    for method in ("none", "cutmix"):
        arm = training.Arm(method, method, method, 6)
        mix = _compare.build_mix(method, training.mix_context(settings, arm, 10, None, seed=3))
        training.train(tiny, settings, 1, 3, mix)
    assert all(torch.equal(a, b) for a, b in zip(*starts, strict=True))


def test_scheduled_cutmix_raises_p_linearly_before_each_epoch(tiny, monkeypatch):
    seen = []
    call = methods.LinearSchedule.__call__

    def record(self, *inputs):
        seen.append(self.transform.p)
        return call(self, *inputs)

    monkeypatch.setattr(methods.LinearSchedule, "__call__", record)
    settings = _compare.Settings(epochs=(4,), batch_size=48, methods=("cutmix-scheduled",))
    arm = training.Arm("cutmix-scheduled", "cutmix-scheduled", "scheduled", 6)
    mix = _compare.build_mix("cutmix-scheduled", training.mix_context(settings, arm, 10, None, seed=0))
    assert isinstance(mix.transform, torchvision_mix.CutMix) and mix.transform.p == 0.0
    training.train(tiny, settings, 4, 0, mix)
    assert seen == [0.0, 0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75]


# --- methods ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(_compare.METHODS))
def test_every_method_builds_and_mixes(method):
    extractor = training.SmallCNN(1, 10).features.eval()
    ctx = _compare.MixContext(num_classes=10, generator=torch.Generator().manual_seed(0), extractor=extractor)
    mix = _compare.build_mix(method, ctx)
    images, labels = torch.rand(6, 1, 28, 28), torch.arange(6)
    if mix is None:
        assert method == "none"
        return
    out, soft = mix(images, labels)
    assert out.shape == images.shape and soft.shape == (6, 10)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(6, dtype=soft.dtype))


def test_presets_and_top_k_lists():
    variants = ("none", "cutmix", "cutmix-gaussian", "cutmix-fixed", "cutmix-scheduled", "cutmix-onehot")
    assert _compare.parse_methods("cutmix-variants", sweep=False) == (*variants, "cutmix-complete")
    assert _compare.parse_methods(None, sweep=False) == _compare.DEFAULT_METHODS
    assert _compare.parse_methods(None, sweep=True) == methods.SWEEP_METHODS
    parser = cli._parser()

    def top_k(*values):
        return parser.parse_args(["compare", "--top-k", *values]).top_k

    assert top_k("6") == (6,)
    assert top_k("1-15") == tuple(range(1, 16))
    assert top_k("2,4,8,3") == (2, 3, 4, 8)
    assert top_k("1-3,7") == (1, 2, 3, 7)
    assert parser.parse_args(["compare", "--epochs", "300,30,60"]).epochs == (30, 60, 300)
    assert parser.parse_args(["compare"]).epochs is None and parser.parse_args(["compare"]).top_k == (6,)


def test_cutmix_variants_mode(tmp_path, tiny):
    out = _run(tmp_path, "v", "--methods", "cutmix-variants", "--seeds", "2")
    keys = [r["method"] for r in _rows(out / "results.csv") if r["seed"] == "0"]
    assert keys == list(_compare.PRESETS["cutmix-variants"])


# --- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "t"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452)])
def test_t_quantiles_match_the_tables(df, t):
    assert _compare.t_quantile(0.95, df) == pytest.approx(t, abs=1e-4)


def test_paired_interval_is_the_plain_t_interval():
    base = [80.0, 82.5, 81.0, 79.5, 83.0]
    other = [81.5, 82.0, 84.0, 80.5, 85.5]
    diffs = []
    for a, b in zip(other, base, strict=True):
        diffs.append(a - b)
    mean = sum(diffs) / 5
    variance = 0.0
    for d in diffs:
        variance += (d - mean) ** 2
    half = 2.776445 * math.sqrt(variance / 4) / math.sqrt(5)  # t(0.975, 4 df)
    got_mean, got_half = _compare.paired_difference(other, base)
    assert got_mean == pytest.approx(mean) and got_half == pytest.approx(half, rel=1e-5)

    arms = [training.Arm("none", "none", "no mixing", 6), training.Arm("cutmix", "cutmix", "CutMix", 6)]
    runs = [training.Run(arms[0], 30, s, a, 0.0, "", "", 2.0) for s, a in enumerate(base)]
    runs += [training.Run(arms[1], 30, s, a, 0.0, "", "", 3.0 + s) for s, a in enumerate(other)]
    none, cutmix = _compare.summarize(training.Report(arms, runs, (30,), 5))
    assert cutmix.std == pytest.approx(statistics.stdev(other)) and none.diff is None
    table = _compare.markdown_table([none, cutmix])
    assert f"| CutMix | {statistics.fmean(other):.2f} ± {statistics.stdev(other):.2f} |" in table
    assert f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] | 5.0 |" in table  # then the time per run
    assert "| 87.92 (+3.25) |" in table  # the paper's row beside it


def test_the_docs_tables_are_the_arithmetic_of_their_runs():
    """docs/comparison.rst includes generated files whose tables are recomputed from the runs' CSVs."""
    with open(os.path.join(DOCS, "comparison.rst")) as f:
        page = f.read().splitlines()
    found = 0
    for name in ("main", "top-k", "cutmix-variants", "budgets"):
        path = os.path.join(DOCS, "_static", report.stem(name) + ".csv")
        if not os.path.exists(path):
            continue
        found += 1
        assert report.include_line(name) in page
        with open(os.path.join(DOCS, "_static", report.stem(name) + ".inc")) as f:
            block = f.read()
        runs = report.read_csv(path)
        for epochs, rows in report.tables(runs):
            assert report.rst_table(rows, report.caption(epochs)) in block
        assert block.startswith("Command: ``torchvision-mix compare")
    assert found >= 1


# --- sweep and --write ----------------------------------------------------------------------------


def test_top_k_sweep_writes_its_generated_file_and_figure(tmp_path, tiny):
    page = tmp_path / "docs" / "comparison.rst"
    page.parent.mkdir()
    page.write_text("Title\n=====\n\n.. include:: _static/compare-top-k.inc\n\nafter\n")
    before = page.read_text()
    out = _run(tmp_path, "s", "--top-k", "1-4", "--seeds", "2", "--write", str(page))
    rows = _rows(out / "results.csv")
    expected = ["", "1", "2", "3", "4", "1", "2", "3", "4"]  # no mixing, then N for each label rule
    assert [r["top_k"] for r in rows if r["seed"] == "1"] == expected
    assert [r["method"] for r in rows if r["seed"] == "1"][-1] == "attentive-attention-k4"
    assert page.read_text() == before  # the page only includes the generated file
    static = tmp_path / "docs" / "_static"
    text = (static / "compare-top-k.inc").read_text()
    assert "* - Attentive CutMix, N = 3" in text and "* - Attentive CutMix, attention label, N = 4" in text
    assert text.startswith("Command: ``torchvision-mix compare --epochs 2")
    assert ".. image:: /_static/compare-top-k.png" in text
    assert (static / "compare-top-k.png").stat().st_size > 10_000
    assert (static / "compare-top-k.csv").read_text() == (out / "results.csv").read_text()


def test_compare_on_an_image_folder_with_resnet18(tmp_path, capsys):
    _images(tmp_path / "data")
    args = ["--dataset", "folder", "--root", str(tmp_path / "data"), "--epochs", "1", "--seeds", "1"]
    args += ["--jobs", "1", "--image-size", "16", "--methods", "none,cutmix,attentive", "--grid-size", "4"]
    assert cli.main(["compare", *args, "--top-k", "3", "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert "| CutMix |" in captured.out and "ResNet-18" in (tmp_path / "r" / "results.md").read_text()


def test_shift_flip_moves_and_mirrors_each_sample():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    generator = torch.Generator().manual_seed(0)
    out = training.shift_flip(x, generator)
    generator = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(0, 9, (2, 2), generator=generator)
    flip = torch.rand(2, generator=generator) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        expected = padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        assert torch.equal(out[i], expected.flip(-1) if flip[i] else expected)


def test_cifar10_loading_and_its_offline_error(monkeypatch, tmp_path):
    class FakeCIFAR10:
        def __init__(self, root, train, download):
            n = 10 if train else 4
            self.data = np.zeros((n, 32, 32, 3), dtype=np.uint8)
            self.targets = list(range(n))

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = _compare.load_data("cifar10", str(tmp_path), 32)
    assert data.train_x.shape == (10, 3, 32, 32) and data.test_y.tolist() == [0, 1, 2, 3]

    class Offline:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Error downloading cifar-10-python.tar.gz")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(_compare.CommandError, match=r"on an offline machine put cifar-10-python\.tar\.gz"):
        _compare.load_data("cifar10", str(tmp_path), 32)


# --- bad input: one line, exit code 2 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "--dataset", "imagenet"], "invalid choice: 'imagenet'"),
        (["compare", "--epochs", "0"], "argument --epochs: '0': 0 is not positive"),
        (["compare", "--epochs", "30,x"], "argument --epochs: '30,x': expected positive whole numbers like 30,60"),
        (["compare", "--seeds", "0"], "expected a positive int, got '0'"),
        (["compare", "--jobs", "0"], "expected a positive int, got '0'"),
        (["compare", "--dataset", "folder"], "--dataset folder needs --root DIR"),
        (["compare", "--dataset", "folder", "--root", "/nonexistent/dir"], "no such folder: /nonexistent/dir"),
        (["compare", "--dataset", "folder", "--root", __file__], f"no such folder: {__file__}"),
        (["compare", "--top-k", "50"], "--top-k 50 is outside [1, 49], the 7x7 grid's cells"),
        (["compare", "--top-k", "1-15", "--grid-size", "3"], "--top-k 10 is outside [1, 9]"),
        (["compare", "--top-k", "0,3"], "argument --top-k: '0,3': 0 is not positive"),
        (["compare", "--top-k", "two"], "argument --top-k: 'two': expected positive whole numbers like 1,2,4"),
        (["compare", "--top-k", "5-3"], "argument --top-k: '5-3': the range 5-3 is empty"),
        (["compare", "--top-k", "1-3", "--epochs", "30,60"], "sweep either --top-k or --epochs, not both"),
        (["compare", "--top-k", "2,4", "--methods", "none,cutmix"], "sweeps Attentive CutMix: add attentive"),
        (["compare", "--methods", "cutmix,fmixx"], "unknown method 'fmixx': choose from none, mixup"),
        (["compare", "--methods", ","], "names no method"),
        (["compare", "--image-size", "10", "--grid-size", "5"], "--image-size 10: the cluttered digits need a canvas"),
        (["compare", "--write", "/nonexistent/page.rst"], "--write /nonexistent/page.rst: cannot read it"),
        (["compare", "--write", os.path.join(DOCS, "index.rst")], "has no '.. include:: _static/compare.inc' line"),
        (["demo", "/nonexistent.png", "/nonexistent2.png"], "no such image file: /nonexistent.png"),
        (["demo", "--top-k", "10", "--grid-size", "3"], "--top-k 10 is larger than the grid's 9 cells"),
    ],
)
def test_bad_settings_give_one_line_and_exit_code_2(args, message, capsys, monkeypatch):
    monkeypatch.setattr(training, "run_compare", lambda *a: pytest.fail("must stop before training"))
    monkeypatch.setattr(training, "train", lambda *a: pytest.fail("must stop before training"))
    try:
        code = cli.main(args)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_empty_folder_and_unreadable_images(tmp_path, capsys):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    assert cli.main(["compare", "--dataset", "folder", "--root", str(tmp_path / "empty")]) == 2
    assert "error:" in capsys.readouterr().err
    _images(tmp_path / "bad")
    (tmp_path / "bad" / "class0" / "broken.png").write_bytes(b"not a png")
    assert cli.main(["compare", "--dataset", "folder", "--root", str(tmp_path / "bad")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert cli.main(["demo", str(tmp_path / "bad" / "class0" / "broken.png"), str(tmp_path / "bad")]) == 2
    assert "cannot read image" in capsys.readouterr().err


# --- demo ------------------------------------------------------------------------------------------


def test_demo_with_user_images_and_the_offline_fallback(tmp_path, monkeypatch, capsys):
    _images(tmp_path / "img", classes=1, per_class=3, size=40)
    files = sorted(str(p) for p in (tmp_path / "img" / "class0").iterdir())

    def offline(*args, **kwargs):
        raise RuntimeError("Could not load the pretrained weights of resnet50. On a machine without internet...")

    monkeypatch.setattr(_demo.attention, "feature_extractor", offline)
    out = tmp_path / "demo.png"
    assert cli.main(["demo", *files, "--out", str(out), "--size", "64"]) == 0
    captured = capsys.readouterr()
    assert "edge-energy fallback" in captured.err and len(captured.err.strip().splitlines()) == 1
    with PIL.Image.open(out) as image:
        assert image.size[0] > 400 and image.size[1] > 400


def test_demo_uses_the_bundled_sample_photos(tmp_path, monkeypatch):
    monkeypatch.setattr(_demo, "pick_extractor", lambda weights_path: (_demo.EdgeEnergy(), "edge energy"))
    path = _demo.make_demo([], str(tmp_path / "d.png"), size=64)
    assert os.path.getsize(path) > 10_000


def test_edge_energy_attends_to_edges():
    images = torch.zeros(1, 3, 64, 64)
    images[:, :, :, 40:] = 1.0  # one vertical edge at x = 40, in the second cell of 32
    heat = _demo.EdgeEnergy()(images)
    assert heat.shape == (1, 1, 2, 2) and heat[0, 0, :, 1].min() > heat[0, 0, :, 0].max()


def test_module_entry_point_runs_as_a_program():
    done = subprocess.run(
        [sys.executable, "-m", "torchvision_mix", "compare", "--dataset", "nope"], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "invalid choice" in done.stderr
