"""The commands: compare and demo, for real on small settings, and their one-line errors."""

import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from torchvision_mix import __main__ as cli
from torchvision_mix import _compare, _demo


def _images(folder, classes=2, per_class=4, size=12):
    rng = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(folder / f"class{c}", exist_ok=True)
        for i in range(per_class):
            array = rng.integers(0, 255, (size, size + 3, 3), dtype=np.uint8)
            PIL.Image.fromarray(array).save(folder / f"class{c}" / f"{i}.png")


def test_compare_on_the_default_dataset_writes_the_report(tmp_path, capsys):
    out = tmp_path / "report"
    code = cli.main(["compare", "--epochs", "1", "--seeds", "2", "--out", str(out), "--image-size", "16"])
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("no mixing", "MixUp (torchvision)", "CutMix", "Attentive CutMix"):
        assert f"| {name} |" in printed
    assert sorted(os.listdir(out)) == ["compare.png", "results.csv", "results.md"]
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0] == "method,seed,test_accuracy" and len(rows) == 1 + 4 * 2
    assert all(0 <= float(r.split(",")[2]) <= 100 for r in rows[1:])
    assert "torchvision-mix compare --epochs 1" in (out / "results.md").read_text()


def test_compare_on_an_image_folder(tmp_path, capsys):
    _images(tmp_path / "data")
    code = cli.main(
        [
            "compare",
            "--dataset",
            "folder",
            "--root",
            str(tmp_path / "data"),
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--image-size",
            "16",
            "--methods",
            "none,cutmix,attentive",
            "--grid-size",
            "4",
            "--top-k",
            "3",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 0 and "| CutMix |" in capsys.readouterr().out


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "--dataset", "imagenet"], "invalid choice: 'imagenet'"),
        (["compare", "--epochs", "0"], "expected a positive int, got '0'"),
        (["compare", "--dataset", "folder"], "--dataset folder needs --root DIR"),
        (["compare", "--dataset", "folder", "--root", "/nonexistent/dir"], "no such folder: /nonexistent/dir"),
        (["compare", "--top-k", "50"], "--top-k 50 is larger than the grid's 49 cells"),
        (["compare", "--methods", "cutmix,fmix"], "unknown method(s) ['fmix']"),
        (["demo", "/nonexistent.png", "/nonexistent2.png"], "no such image file: /nonexistent.png"),
        (["demo", "--top-k", "10", "--grid-size", "3"], "--top-k 10 is larger than the grid's 9 cells"),
    ],
)
def test_bad_settings_give_one_line_and_a_non_zero_exit(args, message, capsys, monkeypatch):
    monkeypatch.setattr(_compare, "run_compare", lambda *a: pytest.fail("must stop before training"))
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
