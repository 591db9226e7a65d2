#!/usr/bin/env bash
# tests/make_task.sh — writes the demo's instruction dataset: a small,
# learnable task (capitals of 16 countries, each asked in 4 phrasings) as
# Alpaca JSONL. The last phrasing of every country is held out for eval.
#
#   bash tests/make_task.sh OUT_DIR   → OUT_DIR/train.jsonl (48), OUT_DIR/val.jsonl (16)
set -euo pipefail
out=${1:?usage: make_task.sh OUT_DIR}
mkdir -p "$out"
pairs="France:Paris Germany:Berlin Italy:Rome Spain:Madrid Japan:Tokyo Egypt:Cairo Peru:Lima Kenya:Nairobi
Canada:Ottawa Chile:Santiago Norway:Oslo Greece:Athens Cuba:Havana Ireland:Dublin Poland:Warsaw Austria:Vienna"
: >"$out/train.jsonl"
: >"$out/val.jsonl"
for p in $pairs; do
    c=${p%%:*} cap=${p#*:}
    i=0
    for q in "What is the capital of $c?" "Name the capital city of $c." "Which city is the capital of $c?" \
             "Tell me the capital of $c."; do
        line=$(printf '{"instruction": "%s", "output": "The capital of %s is %s."}' "$q" "$c" "$cap")
        if [ $i -lt 3 ]; then echo "$line" >>"$out/train.jsonl"; else echo "$line" >>"$out/val.jsonl"; fi
        i=$((i + 1))
    done
done
