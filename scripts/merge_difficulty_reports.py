#!/usr/bin/env python3
"""Merge the "Difficulty on held-out outcome sources" tables of several
`pointsman train encoder --outcomes --report` reports into one markdown
table: per held-out source, the frozen head (from the first report), then
each report's adapted head (and its joint head, where it has one).

usage: merge_difficulty_reports.py NAME=REPORT.md [NAME=REPORT.md ...]
"""
import sys


def table(path):
    rows, header, inside = {}, None, False
    for line in open(path, encoding="utf-8"):
        if line.startswith("### Difficulty on held-out outcome sources"):
            inside = True
            continue
        if inside and line.startswith("### "):
            break
        if inside and line.startswith("| held-out source"):
            header = [c.strip() for c in line.strip().strip("|").split("|")]
            continue
        if inside and header and line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = dict(zip(header, cells))
    if not rows:
        sys.exit(f"{path}: no difficulty table")
    return rows


def main():
    runs = [a.split("=", 1) for a in sys.argv[1:]]
    if not runs or any(len(r) != 2 for r in runs):
        sys.exit(__doc__)
    tables = [(name, table(path)) for name, path in runs]
    first = tables[0][1]
    cols = ["held-out source", "fold", "n", "frozen"]
    for name, t in tables:
        cols.append(f"{name} adapted")
        if "joint" in next(iter(t.values())):
            cols.append(f"{name} joint")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for source, r in first.items():
        cells = [source, r.get("fold", ""), r.get("n", ""), r["frozen"]]
        for _, t in tables:
            row = t.get(source, {})
            cells.append(row.get("adapted", ""))
            if "joint" in next(iter(t.values())):
                cells.append(row.get("joint", ""))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
