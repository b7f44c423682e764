"""A tiny configurable CNN for the localization benchmark, its training, and a weight cache.

``GapNet``: conv blocks (3x3 conv -> batch norm -> ReLU, a 2x2 max-pool after each of
the first ``pools`` blocks), then one of three heads:

* ``"gap"``: ``AdaptiveAvgPool2d(1)`` -> ``Linear`` (the paper's CAM network; :class:`camlib.cam.CAM`
  recognises it);
* ``"gmp"``: ``AdaptiveMaxPool2d(1)`` -> ``Linear`` (the paper's global max pooling baseline);
* ``"fc"``: ``Flatten`` -> ``Linear`` over every position (a VGG/AlexNet-style head).

Trained weights are cached on disk under ``$CAMLIB_CACHE`` (default ``~/.cache/camlib``),
one file per configuration; the key is a hash of the full :class:`TrainConfig`, data
included, and the configuration is stored in the file and checked on load.

Taught in notebooks/05_global_average_pooling.ipynb and notebooks/07_results.ipynb.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from camlib import benchmark as bench
from camlib import cam as cam_steps
from camlib.cost import count_parameters  # noqa: F401  (gapnet.count_parameters, used in notebook 05)

HEADS = ("gap", "gmp", "fc")
CACHE_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Network + training + data: everything that determines the trained weights.

    ``channels``: output channels of the conv blocks; ``pools``: how many of the first
    blocks end with a 2x2 max-pool (final map side = ``canvas / 2**pools``); ``head``:
    ``"gap"``, ``"gmp"`` or ``"fc"``. Adam with ``lr``, ``epochs`` passes over the
    training split in batches of ``batch_size``, shuffled by a generator seeded with
    ``seed`` (which also draws the initial weights). ``data``: the benchmark.
    """

    channels: tuple[int, ...] = (8, 16, 32, 64, 128)
    pools: int = 2
    head: str = "gap"
    epochs: int = 4
    lr: float = 1e-2
    batch_size: int = 64
    seed: int = 0
    data: bench.BenchmarkConfig = field(default_factory=bench.BenchmarkConfig)

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {self.channels}")
        if not 0 <= self.pools <= len(self.channels):
            raise ValueError(f"pools must be between 0 and len(channels)={len(self.channels)}, got {self.pools}")
        if self.data.canvas % (2 ** self.pools):
            raise ValueError(f"canvas {self.data.canvas} is not divisible by 2**pools = {2 ** self.pools}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size and lr must be positive")
        if not isinstance(self.data, bench.BenchmarkConfig):
            raise TypeError(f"data must be a BenchmarkConfig, got {type(self.data).__name__}")

    @property
    def map_size(self) -> int:
        """Side of the last convolutional maps (the CAM resolution)."""
        return self.data.canvas // 2 ** self.pools

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the whole configuration (data included)."""
        d = {k: v for k, v in asdict(self).items() if k != "data"}
        d["channels"] = list(self.channels)
        d["data"] = self.data.to_dict()
        d["version"] = CACHE_VERSION
        return d

    def key(self) -> str:
        """16 hex digits of the SHA-256 of :meth:`to_dict` (the cache file name)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class GapNet(nn.Module):
    """Conv blocks then a ``"gap"`` / ``"gmp"`` / ``"fc"`` head; input ``(N, 1, S, S)``, logits ``(N, 10)``.

    ``features(x)`` gives the last convolutional maps ``(N, K, S/2**pools, S/2**pools)``;
    ``pool`` and ``fc`` are the head's modules. Weights are drawn from ``config.seed``
    without touching the global random state.

    Taught in notebooks/05_global_average_pooling.ipynb.
    """

    def __init__(self, config: TrainConfig | None = None, num_classes: int = 10):
        super().__init__()
        self.config = config = config or TrainConfig()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            layers: list[nn.Module] = []
            c_in = 1
            for i, c_out in enumerate(config.channels):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
                if i < config.pools:
                    layers.append(nn.MaxPool2d(2))
                c_in = c_out
            self.features = nn.Sequential(*layers)
            side = config.map_size
            if config.head == "gap":
                self.pool: nn.Module = nn.AdaptiveAvgPool2d(1)
                n_in = c_in
            elif config.head == "gmp":
                self.pool = nn.AdaptiveMaxPool2d(1)
                n_in = c_in
            else:
                self.pool = nn.Identity()
                n_in = c_in * side * side
            self.fc = nn.Linear(n_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@torch.no_grad()
def predict(model: GapNet, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, C)`` and last conv features ``(N, K, h, w)``, in eval mode (the flag is restored).

    Runs on one thread (:func:`camlib.benchmark.single_thread`): faster for this small
    network, and the numbers do not depend on the machine's thread count.

    Taught in notebooks/07_results.ipynb.
    """
    was_training = model.training
    model.eval()
    try:
        logits, feats = [], []
        with bench.single_thread():
            for i in range(0, len(images), batch_size):
                f = model.features(images[i : i + batch_size])
                feats.append(f)
                logits.append(model.fc(model.pool(f).flatten(1)))
        return torch.cat(logits), torch.cat(feats)
    finally:
        model.train(was_training)


def class_maps(model: GapNet, images: torch.Tensor, class_idx: torch.Tensor | None = None):
    """Logits ``(N, C)`` and the maps ``M_c = sum_k w_k^c f_k`` ``(N, h, w)`` for one class per image.

    ``class_idx`` ``(N,)`` (default: each image's predicted class). Uses
    :func:`camlib.cam.class_activation_maps`, so it works for the GAP and the GMP head
    alike (for GMP the maps are computed the same way, as the paper does, though the
    logits are not their mean). Refused for the ``"fc"`` head, which has no per-channel weight.

    Taught in notebooks/07_results.ipynb.
    """
    if model.config.head == "fc":
        raise ValueError("the flatten + linear head has a weight per position, not per channel: no CAM")
    logits, feats = predict(model, images)
    idx = logits.argmax(1) if class_idx is None else torch.as_tensor(class_idx).long()
    if idx.shape != (len(images),):
        raise ValueError(f"class_idx must have shape ({len(images)},), got {tuple(idx.shape)}")
    maps = cam_steps.class_activation_maps(feats, model.fc.weight.detach())  # (N, C, h, w)
    return logits, maps[torch.arange(len(idx)), idx]


def accuracy(model: GapNet, split: bench.Split) -> float:
    """Fraction of ``split`` classified correctly."""
    logits, _ = predict(model, split.images)
    return (logits.argmax(1) == split.labels).float().mean().item()


def train(config: TrainConfig, data: dict | None = None, progress: bool = True):
    """Train a :class:`GapNet` from scratch on the benchmark's training split (labels only).

    Deterministic: weights from ``config.seed``, batch order from a seeded
    ``torch.Generator``, no dropout, and one thread (so the sums, hence the weights,
    do not depend on the machine's core count).
    ``data`` may pass the already generated benchmark (it must match ``config.data``).
    Returns ``(model, info)``; ``info`` has ``loss`` (per epoch), ``val_accuracy``,
    ``train_seconds``. The model is returned in eval mode.

    Taught in notebooks/05_global_average_pooling.ipynb.
    """
    from tqdm.auto import tqdm

    data = data or bench.make_benchmark(config.data)
    images, labels = data["train"].images, data["train"].labels
    if len(images) != config.data.n_train or images.shape[-1] != config.data.canvas:
        raise ValueError(
            f"the data passed ({len(images)} training images of {images.shape[-1]} px) was not made from "
            f"config.data ({config.data.n_train} images of {config.data.canvas} px)"
        )
    model = GapNet(config)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = config.epochs * ((len(images) + config.batch_size - 1) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps)
    losses = []
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=f"training {config.head} {config.map_size}x{config.map_size}",
               disable=not progress)
    with bench.single_thread():  # same weights on any machine: sums do not depend on the thread count
        _epochs(model, images, labels, config, generator, optimizer, schedule, losses, bar)
    seconds = time.perf_counter() - start
    model.eval()
    info = {"loss": losses, "train_seconds": seconds, "val_accuracy": accuracy(model, data["val"])}
    return model, info


def _epochs(model, images, labels, config, generator, optimizer, schedule, losses, bar) -> None:
    for _ in bar:
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for i in range(0, len(images), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        losses.append(total / len(images))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")


def cache_dir() -> Path:
    """``$CAMLIB_CACHE`` if set, else ``~/.cache/camlib``."""
    return Path(os.environ.get("CAMLIB_CACHE") or Path.home() / ".cache" / "camlib")


def cache_path(config: TrainConfig, directory: str | Path | None = None) -> Path:
    """Where the weights of ``config`` are cached: ``<dir>/gapnet-<key>.pt``."""
    return Path(directory or cache_dir()) / f"gapnet-{config.key()}.pt"


def load_or_train(config: TrainConfig, data: dict | None = None, progress: bool = True,
                  directory: str | Path | None = None):
    """The trained model for ``config``: from the cache if a valid file is there, else trained and cached.

    A cached file is used only if it loads and the configuration stored inside equals
    ``config``; otherwise a warning says why and the model is retrained (and the file
    rewritten, atomically). Returns ``(model, info)`` as :func:`train`, with
    ``info["cached"]`` (True when loaded) and ``info["path"]``.

    Taught in notebooks/05_global_average_pooling.ipynb and notebooks/07_results.ipynb.
    """
    path = cache_path(config, directory)
    if path.exists():
        reason = None
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(stored, dict) or stored.get("config") != config.to_dict():
                reason = "its stored configuration differs from the requested one"
            else:
                model = GapNet(config)
                model.load_state_dict(stored["state_dict"])
                model.eval()
                info = dict(stored["info"], cached=True, path=str(path))
                return model, info
        except Exception as error:  # a corrupt or truncated file: say so, then retrain
            reason = f"it could not be read ({type(error).__name__}: {error})"
        warnings.warn(f"ignoring cached weights {path}: {reason}; retraining", stacklevel=2)
    model, info = train(config, data=data, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"config": config.to_dict(), "state_dict": model.state_dict(), "info": info}, tmp)
    os.replace(tmp, path)
    return model, dict(info, cached=False, path=str(path))


def _train_into_cache(config: TrainConfig, data: dict | None, directory: str | None) -> dict:
    """Worker of :func:`load_or_train_many`: train one configuration, cache it, return its info."""
    return load_or_train(config, data=data, progress=False, directory=directory)[1]


def load_or_train_many(configs: dict, data: dict | None = None, progress: bool = True,
                       directory: str | Path | None = None, workers: int | None = None) -> dict:
    """:func:`load_or_train` for several configurations, training the missing ones in parallel.

    ``configs`` maps names to :class:`TrainConfig`. Each training runs on one thread
    (see :func:`train`), so on a machine with several cores the missing models are
    trained at the same time in separate processes (``workers``, default: the number
    of cores), with the same weights as one after the other. Returns
    ``{name: (model, info)}`` in the order of ``configs``.

    Taught in notebooks/07_results.ipynb.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    todo = [name for name, config in configs.items() if not cache_path(config, directory).exists()]
    workers = min(len(todo), workers or os.cpu_count() or 1)
    trained = {}
    if workers > 1:
        directory = None if directory is None else str(directory)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_train_into_cache, configs[name], data, directory): name for name in todo}
            for future in tqdm(as_completed(futures), total=len(futures), disable=not progress,
                               desc=f"training {len(todo)} networks on {workers} processes"):
                trained[futures[future]] = future.result()
    results = {}
    for name, config in configs.items():
        model, info = load_or_train(config, data=data, progress=progress, directory=directory)
        if name in trained:  # trained just now by a worker: report it as trained, not cached
            info = dict(trained[name], path=info["path"])
        results[name] = (model, info)
    return results


def cam_check(model: GapNet, images: torch.Tensor) -> torch.Tensor:
    """For a GAP model: the largest gap between the logits and ``mean(M_c) + b_c`` (should be ~1e-6).

    Taught in notebooks/05_global_average_pooling.ipynb.
    """
    logits, feats = predict(model, images)
    maps = cam_steps.class_activation_maps(feats, model.fc.weight.detach())  # (N, C, h, w)
    return (maps.mean((-2, -1)) + model.fc.bias.detach() - logits).abs().max()
