#!/usr/bin/python3
"""Python peer of bench_preprocess.cpp: the same pipeline written the usual way with cv2 + numpy.

JPEG -> cv2.imread (full size) -> FOV (channel max on a <=512 px copy, threshold bg + max(8, 0.1 (p99 - bg)),
opening, largest component) -> crop to its box -> INTER_AREA resize (longer side = size) -> black square
pad -> circular mask -> float32 CHW with ImageNet mean/std.  cold: every image decoded; warm: the
preprocessed uint8 image loaded from a .npy cache.  1 and 2 worker processes (as PyTorch DataLoader
workers), cv2.setNumThreads(1) in each.  Prints one JSON object per line with the best wall time and
the best CPU time (summed over workers; robust on a busy shared machine).

    /usr/bin/python3 bench/bench_preprocess.py [--data DIR] [--size 256] [--limit 0] [--reps 3]
"""
import argparse
import csv
import json
import multiprocessing as mp
import os
import time

import cv2
import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
CACHE = "/tmp/fundus-bench-preprocess-npy"


def preprocess(path, size):
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    s = min(1.0, 512.0 / max(w, h))
    small = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else bgr
    b, g, r = cv2.split(small)
    level = cv2.max(cv2.max(b, g), r)
    cdf = np.cumsum(np.bincount(level.ravel(), minlength=256))  # percentiles from the histogram
    bg, hi = np.searchsorted(cdf, [0.01 * level.size, 0.99 * level.size], side="right")
    binary = (level > bg + max(8.0, 0.1 * (hi - bg))).astype(np.uint8)
    k = max(3, round(0.01 * max(small.shape[:2]))) | 1
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n > 1:
        best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        x, y, bw, bh = (stats[best, :4] / s).round().astype(int)
        x, y = max(0, x), max(0, y)
        bw, bh = min(bw, w - x), min(bh, h - y)
    else:
        x, y, bw, bh = 0, 0, w, h
    crop = bgr[y:y + bh, x:x + bw]
    scale = size / max(bw, bh)
    rw, rh = max(1, min(size, round(bw * scale))), max(1, min(size, round(bh * scale)))
    resized = cv2.resize(crop, (rw, rh), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size, 3), np.uint8)
    ox, oy = (size - rw) // 2, (size - rh) // 2
    out[oy:oy + rh, ox:ox + rw] = resized
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), size // 2, 1, -1)
    out *= mask[:, :, None]
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def to_tensor(rgb):
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0
    return (chw - MEAN) / STD


def cold_chunk(args):
    paths, size = args
    cv2.setNumThreads(1)
    c0 = time.process_time()
    for p in paths:
        to_tensor(preprocess(p, size))
    return time.process_time() - c0


def warm_chunk(args):
    paths, size = args
    cv2.setNumThreads(1)
    c0 = time.process_time()
    for p in paths:
        to_tensor(np.load(os.path.join(CACHE, os.path.basename(p) + ".npy")))
    return time.process_time() - c0


def timed(pool, fn, paths, size, workers, reps):
    """Best wall seconds and best CPU seconds (summed over the workers) of `reps` passes."""
    chunks = [(paths[i::workers], size) for i in range(workers)]
    best, best_cpu = 1e30, 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        cpu = fn(chunks[0]) if pool is None else sum(pool.map(fn, chunks))
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, cpu)
    return best, best_cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/rahim-dr")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    with open(os.path.join(a.data, "labels.csv")) as f:
        paths = [os.path.join(a.data, "images", row["image"]) for row in csv.DictReader(f)]
    if a.limit > 0:
        paths = paths[:a.limit]
    cv2.setNumThreads(1)
    os.makedirs(CACHE, exist_ok=True)
    for p in paths:
        open(p, "rb").read()  # page cache warm, as in the C++ bench
        np.save(os.path.join(CACHE, os.path.basename(p) + ".npy"), preprocess(p, a.size))
    for mode, fn in (("cold", cold_chunk), ("warm", warm_chunk)):
        for workers in (1, 2):
            if workers == 1:
                s, cpu = timed(None, fn, paths, a.size, 1, a.reps)
            else:
                with mp.get_context("fork").Pool(workers) as pool:
                    pool.map(fn, [(paths[:2], a.size)] * workers)  # start-up outside the timing
                    s, cpu = timed(pool, fn, paths, a.size, workers, a.reps)
            print(json.dumps({"impl": "python", "mode": mode, "threads": workers, "images": len(paths),
                              "seconds": round(s, 4), "images_per_s": round(len(paths) / s, 1),
                              "cpu_ms_per_image": round(1e3 * cpu / len(paths), 3)}), flush=True)


if __name__ == "__main__":
    main()
