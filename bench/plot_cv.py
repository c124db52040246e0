#!/usr/bin/env python3
"""Summarises `fundus cv` results for docs/results.md: a Markdown table and an SVG bar chart.

usage: bench/plot_cv.py [--metrics M1,M2,...] OUT.svg LABEL=path/to/cv.json [LABEL=...]  > table.md

Each run is a `fundus cv` output: its cv.json, or its cv.md report (the summary table is parsed, so
the tables and the plot can be rebuilt from the reports committed in docs/results/).

--metrics: the table's columns (cv.md's metric names; default P@10, macro_P@10, mAP@10, MAP@R,
P@10 Mild, kNN_QWK). OUT.svg "-" writes no plot.

Bars: mean micro and macro P@10 over all runs (folds x seeds) of the "none" post-processing, with
+-1 std whiskers; dashed lines: the chance floors. Standard library only (no matplotlib here).
"""
import json
import re
import sys


def load_report(path):
    """The "none" column (else the first) of a cv.md report's summary table, as cv.json holds it."""
    text = open(path).read()
    runs = re.search(r"over (\d+) runs", text)
    if not runs:
        sys.exit(f"{path}: not a fundus cv report (no 'over N runs' line)")
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    column = header.index("none") if "none" in header else 1
    summary = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if len(cells) != len(header):
            break  # the per-run table follows the summary
        m = re.fullmatch(r"(-?[\d.]+) ± ([\d.]+) \((-?[\d.]+)\)", cells[column])
        if not m:
            sys.exit(f"{path}: summary cell '{cells[column]}' of '{cells[0]}' is not 'mean ± std (chance)'")
        summary[cells[0]] = {"mean": float(m[1]), "std": float(m[2]), "chance": float(m[3]), "runs": int(runs[1])}
    return summary


def load(path):
    if path.endswith(".md"):
        return load_report(path)
    summary = json.load(open(path))["summary"]
    return summary.get("none") or next(iter(summary.values()))


def cell(m):
    return f"{m['mean']:.3f} ± {m['std']:.3f} ({m['chance']:.3f})" if m else "-"


def main():
    args = sys.argv[1:]
    metrics = ["P@10", "macro_P@10", "mAP@10", "MAP@R", "P@10 Mild", "kNN_QWK"]
    if args[:1] == ["--metrics"]:
        metrics, args = args[1].split(","), args[2:]
    out, runs = args[0], [a.split("=", 1) for a in args[1:]]
    rows = [(label, load(path)) for label, path in runs]
    print("| recipe | runs | " + " | ".join(metrics) + " |")
    print("|---|---|" + "---|" * len(metrics))
    for label, s in rows:
        print(f"| {label} | {s['P@10']['runs']} | " + " | ".join(cell(s.get(m)) for m in metrics) + " |")

    if out == "-":
        return
    w, h, left, top, bottom = max(460, 120 + 110 * len(rows)), 330, 50, 30, 100
    plot_h = h - top - bottom
    y = lambda v: top + plot_h * (1 - v)  # P@10 in [0, 1]
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="16" font-size="13">5-fold patient-disjoint CV on rahim-dr: P@10 (mean ± std)</text>']
    for t in range(0, 11, 2):
        v = t / 10
        svg.append(f'<line x1="{left}" x2="{w - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    for i, (label, s) in enumerate(rows):
        x0 = left + 20 + 110 * i
        for j, (key, colour) in enumerate([("P@10", "#3b6ea5"), ("macro_P@10", "#e08a2c")]):
            m = s[key]
            x = x0 + 36 * j
            svg.append(f'<rect x="{x}" y="{y(m["mean"]):.1f}" width="30" height="{y(0) - y(m["mean"]):.1f}" fill="{colour}"/>')
            svg.append(f'<line x1="{x + 15}" x2="{x + 15}" y1="{y(m["mean"] + m["std"]):.1f}" '
                       f'y2="{y(max(0, m["mean"] - m["std"])):.1f}" stroke="black"/>')
            svg.append(f'<line x1="{x - 2}" x2="{x + 32}" y1="{y(m["chance"]):.1f}" y2="{y(m["chance"]):.1f}" '
                       f'stroke="black" stroke-dasharray="3,2"/>')
        words, line = label.split(), ""
        lines = []
        for wd in words:
            if len(line) + len(wd) > 16:
                lines.append(line)
                line = wd
            else:
                line = (line + " " + wd).strip()
        lines.append(line)
        for k, text in enumerate(lines[:4]):
            svg.append(f'<text x="{x0 + 33}" y="{y(0) + 16 + 13 * k:.1f}" text-anchor="middle">{text}</text>')
    svg.append(f'<rect x="{left}" y="{h - 18}" width="10" height="10" fill="#3b6ea5"/><text x="{left + 14}" y="{h - 9}">micro P@10</text>'
               f'<rect x="{left + 90}" y="{h - 18}" width="10" height="10" fill="#e08a2c"/><text x="{left + 104}" y="{h - 9}">macro P@10</text>'
               f'<line x1="{left + 180}" x2="{left + 200}" y1="{h - 13}" y2="{h - 13}" stroke="black" stroke-dasharray="3,2"/>'
               f'<text x="{left + 204}" y="{h - 9}">chance floor</text>')
    svg.append("</svg>")
    open(out, "w").write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
