"""Layer/channel browser: one photo's feature maps at any depth of the network.

Taught in notebooks/04_feature_depth.ipynb.
"""

from __future__ import annotations

import numpy as np
import torch

from camlib import features, receptive_field

__all__ = ["layer_browser"]


class LayerBrowser:
    """Pick a photo, a layer and a channel; see that channel's feature map beside the photo.

    Controls (ipywidgets, set ``.value`` to drive it from code): ``image`` (Dropdown of
    photo names), ``layer`` (Dropdown of layer labels, shallow to deep), ``channel``
    (IntSlider; its maximum follows the layer's channel count). ``current_map`` is the
    ``(h, w)`` map on show, ``figure`` the matplotlib figure drawn into ``output``,
    ``widget`` the box to display.
    """

    def __init__(self, model, preprocess, images: dict, layers: dict | None = None):
        import ipywidgets as widgets

        if not images:
            raise ValueError("give at least one image, e.g. camlib.data.sample_images()")
        self.model = model
        self.preprocess = preprocess
        self.images = dict(images)
        self.layers = dict(layers) if layers is not None else features.depth_layers(model)
        if not self.layers:
            raise ValueError("give at least one layer")
        example = preprocess.batch([next(iter(self.images.values()))])
        self.receptive_fields = receptive_field.receptive_fields(model, self.layers, example)
        self._cache: dict[str, dict[str, torch.Tensor]] = {}

        self.image = widgets.Dropdown(options=list(self.images), description="photo")
        self.layer = widgets.Dropdown(options=list(self.layers), description="layer")
        self.channel = widgets.IntSlider(value=0, min=0, max=0, description="channel",
                                         continuous_update=False)
        self.output = widgets.Output()
        self.figure = None
        self.current_map: torch.Tensor | None = None
        for control in (self.image, self.layer, self.channel):
            control.observe(self._on_change, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.image, self.layer, self.channel]), self.output])
        self._update()

    def activations(self, image_name: str) -> dict[str, torch.Tensor]:
        """All browsed layers' outputs ``{label: (K, h, w)}`` for one photo (computed once, cached)."""
        if image_name not in self._cache:
            x = self.preprocess.batch([self.images[image_name]])
            acts = features.capture_activations(self.model, self.layers, x)
            self._cache[image_name] = {label: a[0] for label, a in acts.items()}
        return self._cache[image_name]

    def _on_change(self, _change):
        self._update()

    def _update(self):
        from IPython.display import clear_output, display
        from matplotlib.figure import Figure

        acts = self.activations(self.image.value)[self.layer.value]  # (K, h, w)
        n_channels, h, w = acts.shape
        if self.channel.max != n_channels - 1:
            # Setting max may clamp value and re-enter _update; the guard keeps it to one draw.
            self.channel.unobserve(self._on_change, names="value")
            self.channel.max = n_channels - 1
            self.channel.observe(self._on_change, names="value")
        self.current_map = acts[self.channel.value]
        rf = self.receptive_fields[self.layer.value]

        fig = Figure(figsize=(8, 3.6))
        ax_image, ax_map = fig.subplots(1, 2)
        ax_image.imshow(self.preprocess.display(self.images[self.image.value]))
        ax_image.set_title(f"{self.image.value} (224 x 224 input)")
        m = self.current_map.numpy()
        lim = float(np.abs(m).max()) or 1.0
        shown = ax_map.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
        fig.colorbar(shown, ax=ax_map, fraction=0.046)
        ax_map.set_title(f"{self.layer.value}, channel {self.channel.value} of {n_channels}: {h} x {w} map\n"
                         f"receptive field {rf['size']} px, stride {rf['jump']}", fontsize=9)
        for ax in (ax_image, ax_map):
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        self.figure = fig
        with self.output:
            clear_output(wait=True)
            display(fig)


def layer_browser(model, preprocess, images: dict, layers: dict | None = None) -> LayerBrowser:
    """Browse feature maps by photo, layer and channel.

    ``model`` and ``preprocess`` as from :func:`camlib.models.load_pretrained`, ``images``
    ``{name: RGB array}`` (e.g. :func:`camlib.data.sample_images`), ``layers``
    ``{label: module}`` (default :func:`camlib.features.depth_layers`). Returns a
    :class:`LayerBrowser`; display its ``.widget``.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    return LayerBrowser(model, preprocess, images, layers)
