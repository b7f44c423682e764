"""How much does CAM cost on top of the plain forward pass?

CAM should cost one forward pass plus one weighted sum. This script times, in the
same run and interleaved (so machine load hits all variants alike):

- the plain forward pass of EfficientNet-Lite0 (eval, no grad);
- CAM for the predicted class (hook + forward + identity check + one map);
- CAM for all 1000 classes at feature resolution;
- all 1000 maps up-scaled to 224 x 224 and normalized (for reference: that is
  what CAM does *not* do unless asked);

for batch 1 and batch 32, and prints medians and ratios to the plain forward.

    python benchmarks/cam_overhead.py [--repeats 15] [--threads 1]

On a busy machine, torch's threads wait on each other; --threads 1 gives steadier numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from camlib import cam, models


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model, _, _ = models.load_pretrained()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, EfficientNet-Lite0, 224 x 224 input")
    print("ratios use the fastest run of each variant (the least disturbed by other load); medians beside")
    print(f"{'variant':44s} {'batch':>5s} {'best ms':>9s} {'ratio':>7s} {'median ms':>10s} {'ratio':>7s}")
    for batch in args.batches:
        x = torch.randn(batch, 3, 224, 224)
        repeats = max(5, args.repeats if batch == 1 else args.repeats // 3)

        def plain():
            with torch.no_grad():
                model(x)

        with cam.CAM(model) as cam_of:
            variants = {
                "plain forward": plain,
                "CAM, predicted class": lambda: cam_of(x),
                "CAM, all 1000 classes (7 x 7)": lambda: cam_of(x, "all"),
            }
            if batch == 1:
                variants["CAM, all 1000 up-scaled to 224 + normalized"] = lambda: cam_of(x, "all").upsampled(224)
            for fn in variants.values():  # warm-up
                fn()
            times = {name: [] for name in variants}
            for _ in range(repeats):  # interleave the variants
                for name, fn in variants.items():
                    times[name] += _time(fn, 1)
        best0, med0 = min(times["plain forward"]), statistics.median(times["plain forward"])
        for name, ts in times.items():
            best, med = min(ts), statistics.median(ts)
            print(f"{name:44s} {batch:5d} {best * 1e3:9.2f} {best / best0:6.3f}x {med * 1e3:10.2f} {med / med0:6.3f}x")


if __name__ == "__main__":
    main()
