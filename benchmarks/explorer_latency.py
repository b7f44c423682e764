"""Update latency of the CAM explorer (camlib.widgets.cam_explorer), in milliseconds.

A class switch or a threshold change must not run the model again: it reuses the
features of the photo's one forward pass. Target: <= 30 ms per update, excluding
drawing. Three stages are timed separately for each kind of update:

  state      the new map / box only (maps_for -> upsample -> normalize -> cam_to_box)
  + overlay  state + camlib.viz.overlay (the coloured, blended uint8 picture)
  + PNG      the whole update as the widget does it: state, overlay, boxes, PNG bytes

A photo change (one forward pass of EfficientNet-Lite0) is timed for comparison.

Run: /work/venv/bin/python benchmarks/explorer_latency.py [--repeat 30]
The machine may be shared: the load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import torch

from camlib import data, models, viz, widgets


def timed(fn, repeat: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU milliseconds of ``repeat`` calls of ``fn(i)``.

    On a shared machine the wall clock also counts time spent waiting for a core;
    the CPU time does not (it can exceed the wall time when torch uses 2 threads).
    """
    wall, cpu = [], []
    for i in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(i)
        wall.append((time.perf_counter() - start) * 1000.0)
        cpu.append((time.process_time() - start_cpu) * 1000.0)
    return wall, cpu


def report(name: str, times: tuple[list[float], list[float]]) -> None:
    wall, cpu = (sorted(t) for t in times)
    p90 = wall[min(len(wall) - 1, int(round(0.9 * (len(wall) - 1))))]
    print(f"{name:<32} wall median {statistics.median(wall):7.2f} ms  p90 {p90:7.2f} ms   "
          f"cpu median {statistics.median(cpu):7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="updates timed per measurement")
    parser.add_argument("--photo", default="chelsea", help="shipped photo to use")
    args = parser.parse_args()

    torch.manual_seed(0)
    model, preprocess, categories = models.load_pretrained()
    photos = data.sample_images()
    explorer = widgets.cam_explorer(photos=photos, model=model, preprocess=preprocess, categories=categories)
    explorer.photo.value = args.photo
    classes = [value for _, value in explorer.top_classes.options]
    thresholds = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    cycle_class = itertools.cycle(classes).__next__
    cycle_threshold = itertools.cycle(thresholds).__next__

    # warm up (first calls pay for lazy imports and allocator growth)
    for _ in range(5):
        explorer.set_class(cycle_class())
        explorer.threshold.value = cycle_threshold()

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"photo {args.photo!r}, image {explorer.current_image.shape[1]}x{explorer.current_image.shape[0]}, "
          f"features {tuple(explorer.result.features.shape)}, {args.repeat} updates each\n")

    def class_state(i):
        explorer.update_class(cycle_class())

    def class_overlay(i):
        explorer.update_class(cycle_class())
        viz.overlay(explorer.current_image, explorer._raw_map, alpha=explorer.alpha.value, cmap=explorer.cmap.value)

    def class_full(i):
        explorer.top_classes.value = cycle_class()  # exactly what a click does

    def threshold_full(i):
        explorer.threshold.value = cycle_threshold()  # exactly what dragging the slider does

    def photo_change(i):
        explorer.photo.value = list(photos)[i % len(photos)]

    report("class switch: state", timed(class_state, args.repeat))
    report("class switch: + overlay", timed(class_overlay, args.repeat))
    report("class switch: + overlay + PNG", timed(class_full, args.repeat))
    report("threshold: state", timed(lambda i: explorer.update_box(cycle_threshold()), args.repeat))
    report("threshold: + overlay", timed(lambda i: (explorer.update_box(cycle_threshold()), viz.overlay(
        explorer.current_image, explorer._raw_map, alpha=explorer.alpha.value, cmap=explorer.cmap.value)),
        args.repeat))
    report("threshold: + overlay + PNG", timed(threshold_full, args.repeat))
    report("photo change (one forward pass)", timed(photo_change, max(8, args.repeat // 3)))
    print("\ntarget: <= 30 ms per class switch / threshold change, excluding drawing (the 'state' rows)")


if __name__ == "__main__":
    main()
