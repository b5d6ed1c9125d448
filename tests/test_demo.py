"""The demo picture: its title fits the figure whatever the number of images."""

import pytest

from torchvision_mix import _demo

pytest.importorskip("matplotlib")


@pytest.mark.parametrize("count", [2, 3, 8])
def test_the_title_is_inside_the_figure(tmp_path, monkeypatch, count):
    import matplotlib.figure
    import PIL.Image

    paths = []
    for k in range(count):
        path = tmp_path / f"{k}.png"
        PIL.Image.new("RGB", (40, 40), (30 * k, 200 - 20 * k, 90)).save(path)
        paths.append(str(path))
    monkeypatch.setattr(_demo, "pick_extractor", lambda weights_path: (_demo.EdgeEnergy(), "edge energy"))
    seen = []
    save = matplotlib.figure.Figure.savefig

    def checked_save(fig, *args, **kwargs):
        renderer = fig.canvas.get_renderer()
        box = fig._suptitle.get_window_extent(renderer)
        seen.append((box.x0, box.x1, box.y1, fig.bbox.width, fig.bbox.height))
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", checked_save)
    _demo.make_demo(paths, str(tmp_path / "demo.png"), size=64)
    ((x0, x1, top, width, height),) = seen
    assert x0 >= 0 and x1 <= width and top <= height, (x0, x1, width)
