#!/usr/bin/env bash
# bench/train_cpu.sh — LoRA training speed and memory on the CPU backend, on
# a random-weight Llama of about 0.55 B parameters (hidden 1536, 20 layers,
# 12 heads / 4 KV heads, ffn 4096, vocab 32000), seq 512, r 16 on all linear
# layers, micro-batch 1, for f32, q8 and nf4 bases, with and without
# --grad-ckpt; beside OpenBLAS sgemm GFLOP/s measured in the same run.
#
#   bench/train_cpu.sh        (from the repo root, after `make`)
#
# tokens/s: the median of the steps after the first (from --metrics).
# Achieved FLOP/s = tokens/s × 4N (6N with --grad-ckpt: the forward runs
# twice), N = the parameters of every matmul (the linear layers and the LM
# head; the tied embedding counts once). % of sgemm = that ÷ the best of
# cblas_sgemm on [512 × 1536] · [1536 × 4096]ᵀ and [512 × 4096] · [4096 ×
# 1536]ᵀ with the same threads. The frozen base needs no weight gradients,
# so 4N is the whole useful work of a LoRA step (LoRA's own matmuls add
# under 2%).
# GG_BENCH_SHAPE="hidden layers heads kv ffn vocab shard_mb", STEPS (default
# 4), THREADS (default: all cores), TYPES (default "f32 q8 nf4").
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${GG_BENCH_DIR:-/tmp/gg-bench}
THREADS=${THREADS:-$(nproc)}
STEPS=${STEPS:-4}
TYPES=${TYPES:-"f32 q8 nf4"}
SHAPE=${GG_BENCH_SHAPE:-"1536 20 12 4 4096 32000 1000"}
read -r H L NH NKV FFN V _ <<<"$SHAPE"
mkdir -p "$DIR" build/bench
cc -std=c11 -O2 -D_GNU_SOURCE bench/gen_hf.c -o build/bench/gen_hf
cc -std=c11 -O2 -D_GNU_SOURCE bench/sgemm.c -lopenblas -o build/bench/sgemm
M="$DIR/train-${H}x${L}"
[ -f "$M/config.json" ] || { echo "generating $M ..." >&2; build/bench/gen_hf "$M" $SHAPE >&2; }
[ -x bin/ggtrain ] || make -s
HD=$((H / NH))
N=$(awk -v h="$H" -v l="$L" -v nh="$NH" -v nkv="$NKV" -v hd="$HD" -v f="$FFN" -v v="$V" \
    'BEGIN { printf "%.0f", l * (h * (2 * nh * hd + 2 * nkv * hd) + 3 * h * f) + v * h }')
awk -v v="$V" 'BEGIN { srand(5); for (s = 0; s < 16; s++) { printf "{\"input_ids\": [";
    for (i = 0; i < 512; i++) printf "%s%d", (i ? ", " : ""), 3 + int(rand() * (v - 3)); print "]}" } }' >"$DIR/train512.jsonl"

g1=$(build/bench/sgemm 512 "$FFN" "$H" "$THREADS" | sed 's/.*=//')
g2=$(build/bench/sgemm 512 "$H" "$FFN" "$THREADS" | sed 's/.*=//')
sg=$(awk -v a="$g1" -v b="$g2" 'BEGIN { print (a > b) ? a : b }')

printf '\nggtrain on %s (N = %.2f B matmul parameters), seq 512, r 16, all linear, micro-batch 1, %s threads;\n' \
    "$(basename "$M")" "$(awk -v n="$N" 'BEGIN { print n / 1e9 }')" "$THREADS"
printf 'OpenBLAS sgemm %s GFLOP/s (best of the two MLP shapes, same threads)\n\n' "$sg"
printf '| %-4s | %-9s | %10s | %12s | %12s | %10s | %13s |\n' base grad-ckpt "tokens/s" "GFLOP/s" "% of sgemm" "peak RSS" "estimate"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ------ ----------- ------------ -------------- -------------- ------------ ---------------
for t in $TYPES; do
    [ -f "$DIR/train-$t.gg" ] || bin/ggconvert -q -t "$t" -o "$DIR/train-$t.gg" "$M" >&2
    for ck in no yes; do
        flags=(--seq-len 512 --micro-batch 1 --r 16 --alpha 32 --lora-dropout 0 --max-steps "$STEPS" --threads "$THREADS")
        [ "$ck" = yes ] && flags+=(--grad-ckpt)
        rm -f "$DIR/m.jsonl"
        log=$(bin/ggtrain -m "$DIR/train-$t.gg" -d "$DIR/train512.jsonl" -o "$DIR/bench-adapter.gg" \
            --metrics "$DIR/m.jsonl" "${flags[@]}" 2>&1)
        est=$(bin/ggtrain -m "$DIR/train-$t.gg" --estimate "${flags[@]}" | awk '/total/ { print $2 }')
        peak=$(sed -n 's/.*peak RSS \([0-9]*\) MB.*/\1/p' <<<"$log")
        tps=$(sed -n 's/.*"step":\([0-9]*\),.*"tokens_per_s":\([0-9.]*\).*/\1 \2/p' "$DIR/m.jsonl" |
            awk '$1 > 1 { print $2 }' | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
        mult=4; [ "$ck" = yes ] && mult=6
        gf=$(awk -v t="$tps" -v n="$N" -v m="$mult" 'BEGIN { printf "%.1f", t * m * n / 1e9 }')
        pct=$(awk -v g="$gf" -v s="$sg" 'BEGIN { printf "%.0f%%", 100 * g / s }')
        printf '| %-4s | %-9s | %10s | %12s | %12s | %7s MB | %10s MB |\n' "$t" "$ck" "$tps" "$gf" "$pct" "$peak" "$est"
    done
done
