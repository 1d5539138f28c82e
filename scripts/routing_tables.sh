#!/usr/bin/env bash
# Regenerates the routing tables of docs/EVALUATION.md ("Routing tables",
# between the routing-tables markers) and the charts under docs/routing/:
# RouterBench (5-fold), AlpacaEval (5-fold), RouterDC (its own split),
# RouteLLM GSM8K and MMLU (5-fold), plus learning curves for RouterBench and
# AlpacaEval. Every number it writes comes from the command printed beside
# it; full reports stay in target/routing-tables/.
#
#   scripts/routing_tables.sh            # everything (MMLU is the slow one)
#   scripts/routing_tables.sh --no-mmlu  # keep MMLU's last result if present
#   scripts/routing_tables.sh --no-mmlu --no-rb-curve   # also skip the
#       RouterBench learning curve (90 fits: hours on a loaded 2-core box)
#
# The encoder is the default one, multilingual-e5-small (int8), named in
# every command; ENCODER=models/all-MiniLM-L6-v2 re-runs with MiniLM (the
# earlier tables).
# Needs the release binary (cargo build --release -p pointsman-cli) and the
# AlpacaEval snapshot in ../shared/data/raw/alpaca_eval (CC BY-NC 4.0:
# evaluation only; its records go to target/eval-data/, never training-data/).
# Embeddings are cached in target/embedding-cache; the first run embeds
# every prompt (about 40,000 with MMLU).
set -euo pipefail
cd "$(dirname "$0")/.."
MMLU=1
RB_CURVE=1
for a in "$@"; do
    case $a in
        --no-mmlu) MMLU=0 ;;
        --no-rb-curve) RB_CURVE=0 ;;
        *) echo "unknown option $a" >&2; exit 2 ;;
    esac
done
ENCODER=${ENCODER:-models/multilingual-e5-small}
BIN=${POINTSMAN:-./target/release/pointsman}
OUT=target/routing-tables
# The int8 encoder (AVX-512 VNNI): several times faster to embed, with
# embeddings moved slightly from f32 (docs/PERFORMANCE.md).
COMMON="--no-task-head --precision int8 --model-dir $ENCODER"
CURVE="--learning-curve"
mkdir -p "$OUT"
echo "$ENCODER" > "$OUT/encoder"
# The code the binary was built from, recorded now: commits made while the
# runs go on must not relabel them.
git rev-parse --short HEAD > "$OUT/commit"
git status --porcelain --untracked-files=no -- crates scripts models > "$OUT/dirty"

python3 scripts/build_alpaca_eval.py

run() { # name, then the eval arguments (as printed in the docs)
    local name=$1; shift
    echo "== $name: pointsman eval $* $COMMON" >&2
    echo "pointsman eval $* $COMMON" > "$OUT/$name.cmd"
    local t0=$SECONDS
    # shellcheck disable=SC2086
    # stderr is kept too: each fold's selection, cost model and target table.
    nice -n 10 "$BIN" eval "$@" $COMMON --report "$OUT/$name" > "$OUT/$name.txt" \
        2> >(tee "$OUT/$name.err" >&2)
    echo "$((SECONDS - t0))" > "$OUT/$name.seconds"
    cat "$OUT/$name.txt" >&2
}

RB=(training-data/outcomes/routerbench_arc_challenge.jsonl training-data/outcomes/routerbench_mbpp.jsonl training-data/outcomes/routerbench_winograde.jsonl)
AE=target/eval-data/alpaca_eval.jsonl
render() { python3 scripts/routing_tables.py "$OUT" docs/EVALUATION.md docs/routing; }
# Cheapest first; the doc is re-rendered after each run, so an interrupted
# run still leaves every finished table in place (missing ones say so).
run routerbench --data "${RB[@]}" --folds 5; render
run alpaca_eval --data "$AE" --folds 5; render
run routellm_gsm8k --data training-data/outcomes/routellm_gsm8k.jsonl --folds 5 --catalog models/catalogs/routellm.toml; render
run routerdc --train training-data/outcomes/routerdc_*_train.jsonl --test training-data/outcomes/routerdc_*_test.jsonl \
    --catalog models/catalogs/routerdc.toml; render
# AlpacaEval has 579-580 training rows per fold: 1000 would repeat `all`.
run alpaca_eval_curve --data "$AE" --folds 5 $CURVE 50,100,200,500,all; render
if [[ $RB_CURVE == 1 ]]; then
    run routerbench_curve --data "${RB[@]}" --folds 5 $CURVE 50,100,200,500,1000,all; render
fi
if [[ $MMLU == 1 ]]; then
    run routellm_mmlu --data training-data/outcomes/routellm_mmlu.jsonl --folds 5 --catalog models/catalogs/routellm.toml; render
fi
