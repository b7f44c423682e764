"""camlib.viz: what the pictures contain (not only that they draw)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from camlib import cam, viz


def test_overlay_alpha_extremes_and_hot_spot():
    image = np.full((40, 40, 3), 100, dtype=np.uint8)
    m = torch.zeros(4, 4)
    m[0, 3] = 1.0  # hot in the top-right corner
    assert (viz.overlay(image, m, alpha=0.0) == image).all()
    heat = viz.overlay(image, m, alpha=1.0, cmap="gray")
    # gray colormap: the up-scaled, normalized map itself
    expected = np.round(cam.normalize(cam.upsample(m, 40)).numpy() * 255)
    assert np.abs(heat[..., 0].astype(int) - expected).max() <= 1
    assert heat[0, 39, 0] == 255 and heat[39, 0, 0] == 0


def test_overlay_bad_alpha_and_shape():
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(np.zeros((4, 4, 3), np.uint8), torch.zeros(2, 2), alpha=2)
    with pytest.raises(ValueError, match=r"one map of shape \(h, w\)"):
        viz.overlay(np.zeros((4, 4, 3), np.uint8), torch.zeros(1, 2, 2))


def test_draw_box_pixel_edges():
    fig, ax = plt.subplots()
    rect = viz.draw_box(ax, torch.tensor([10.0, 4.0, 17.0, 9.0]), label="cat")
    assert rect.get_xy() == (9.5, 3.5) and rect.get_width() == 7 and rect.get_height() == 5
    with pytest.raises(ValueError, match="x1 >= x0"):
        viz.draw_box(ax, [5, 5, 1, 1])


def test_plot_topk_titles_follow_probabilities():
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x)).flatten(1))

    model = Tiny()
    x = torch.randn(1, 3, 8, 8)
    with cam.CAM(model) as cam_of:
        result = cam_of(x)
    order = result.logits[0].argsort(descending=True)
    fig = viz.plot_topk(np.zeros((8, 8, 3), np.uint8), result, ["a", "b", "c"], k=3)
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes[1:]]
    assert titles == [["a", "b", "c"][int(i)] for i in order]
    with pytest.raises(ValueError, match="k must be between 1 and 3"):
        viz.plot_topk(np.zeros((8, 8, 3), np.uint8), result, ["a", "b", "c"], k=4)
