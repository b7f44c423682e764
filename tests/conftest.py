"""Shared fixtures: a headless matplotlib, seeded generators, tiny models.

Per-module fixtures live in the test file that needs them.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    """Every test starts from the same seed and leaves no figure open."""
    torch.manual_seed(0)
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="session")
def pretrained():
    """(model, preprocess, categories) of the packaged EfficientNet-Lite0, loaded once."""
    from camlib import models

    return models.load_pretrained()


@pytest.fixture(scope="session")
def photos():
    """The shipped photos as {name: RGB uint8 array}, read once."""
    from camlib import data

    return data.sample_images()
