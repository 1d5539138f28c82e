#!/usr/bin/env python3
"""Renders the routing tables of docs/EVALUATION.md from the reports that
scripts/routing_tables.sh wrote, and copies their charts into docs/routing/.

    python3 scripts/routing_tables.py target/routing-tables docs/EVALUATION.md docs/routing

Replaces everything between the routing-tables markers in the doc; fails if
the markers are missing. Only numbers read from the reports are written.
"""

import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

BEGIN = "<!-- routing-tables:begin -->"
END = "<!-- routing-tables:end -->"

SETS = [
    ("routerbench", "RouterBench (11 models, 2,205 prompts, 5-fold cross-validation)"),
    ("alpaca_eval", "AlpacaEval (11 models, 725 open-ended instructions, 5-fold cross-validation)"),
    ("routerdc", "RouterDC (7 open models, its own train/test split)"),
    ("routellm_gsm8k", "RouteLLM GSM8K (GPT-4 vs Mixtral, 5-fold cross-validation)"),
    ("routellm_mmlu", "RouteLLM MMLU (GPT-4 vs Mixtral, 5-fold cross-validation)"),
]
CURVES = [("routerbench_curve", "RouterBench"), ("alpaca_eval_curve", "AlpacaEval")]
ROWS = [
    ("zero", "zero router (hull of the single models)"),
    ("knn", "knn (k = 25)"),
    ("pointsman", "target τ (`pointsman`)"),
    ("pointsman_wtp", "λ, willingness to pay (`pointsman_wtp`)"),
    ("oracle", "oracle"),
    ("pointsman_wtp_knn_cost", "experiment: λ with per-prompt kNN cost (`pointsman_wtp_knn_cost`, not in `serve`)"),
]
BASELINES = {"random", "cheapest", "best_single", "zero", "oracle", "knn"}


def f(v, d=4, pct=False):
    if v is None:
        return "–"
    return f"{v * 100:.1f}%" if pct else f"{v:.{d}f}"


def command(out: Path, name: str) -> str:
    return (out / f"{name}.cmd").read_text().strip()


def bar(s: dict, two: bool) -> str:
    """The issue's bar: both policies >= zero + 0.02 AIQ and >= knn."""
    key = "apgr" if two else "aiq"
    r = s["routers"]
    z, k = r["zero"][key], r["knn"][key]
    if z is None:
        return "The bar (AIQ ≥ zero + 0.02 and ≥ knn) is undefined here: every model costs the same."
    parts = []
    for name, label in (("pointsman", "target τ"), ("pointsman_wtp", "λ")):
        v = r[name][key]
        parts.append(
            f"{label} {v:.4f}: {'≥' if v >= z + 0.02 else '<'} zero + 0.02 ({z + 0.02:.4f}), "
            f"{'≥' if v >= k else '<'} knn ({k:.4f})"
        )
    metric = "APGR" if two else "AIQ"
    return f"Bar ({metric}): " + "; ".join(parts) + "."


TAUS = (1.0, 0.95, 0.9, 0.85, 0.8)


def target_reach(out: Path, name: str, s: dict) -> str:
    """Held-out check of the target's meaning: for a few τ, the mean score
    the target router reached on the test rows (pooled over folds) against
    the target, mean over folds of Q_best − (1 − τ), Q_best the best mean P
    each fold's target table printed (stderr, kept as NAME.err)."""
    err = out / f"{name}.err"
    if not err.exists():
        return ""
    best = []
    for line in err.read_text().splitlines():
        if line.startswith("target table on ") and "best mean P " in line:
            best.append(float(line.split("best mean P ")[1].split(";")[0]))
    r = s["routers"].get("pointsman")
    if not best or r is None:
        return ""
    q_best = sum(best) / len(best)
    parts = []
    for tau in TAUS:
        i = min(range(len(r["settings"])), key=lambda j: abs(r["settings"][j] - tau))
        cost, quality = r["points"][i]
        parts.append(
            f"τ {tau:g}: target {q_best - (1 - tau):.4f}, reached {quality:.4f} at {cost * 1000:.3f} mUSD"
        )
    return (
        "Target τ on the held-out rows (mean score of the target router's choices, against "
        f"Q_best − (1 − τ), Q_best = {q_best:.4f} the folds' mean best P on their own training rows): "
        + "; ".join(parts)
        + "."
    )


KEPT = "Not re-run at this generation:"


def kept_section(heading: str, path: Path) -> str:
    """A section whose report is missing keeps its text from the previous
    generation (the doc as it stands, else as committed), marked with the
    commit that generated it; None if neither has it."""
    sources = [DOC_TEXT]
    committed = subprocess.run(["git", "show", "HEAD:docs/EVALUATION.md"], capture_output=True, text=True)
    if committed.returncode == 0:
        sources.append(committed.stdout)
    for text in sources:
        if BEGIN not in text or END not in text:
            continue
        block = text[text.index(BEGIN):text.index(END)]
        mark = f"#### {heading}\n"
        if mark not in block:
            continue
        section = block[block.index(mark):]
        nxt = section.find("\n#### ", len(mark))
        section = section[: nxt + 1 if nxt >= 0 else len(section)].rstrip() + "\n"
        if "\nNot run (no `" in section:
            continue
        if KEPT not in section:
            rev = block.split("code at commit ")[1].split()[0].rstrip(",") if "code at commit " in block else "?"
            section = section.replace(
                mark,
                f"{mark}\n{KEPT} the report (`{path}`) is missing, so this is the table generated at commit {rev}.\n",
                1,
            )
        return section
    return None


DOC_TEXT = ""


def set_table(out: Path, name: str, title: str, docs: Path) -> str:
    path = out / name / "summary.json"
    if not path.exists():
        return kept_section(title, path) or f"#### {title}\n\nNot run (no `{path}`).\n"
    s = json.loads(path.read_text())
    two = len(s["models"]) == 2
    secs = (out / f"{name}.seconds").read_text().strip()
    lines = [
        f"#### {title}",
        "",
        "```",
        command(out, name),
        "```",
        "",
        f"{s['rows']} test rows; {secs} s wall on the shared 2-core machine.",
        "",
    ]
    if two:
        lines += ["| router | AIQ | APGR | CPT(50%) | CPT(80%) | max quality | ECE |", "|---|---|---|---|---|---|---|"]
    else:
        lines += ["| router | AIQ | max quality | ECE |", "|---|---|---|---|"]
    names = [n for n, _ in ROWS]
    extra = [n for n in s["routers"] if n not in names and n not in BASELINES]
    for n, label in ROWS + [(n, f"`{n}`") for n in extra]:
        r = s["routers"].get(n)
        if r is None:
            continue
        if two:
            lines.append(
                f"| {label} | {f(r['aiq'])} | {f(r['apgr'], 3)} | {f(r['cpt50'], pct=True)} | "
                f"{f(r['cpt80'], pct=True)} | {f(r['max_quality'])} | {f(r['ece'])} |"
            )
        else:
            lines.append(f"| {label} | {f(r['aiq'])} | {f(r['max_quality'])} | {f(r['ece'])} |")
    lines += ["", bar(s, two), ""]
    reach = target_reach(out, name, s)
    if reach:
        lines += [reach, ""]
    rel = out / name / "reliability.svg"
    if rel.exists():
        shutil.copy(rel, docs / f"{name}_reliability.svg")
        lines += [f"Reliability of P(success): ![reliability, {name}](routing/{name}_reliability.svg)", ""]
    return "\n".join(lines)


def curve_table(out: Path, name: str, title: str, docs: Path) -> str:
    path = out / name / "learning_curve.json"
    if not path.exists():
        return kept_section(f"Learning curve, {title}", path) or f"#### Learning curve, {title}\n\nNot run (no `{path}`).\n"
    c = json.loads(path.read_text())
    shutil.copy(out / name / "learning_curve.svg", docs / f"{name}.svg")
    secs = (out / f"{name}.seconds").read_text().strip()
    present = c["points"][0]["routers"]
    order = ["zero", "knn", "pointsman", "pointsman_wtp"]
    routers = [n for n in order if n in present] + sorted(
        n for n in present if n not in order and n not in {"random", "cheapest", "best_single", "oracle"}
    )
    lines = [
        f"#### Learning curve, {title}",
        "",
        "```",
        command(out, name),
        "```",
        "",
        f"{c['metric']} per training-set size (rows per fold), mean of {c['seeds']} seeded "
        f"subsamples per size ({c['test_rows']} test rows pooled over {c['splits']} folds; "
        f"{secs} s wall).",
        "",
        f"![learning curve, {title}](routing/{name}.svg)",
        "",
        "| size | training rows | " + " | ".join(routers) + " | ECE (`pointsman`) |",
        "|---|---|" + "---|" * (len(routers) + 1),
    ]
    for p in c["points"]:
        cells = [f(p["routers"][n]["mean"]) for n in routers]
        cells.append(f(p["routers"].get("pointsman", {}).get("ece")))
        lines.append(f"| {p['size']} | {p['train_rows']:.0f} | " + " | ".join(cells) + " |")
    lines += ["", "At or above the zero router from this size on (every larger size included): "
              + "; ".join(f"{n}: {v + ' rows' if v else 'never'}" for n, v in c["pays_from"].items()) + ".", ""]
    return "\n".join(lines)


def main() -> int:
    out, doc, docs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    docs.mkdir(parents=True, exist_ok=True)
    text = doc.read_text()
    global DOC_TEXT
    DOC_TEXT = text
    if BEGIN not in text or END not in text:
        sys.exit(f"error: {doc} has no {BEGIN} ... {END} section")
    if (out / "commit").exists():
        rev = (out / "commit").read_text().strip()
        dirty = (out / "dirty").read_text().strip() if (out / "dirty").exists() else ""
    else:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "crates", "scripts", "models"], capture_output=True, text=True).stdout.strip()
    today = datetime.date.today().isoformat()
    enc = out / "encoder"
    encoder = Path(enc.read_text().strip()).name if enc.exists() else "the default encoder"
    body = [
        BEGIN,
        "",
        f"Generated by `scripts/routing_tables.sh` on {today}, code at commit {rev}"
        + (" plus uncommitted changes to the code" if dirty else "")
        + f", encoder {encoder} (int8)"
        + ". Rows: the issue's five routers; any further learned router the harness reports follows them.",
        "",
    ]
    body += [set_table(out, n, t, docs) for n, t in SETS]
    body += [curve_table(out, n, t, docs) for n, t in CURVES]
    body.append(END)
    start, end = text.index(BEGIN), text.index(END) + len(END)
    doc.write_text(text[:start] + "\n".join(body) + text[end:])
    print(f"wrote the routing tables into {doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
