#!/usr/bin/env bash
# Routing with the fine-tuned e5 (LoRA adapter merged at load) beside frozen
# e5: same binary, same rows, same settings as scripts/routing_tables.sh
# (int8 encoder, --no-task-head), differing only in --adapter. Reports go to
# target/adapter-routing/<set>-<frozen|lora>/, tables to .txt beside them;
# docs/EVALUATION.md ("Fine-tuned e5": "Routing with the fine-tuned
# embedding") copies its numbers from those.
#
#   scripts/adapter_routing.sh                  # every set below, both encoders
#   scripts/adapter_routing.sh routerbench gsm8k  # only these sets
#
# Sets: routerbench (all 2,205 prompts, 5-fold), routerbench_clean (the 300
# WinoGrande prompts that are also task-label training prompts dropped),
# alpaca_eval_clean (the 263 AlpacaEval instructions that are also
# task-label training prompts dropped, scripts/build_alpaca_eval.py
# --drop-task-overlaps), gsm8k (RouteLLM GSM8K, no overlap), routerdc (its
# own split). The adapter saw those prompts with a task label only, never an
# outcome; the *_clean sets remove even that.
#
# SEED=11 scripts/adapter_routing.sh ... re-draws the folds (eval --seed;
# default 7) and suffixes the outputs with -s11: the spread over seeds is
# the noise the frozen-vs-fine-tuned difference is read against.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${POINTSMAN:-./target/release/pointsman}
ADAPTER=${ADAPTER:-models/adapters/e5-lora.safetensors}
OUT=target/adapter-routing
COMMON="--no-task-head --precision int8 --model-dir models/multilingual-e5-small"
SUFFIX=""
if [[ -n ${SEED:-} ]]; then COMMON="$COMMON --seed $SEED"; SUFFIX="-s$SEED"; fi
mkdir -p "$OUT"
git rev-parse --short HEAD > "$OUT/commit"
SETS=("$@")
[[ ${#SETS[@]} -gt 0 ]] || SETS=(routerbench routerbench_clean alpaca_eval_clean gsm8k routerdc)
RB=(training-data/outcomes/routerbench_arc_challenge.jsonl training-data/outcomes/routerbench_mbpp.jsonl training-data/outcomes/routerbench_winograde.jsonl)
python3 scripts/build_alpaca_eval.py --drop-task-overlaps
python3 scripts/drop_task_overlaps.py --out target/eval-data/routerbench-no-task-overlaps.jsonl "${RB[@]}"

run() { # set name, then the eval arguments
    local name=$1$SUFFIX; shift
    for enc in frozen lora; do
        local extra=""
        [[ $enc == lora ]] && extra="--adapter $ADAPTER"
        echo "== $name/$enc: pointsman eval $* $COMMON $extra" >&2
        echo "pointsman eval $* $COMMON $extra" > "$OUT/$name-$enc.cmd"
        local t0=$SECONDS
        # shellcheck disable=SC2086
        nice -n 10 "$BIN" eval "$@" $COMMON $extra --report "$OUT/$name-$enc" > "$OUT/$name-$enc.txt"
        echo "$((SECONDS - t0))" > "$OUT/$name-$enc.seconds"
        cat "$OUT/$name-$enc.txt" >&2
    done
}

for s in "${SETS[@]}"; do
    case $s in
        routerbench) run routerbench --data "${RB[@]}" --folds 5 ;;
        routerbench_clean) run routerbench_clean --data target/eval-data/routerbench-no-task-overlaps.jsonl --folds 5 ;;
        alpaca_eval_clean) run alpaca_eval_clean --data target/eval-data/alpaca_eval-no-task-overlaps.jsonl --folds 5 ;;
        gsm8k) run routellm_gsm8k --data training-data/outcomes/routellm_gsm8k.jsonl --folds 5 --catalog models/catalogs/routellm.toml ;;
        routerdc) run routerdc --train training-data/outcomes/routerdc_*_train.jsonl --test training-data/outcomes/routerdc_*_test.jsonl --catalog models/catalogs/routerdc.toml ;;
        *) echo "unknown set $s" >&2; exit 2 ;;
    esac
done
