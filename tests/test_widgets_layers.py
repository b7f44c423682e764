"""Tests for camlib.widgets.layers: the layer/channel browser reacts to its controls correctly."""

from __future__ import annotations

import pytest
import torch

from camlib import features
from camlib.widgets import layer_browser


def test_layer_browser_follows_its_controls(pretrained, photos):
    model, preprocess, _ = pretrained
    images = {name: photos[name] for name in ("chelsea", "rocket")}
    browser = layer_browser(model, preprocess, images)
    assert browser.layer.value == "stem" and browser.current_map.shape == (112, 112)
    assert browser.channel.max == 31

    browser.layer.value = "block 10"
    assert browser.channel.max == 111 and browser.current_map.shape == (14, 14)
    browser.channel.value = 50
    x = preprocess.batch([images["chelsea"]])
    expected = features.capture_activations(model, {"b": model._blocks[10]}, x)["b"][0, 50]
    torch.testing.assert_close(browser.current_map, expected)
    assert "receptive field 339 px" in browser.figure.axes[1].get_title()

    browser.image.value = "rocket"
    expected = features.capture_activations(model, {"b": model._blocks[10]}, preprocess.batch([images["rocket"]]))
    torch.testing.assert_close(browser.current_map, expected["b"][0, 50])

    browser.layer.value = "stem"  # fewer channels: the slider is clamped to the last one
    assert browser.channel.max == 31 and browser.channel.value == 31
    assert browser.current_map.shape == (112, 112)


def test_layer_browser_needs_images(pretrained):
    model, preprocess, _ = pretrained
    with pytest.raises(ValueError, match="at least one image"):
        layer_browser(model, preprocess, {})
