"""Interactive explorers (ipywidgets) used in the notebooks.

Each explorer lives in its own submodule and is imported on first use, so that
``import camlib.widgets`` stays cheap::

    kernel_explorer, pooling_explorer   camlib.widgets.filters   (notebooks 01, 02)
    layer_browser                       camlib.widgets.layers    (notebook 04)
    cam_explorer                        camlib.widgets.explorer  (notebook 06 and later)

Every explorer returns an object with a ``.widget`` to display and its controls as
attributes, so tests can set a control's value and check what changed.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "kernel_explorer": "filters",
    "pooling_explorer": "filters",
    "layer_browser": "layers",
    "cam_explorer": "explorer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
