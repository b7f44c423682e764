"""Forward hooks as context managers: capture what flows through a module.

A bare ``register_forward_hook`` leaks when the caller forgets ``handle.remove()``
or an exception skips it; here the hook lives exactly as long as the ``with`` block.

Taught in notebooks/06_class_activation_mapping.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn


class Capture:
    """Record the input (``where="input"``) or output of ``module`` on each forward.

    Use as a context manager; after a forward pass ``.value`` holds the last tensor
    seen (detached unless ``detach=False``). The hook is removed on exit, also when
    the block raises.

    >>> with Capture(model._avg_pooling, where="input") as feats:
    ...     logits = model(x)
    >>> feats.value.shape  # (N, 1280, 7, 7)
    """

    def __init__(self, module: nn.Module, where: str = "output", detach: bool = True):
        if not isinstance(module, nn.Module):
            raise TypeError(f"Capture needs an nn.Module, got {type(module).__name__}")
        if where not in ("input", "output"):
            raise ValueError(f"where must be 'input' or 'output', got {where!r}")
        self.module = module
        self.where = where
        self.detach = detach
        self.value: torch.Tensor | None = None
        self.calls = 0
        self._handle = None

    def _store(self, tensor):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"expected a tensor at the {self.where} of {type(self.module).__name__}, got {type(tensor).__name__}")
        self.value = tensor.detach() if self.detach else tensor
        self.calls += 1

    def _pre_hook(self, module, args):
        self._store(args[0])

    def _post_hook(self, module, args, output):
        self._store(output)

    def __enter__(self) -> "Capture":
        if self._handle is not None:
            raise RuntimeError("this Capture is already active")
        if self.where == "input":
            self._handle = self.module.register_forward_pre_hook(self._pre_hook)
        else:
            self._handle = self.module.register_forward_hook(self._post_hook)
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hook (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @property
    def active(self) -> bool:
        return self._handle is not None


def active_hook_count(model: nn.Module) -> int:
    """Number of forward (pre-)hooks registered anywhere in ``model`` (for checks and tests)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
