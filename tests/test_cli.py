"""The commands: compare and demo, for real on small settings, and their one-line errors."""

import csv
import hashlib
import math
import os
import re
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

DOCS = os.path.join(os.path.dirname(__file__), os.pardir, "docs")

# Methods whose classes this version may still lack: their test accepts the one-line refusal.
MAY_BE_MISSING = {"saliencymix", "fmix", "gridmix"}


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
    monkeypatch.setattr(_compare, "load_data", lambda name, root, image_size: small_digits)
    return small_digits


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run(tmp_path, name, *args):
    out = tmp_path / name
    assert cli.main(["compare", "--epochs", "2", "--threads", "1", "--out", str(out), *args]) == 0
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
    code = cli.main(["compare", "--epochs", "1", "--seeds", "2", "--out", str(out), "--image-size", "16"])
    assert code == 0
    captured = capsys.readouterr()
    for name in ("no mixing", "MixUp", "CutMix", "Attentive CutMix", "CutMix/MixUp recipe"):
        assert f"| {name} |" in captured.out
    assert "2 torch threads" in captured.err and "2 torch threads" in captured.out
    assert "cluttered digits: 600 train / 1197 test images" in captured.err
    assert sorted(os.listdir(out)) == ["compare.png", "results.csv", "results.md"]
    rows = _rows(out / "results.csv")
    assert len(rows) == 5 * 2 and all(0 <= float(r["test_accuracy"]) <= 100 for r in rows)
    assert "torchvision-mix compare --epochs 1" in (out / "results.md").read_text()


def test_the_same_command_twice_gives_identical_csvs(tmp_path, tiny):
    args = ("--seeds", "2", "--methods", "none,mixup,cutmix,attentive,cutmix-scheduled")
    first, second = _run(tmp_path, "a", *args), _run(tmp_path, "b", *args)
    text = (first / "results.csv").read_text()
    assert len(text.splitlines()) == 1 + 5 * 2
    assert text == (second / "results.csv").read_text()


def test_paired_seeds_same_initial_weights_and_data_order_for_every_method(tmp_path, tiny):
    out = _run(tmp_path, "r", "--seeds", "2", "--methods", "none,cutmix,attentive,mixup")
    rows = _rows(out / "results.csv")
    for seed in (0, 1):
        model = _compare.build_model("small", 1, 10, seed)
        expected_init = _compare.fingerprint(list(model.state_dict().values()))
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
    real = _compare.build_model

    def spy(*args):
        model = real(*args)
        starts.append([t.clone() for t in model.state_dict().values()])
        return model

    monkeypatch.setattr(_compare, "build_model", spy)
    settings = _compare.Settings(epochs=1, seeds=1, methods=("none", "cutmix"))
    progress = _compare.Progress(10)
    for method in ("none", "cutmix"):
        arm = _compare.Arm(method, method, method, 6)
        mix = _compare.build_mix(method, _compare.mix_context(settings, arm, 10, None, seed=3))
        _compare.train(tiny, settings, 3, mix, progress, method)
    assert all(torch.equal(a, b) for a, b in zip(*starts, strict=True))


def test_scheduled_cutmix_raises_p_linearly_before_each_epoch(tiny, monkeypatch):
    seen = []
    call = _compare.LinearSchedule.__call__

    def record(self, *inputs):
        seen.append(self.transform.p)
        return call(self, *inputs)

    monkeypatch.setattr(_compare.LinearSchedule, "__call__", record)
    settings = _compare.Settings(epochs=4, batch_size=48, methods=("cutmix-scheduled",))
    arm = _compare.Arm("cutmix-scheduled", "cutmix-scheduled", "scheduled", 6)
    mix = _compare.build_mix("cutmix-scheduled", _compare.mix_context(settings, arm, 10, None, seed=0))
    assert isinstance(mix.transform, torchvision_mix.CutMix) and mix.transform.p == 0.0
    _compare.train(tiny, settings, 0, mix, _compare.Progress(4), "scheduled")
    assert seen == [0.0, 0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75]


# --- methods ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(_compare.METHODS))
def test_every_method_builds_and_mixes_or_says_what_it_needs(method):
    extractor = _compare.SmallCNN(1, 10).features.eval()
    ctx = _compare.MixContext(num_classes=10, generator=torch.Generator().manual_seed(0), extractor=extractor)
    try:
        mix = _compare.build_mix(method, ctx)
    except _compare.MethodUnavailable as error:
        assert method in MAY_BE_MISSING
        assert re.fullmatch(rf"method {method} needs torchvision_mix\.\w+, not available in this version", str(error))
        return
    images, labels = torch.rand(6, 1, 28, 28), torch.arange(6)
    if mix is None:
        assert method == "none"
        return
    out, soft = mix(images, labels)
    assert out.shape == images.shape and soft.shape == (6, 10)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(6, dtype=soft.dtype))


def test_a_missing_class_or_option_is_one_line_when_chosen_and_skipped_by_default(monkeypatch):
    monkeypatch.delattr(torchvision_mix, "RandomMix")
    settings = _compare.Settings(methods=_compare.DEFAULT_METHODS, default_methods=True)
    skipped, classes = _compare.probe_methods(settings)
    assert settings.methods == ("none", "mixup", "cutmix", "attentive")
    assert skipped == ["method recipe needs torchvision_mix.RandomMix, not available in this version"]
    assert classes["cutmix"] == "torchvision_mix.CutMix"

    class OldCutMix(torchvision_mix.CutMix):
        def __init__(self, *, alpha=1.0, num_classes=None, p=1.0, generator=None):
            super().__init__(alpha=alpha, num_classes=num_classes, p=p, generator=generator)

    monkeypatch.setattr(torchvision_mix, "CutMix", OldCutMix)
    ctx = _compare.MixContext(num_classes=10, generator=torch.Generator())
    with pytest.raises(_compare.MethodUnavailable, match=r"^method cutmix-gaussian needs torchvision_mix\.CutMix\("):
        _compare.build_mix("cutmix-gaussian", ctx)


def test_presets_and_top_k_lists():
    variants = ("none", "cutmix", "cutmix-gaussian", "cutmix-fixed", "cutmix-scheduled", "cutmix-onehot")
    assert _compare.parse_methods("cutmix-variants", sweep=False) == ((*variants, "cutmix-complete"), False)
    assert _compare.parse_methods(None, sweep=False) == (_compare.DEFAULT_METHODS, True)
    assert _compare.parse_methods(None, sweep=True) == (("none", "attentive"), True)
    assert _compare.parse_top_k("6") == (6,)
    assert _compare.parse_top_k("1,2,...,15") == tuple(range(1, 16))
    assert _compare.parse_top_k("2,4,...,10,3") == (2, 3, 4, 6, 8, 10)
    assert _compare.parse_top_k("1-4") == (1, 2, 3, 4)


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

    arms = [_compare.Arm("none", "none", "no mixing", 6), _compare.Arm("cutmix", "cutmix", "CutMix", 6)]
    runs = [_compare.Run(arms[0], s, a, 0.0, "", "", 0.0) for s, a in enumerate(base)]
    runs += [_compare.Run(arms[1], s, a, 0.0, "", "", 0.0) for s, a in enumerate(other)]
    none, cutmix = _compare.summarize(_compare.Report(arms, runs))
    assert cutmix.std == pytest.approx(statistics.stdev(other)) and none.diff is None
    table = _compare.markdown_table([none, cutmix])
    assert f"| CutMix | {statistics.fmean(other):.2f} ± {statistics.stdev(other):.2f} |" in table
    assert f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]" in table
    assert "| 87.92 (+3.25) |" in table  # the paper's row beside it


def test_the_docs_table_is_the_arithmetic_of_its_runs():
    """docs/comparison.rst's tables are recomputed from the runs' CSVs the command wrote beside them."""
    with open(os.path.join(DOCS, "comparison.rst")) as f:
        page = f.read()
    found = 0
    for name in ("main", "top-k", "cutmix-variants"):
        path = os.path.join(DOCS, "_static", ("compare" if name == "main" else f"compare-{name}") + ".csv")
        if not os.path.exists(path):
            continue
        found += 1
        begin, end = _compare.markers(name)
        block = page.split(begin, 1)[1].split(end, 1)[0]
        rows = _compare.summarize(_compare.read_csv(path))
        assert _compare.rst_table(rows, "").split("\n", 1)[1] in block
        assert block.lstrip().startswith("Command: ``torchvision-mix compare")
    assert found >= 1


# --- sweep and --write ----------------------------------------------------------------------------


def test_top_k_sweep_writes_its_section_and_figure(tmp_path, tiny):
    page = tmp_path / "docs" / "comparison.rst"
    page.parent.mkdir()
    page.write_text("Title\n=====\n\n.. begin-compare-top-k\n\nold\n\n.. end-compare-top-k\n\nafter\n")
    out = _run(tmp_path, "s", "--top-k", "1,2,...,4", "--seeds", "2", "--write", str(page))
    rows = _rows(out / "results.csv")
    assert [r["top_k"] for r in rows if r["seed"] == "1"] == ["", "1", "2", "3", "4"]
    text = page.read_text()
    assert "old" not in text and text.endswith(".. end-compare-top-k\n\nafter\n")
    assert "* - Attentive CutMix, N = 3" in text and "``torchvision-mix compare --epochs 2" in text
    assert (tmp_path / "docs" / "_static" / "compare-top-k.png").stat().st_size > 10_000
    assert (tmp_path / "docs" / "_static" / "compare-top-k.csv").read_text() == (out / "results.csv").read_text()


def test_compare_on_an_image_folder_with_resnet18(tmp_path, capsys):
    _images(tmp_path / "data")
    args = ["--dataset", "folder", "--root", str(tmp_path / "data"), "--epochs", "1", "--seeds", "1"]
    args += ["--no-intervals", "--image-size", "16", "--methods", "none,cutmix,attentive", "--grid-size", "4"]
    assert cli.main(["compare", *args, "--top-k", "3", "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert "| CutMix |" in captured.out and "ResNet-18" in (tmp_path / "r" / "results.md").read_text()


def test_shift_flip_moves_and_mirrors_each_sample():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    generator = torch.Generator().manual_seed(0)
    out = _compare.shift_flip(x, generator)
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
        (["compare", "--epochs", "0"], "expected a positive int, got '0'"),
        (["compare", "--dataset", "folder"], "--dataset folder needs --root DIR"),
        (["compare", "--dataset", "folder", "--root", "/nonexistent/dir"], "no such folder: /nonexistent/dir"),
        (["compare", "--dataset", "folder", "--root", __file__], f"no such folder: {__file__}"),
        (["compare", "--top-k", "50"], "--top-k 50 is outside [1, 49], the 7x7 grid's cells"),
        (["compare", "--top-k", "1,2,...,15", "--grid-size", "3"], "--top-k 10 is outside [1, 9]"),
        (["compare", "--top-k", "0,3"], "--top-k 0 is outside [1, 49]"),
        (["compare", "--top-k", "two"], "--top-k 'two': expected whole numbers"),
        (["compare", "--top-k", "1,...,5"], "'...' needs two values before it and one after"),
        (["compare", "--top-k", "2,4", "--methods", "none,cutmix"], "sweeps Attentive CutMix: add attentive"),
        (["compare", "--methods", "cutmix,fmixx"], "unknown method 'fmixx': choose from none, mixup"),
        (["compare", "--methods", ","], "names no method"),
        (["compare", "--seeds", "1"], "--seeds 1: the 95 % confidence intervals need at least 2 paired seeds"),
        (["compare", "--image-size", "10", "--grid-size", "5"], "--image-size 10: the cluttered digits need a canvas"),
        (["compare", "--write", "/nonexistent/page.rst"], "--write /nonexistent/page.rst: cannot read it"),
        (["compare", "--write", os.path.join(DOCS, "index.rst")], "has no '.. begin-compare-main' ... '.. end-"),
        (["demo", "/nonexistent.png", "/nonexistent2.png"], "no such image file: /nonexistent.png"),
        (["demo", "--top-k", "10", "--grid-size", "3"], "--top-k 10 is larger than the grid's 9 cells"),
    ],
)
def test_bad_settings_give_one_line_and_exit_code_2(args, message, capsys, monkeypatch):
    monkeypatch.setattr(_compare, "run_compare", lambda *a: pytest.fail("must stop before training"))
    monkeypatch.setattr(_compare, "train", lambda *a: pytest.fail("must stop before training"))
    try:
        code = cli.main(args)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_chosen_method_this_version_lacks_is_one_line_and_exit_code_2(monkeypatch, capsys):
    monkeypatch.setattr(_compare, "load_data", lambda *a: pytest.fail("must stop before loading data"))
    monkeypatch.delattr(torchvision_mix, "CutMix")
    assert cli.main(["compare", "--methods", "none,cutmix-fixed"]) == 2
    err = capsys.readouterr().err.strip()
    expected = "method cutmix-fixed needs torchvision_mix.CutMix, not available in this version"
    assert err == f"torchvision-mix compare: error: {expected}"


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
