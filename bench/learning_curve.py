#!/usr/bin/env python3
"""Learning curve: how retrieval on new patients grows with the number of training patients.

usage: bench/learning_curve.py --cv-dir CV --out OUT [--fractions 0,0.25,0.5,1] [--seeds 1]
                               [--fundus build/bin/fundus] [--plot OUT.svg] [-- TRAIN ARGS...]

CV is a finished `fundus cv` folder: its folds (CV/seed*/foldK/manifest.csv, patient-disjoint, both
eyes of a patient in one fold) are reused, so every point queries the same held-out photographs
against the same gallery (the fold's whole training set) and only the number of patients the model
was trained on changes. For each seed, fraction and fold:
  1. keep `fraction` of the fold's training patients, stratified by the patient's highest grade
     (Python's random.Random(seed), the same subset for every recipe);
  2. `fundus train TRAIN ARGS --data subset.csv --set train.seed=SEED` (fraction 0: no training at all,
     train.epochs=0, i.e. the pretrained features, computed once under the first seed);
  3. `fundus eval` of the test photographs against all training photographs of the fold.
Finished points are kept (OUT/s{seed}/f{fraction}/fold{k}/eval/eval.json), so a run can be resumed or
extended. Writes OUT/learning_curve.json and prints a Markdown table (mean ± std over folds x seeds,
chance floors in brackets). Standard library only. Checkpoints are deleted after evaluation.

Example (the no-attention + FTL recipe of docs/results.md, Table 3 reference):
  bench/learning_curve.py --cv-dir cv-noatt --out lc --fractions 0,0.25,0.5,1 --seeds 1,2 -- \
    --preset cpu --pretrained ../shared/models/mobilenet_v2_imagenet1k.pth --threads 1 \
    --set model.attention='"none"' --set model.frozen_stages=14
(docs/results/K-learning-curve.json is this run's output, seeds 1 and 2.)
"""
import argparse
import csv
import glob
import json
import os
import random
import shutil
import statistics
import subprocess
import sys

METRICS = [  # (label, group, key); kNN QWK comes from the k-NN block
    ("micro P@10", "micro", "P@10"),
    ("macro P@10", "macro", "P@10"),
    ("mAP@10", "micro", "mAP@10"),
    ("MAP@R", "micro", "MAP@R"),
    ("Mild P@10", "Mild", "P@10"),
    ("kNN QWK", None, "qwk"),
]


def read_manifest(path):
    """Rows of a fold manifest with absolute image paths (they are relative to the manifest)."""
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["image"] = os.path.normpath(os.path.join(base, r["image"]))
    return rows


def write_manifest(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)


def subsample(rows, fraction, seed):
    """The training rows of `fraction` of the training patients, stratified by their highest grade."""
    train = [r for r in rows if r["split"] == "train"]
    patients = {}
    for r in train:
        patients.setdefault(r["patient"], []).append(r)
    by_grade = {}
    for p, rs in sorted(patients.items()):
        by_grade.setdefault(max(int(r["grade"]) for r in rs), []).append(p)
    rng = random.Random(seed)
    keep = set()
    for _, ps in sorted(by_grade.items()):
        rng.shuffle(ps)
        keep.update(ps[: max(1, round(fraction * len(ps)))])
    return [r for r in train if r["patient"] in keep]


def run(cmd, log):
    with open(log, "w") as f:
        if subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT) != 0:
            sys.exit(f"failed ({log}): {' '.join(cmd)}")


def point(args, train_args, seed, fraction, fold, manifest):
    """The folder of one finished point (eval/eval.json, train.csv), trained and evaluated if missing."""
    d = os.path.join(args.out, f"s{seed}", f"f{fraction}", f"fold{fold}")
    if os.path.exists(os.path.join(d, "eval", "eval.json")):
        return d
    os.makedirs(d, exist_ok=True)
    rows = read_manifest(manifest)
    write_manifest(os.path.join(d, "all.csv"), rows)
    subset = subsample(rows, fraction if fraction > 0 else 1.0, seed)  # fraction 0 trains nothing
    write_manifest(os.path.join(d, "train.csv"), subset)
    run_dir = os.path.join(d, "run")
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted point starts over
    extra = ["--set", "train.epochs=0", "--set", "train.bn_recalibration_images=0"] if fraction == 0 else []
    run([args.fundus, "train", *train_args, *extra, "--set", f"train.seed={seed}", "--data",
         os.path.join(d, "train.csv"), "--train-split", "train", "--val-split", "val", "--out", run_dir],
        os.path.join(d, "train.log"))
    with open(os.path.join(run_dir, "summary.json")) as f:
        checkpoint = json.load(f)["best_checkpoint"]
    run([args.fundus, "eval", "--model", checkpoint, "--data", os.path.join(d, "all.csv"), "--gallery", "train",
         "--queries", "test", "--out", os.path.join(d, "eval"), *args.eval_args],
        os.path.join(d, "eval.log"))
    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
    print(f"done seed {seed} fraction {fraction} fold {fold}: {len(subset)} training photographs", flush=True)
    return d


def values_of(eval_json):
    with open(eval_json) as f:
        j = json.load(f)
    groups = {g["name"]: g for g in j["groups"]}
    out = {}
    for label, group, key in METRICS:
        if group is None:
            out[label] = (j["knn"][key], j["knn"]["chance_" + key])
        else:
            out[label] = (groups[group]["values"][key], groups[group]["chance"][key])
    return out


def svg_plot(path, summary):
    """Micro and macro P@10 against the share of training patients, ±1 std bars, dashed chance floors."""
    w, h, left, right, top, bottom = 520, 300, 60, 20, 20, 50
    lo, hi = 0.15, 0.65
    x = lambda f: left + f * (w - left - right)
    y = lambda v: top + (hi - v) / (hi - lo) * (h - top - bottom)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
             f'<rect width="{w}" height="{h}" fill="white"/>']
    for v in [0.2, 0.3, 0.4, 0.5, 0.6]:
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    for p in summary:
        parts.append(f'<text x="{x(p["fraction"]):.1f}" y="{h - bottom + 16}" text-anchor="middle">'
                     f'{round(p["fraction"] * 100)}%</text>')
    parts.append(f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">'
                 'share of each fold\'s training patients used for training (gallery unchanged)</text>'
                 f'<text transform="translate(16,{(top + h - bottom) / 2}) rotate(-90)" text-anchor="middle">'
                 'P@10 on the held-out patients</text>')
    for label, colour in [("micro P@10", "#1f77b4"), ("macro P@10", "#d62728")]:
        pts = [(x(p["fraction"]), y(p[label]["mean"]), y(p[label]["mean"] - p[label]["std"]),
                y(p[label]["mean"] + p[label]["std"])) for p in summary]
        parts.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                     % (colour, " ".join(f"{a:.1f},{b:.1f}" for a, b, _, _ in pts)))
        for a, b, c, d in pts:
            parts.append(f'<line x1="{a:.1f}" x2="{a:.1f}" y1="{c:.1f}" y2="{d:.1f}" stroke="{colour}"/>'
                         f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>')
        chance = statistics.mean(p[label]["chance"] for p in summary)
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(chance):.1f}" y2="{y(chance):.1f}" '
                     f'stroke="{colour}" stroke-dasharray="4 3"/>'
                     f'<text x="{w - right - 4}" y="{y(chance) - 4:.1f}" text-anchor="end" fill="{colour}">'
                     f'{label} (chance dashed)</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    argv = sys.argv[1:]
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cv-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--fractions", default="0,0.25,0.5,1")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--fundus", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "fundus"))
    ap.add_argument("--plot", help="write an SVG of micro/macro P@10 against the fraction")
    ap.add_argument("--eval-args", default="--threads 1 --workers 1",
                    help="extra `fundus eval` options (e.g. --cache DIR), one string")
    args = ap.parse_args(argv)
    args.eval_args = args.eval_args.split()
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    manifests = sorted(glob.glob(os.path.join(args.cv_dir, "seed*", "fold*", "manifest.csv")))
    folds = {}
    for m in manifests:  # every seed of a cv run has the same folds; take the first seed's
        folds.setdefault(os.path.basename(os.path.dirname(m)), m)
    if not folds:
        sys.exit(f"{args.cv_dir}: no seed*/fold*/manifest.csv (is it a `fundus cv` output folder?)")

    summary = []
    for fraction in fractions:
        per_run, photographs = [], []
        for seed in seeds:
            for name, manifest in sorted(folds.items()):
                # Untrained features do not depend on the seed: every seed's curve starts from the first's.
                d = point(args, train_args, seeds[0] if fraction == 0 else seed, fraction, int(name[4:]), manifest)
                per_run.append(values_of(os.path.join(d, "eval", "eval.json")))
                with open(os.path.join(d, "train.csv")) as f:
                    photographs.append(0 if fraction == 0 else sum(1 for _ in csv.DictReader(f)))
        entry = {"fraction": fraction, "runs": len(per_run), "train_photographs": statistics.mean(photographs)}
        for label, _, _ in METRICS:
            v = [r[label][0] for r in per_run]
            entry[label] = {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                            "chance": statistics.mean(r[label][1] for r in per_run), "values": v}
        summary.append(entry)

    with open(os.path.join(args.out, "learning_curve.json"), "w") as f:
        json.dump({"cv_dir": args.cv_dir, "seeds": seeds, "train_args": train_args, "points": summary}, f, indent=1)
    if args.plot:
        svg_plot(args.plot, summary)
    print("| training patients | photographs | runs | " + " | ".join(m[0] for m in METRICS) + " |")
    print("|---|---|---|" + "---|" * len(METRICS))
    for p in summary:
        cells = [f'{p[m[0]]["mean"]:.3f} ± {p[m[0]]["std"]:.3f} ({p[m[0]]["chance"]:.3f})' for m in METRICS]
        print(f'| {round(p["fraction"] * 100)}% | {p["train_photographs"]:.0f} | {p["runs"]} | ' + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
