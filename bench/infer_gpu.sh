#!/usr/bin/env bash
# bench/infer_gpu.sh — gggen --device cuda prompt (prefill) and decode speed
# on a random-weight checkpoint of the Llama-2-7B shape (hidden 4096, 32
# layers, 32 heads / 32 KV heads, ffn 11008, vocab 32000; bench/gen_hf.c
# ties the LM head to the embedding), for the nf4 and bf16 conversions,
# against the HBM bandwidth bound and transformers bf16, all measured in the
# same run.
#
#   bash bench/infer_gpu.sh                     (repo root, after `make CUDA=1`)
#   GG_BIN=build/gpu/bin LD_LIBRARY_PATH=$PWD/build/gpu/lib \
#     GG_CUDA_LIB=$PWD/build/gpu/bin/libggcuda.so bash bench/infer_gpu.sh
#                                               (on the lent GPU machine, over
#                                                tests/gpu_pack.sh's build/gpu)
#
# Per type T (TYPES, default "nf4 bf16": ggconvert -t T; nf4 keeps the
# embedding / tied LM head in bf16), batch 1:
#   prefill: gggen --device cuda --ids <512 random ids> -n 0
#            → the "prompt ... tokens/s" of its statistics line
#   decode:  gggen --device cuda --ids "1 2 3 4" -n 128 --temp 0 --ignore-eos
#            → the "generated ... tokens/s" (the first token comes from the
#              prompt's logits: 127 decode steps over their time)
# each the best of RUNS rounds (default 2; every gggen run loads the model,
# which the statistics leave out).
# Bound: the fastest decode if every weight byte is read once per token from
# HBM: bound tokens/s = read bandwidth ÷ weight bytes per token, where
#   read bandwidth = (bytes moved, read + written, by a torch device-to-
#                     device copy of a 4 GiB tensor) ÷ 2 ÷ its time
#                    (bench/hf_infer.py --copy; the best of the runs before
#                     and after the timings)
#   weight bytes per token = every tensor of the .gg (gginfo --tensors),
#                    less the embedding table when a separate LM head exists
#                    (only one row of it is gathered); here the head is tied,
#                    so the whole table counts once.
# transformers: bench/hf_infer.py --model <the bf16 HF folder> --prefill 512
# --decode 128: one forward of 512 random ids (KV cache on), and greedy
# generate() of 128 new tokens after 4 (decode = 127 ÷ (t(128) - t(1))),
# bf16 (no bitsandbytes there, so its nf4 row is compared with bf16 too).
#
# Environment: GG_BIN (default bin), GG_BENCH_DIR (default /tmp/gg-bench;
# the checkpoint, 13.2 GB, and its .gg conversions are made there once and
# kept, shared with bench/train_gpu.sh), RUNS, TYPES, PYTHON (default
# python3), HF=0 (skip transformers), PREPARE_ONLY=1 (make the files and
# stop), GEN_HF (a built bench/gen_hf; default $GG_BIN/../bench/gen_hf,
# build/bench/gen_hf, else built with cc), GG_BENCH_SHAPE="hidden layers
# heads kv ffn vocab shard_mb" (a smaller model for a quick run). Without
# `import torch, transformers`, the bound and transformers columns are "-".
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GG_BIN:-bin}
DIR=${GG_BENCH_DIR:-/tmp/gg-bench}
RUNS=${RUNS:-2}
TYPES=${TYPES:-"nf4 bf16"}
PYTHON=${PYTHON:-python3}
SHAPE=${GG_BENCH_SHAPE:-"4096 32 32 32 11008 32000 2000"}
PP=512 TG=128
mkdir -p "$DIR"

# ---- the files (bench/gpu_model.sh, shared with the other GPU bench) ----
# shellcheck source=bench/gpu_model.sh
. bench/gpu_model.sh
declare -A bytes best
for t in $TYPES; do
    g=$(gg_file "$t")
    bytes[$t]=$("$BIN/gginfo" --tensors "$g" | awk '
        $1 == "embed.weight" { emb = $(NF-1) } $1 == "lm_head.weight" { lm = 1 }
        $1 ~ /^(layers\.|embed\.|lm_head\.|final_norm\.)/ { s += $(NF-1) }
        END { print s - (lm ? emb : 0) }')
done
[ "${PREPARE_ONLY:-0}" = 0 ] || { echo "prepared $M and its .gg files" >&2; exit 0; }

jget() { sed -n "s/.*\"$1\": \([-0-9.eE+]*\).*/\1/p" <<<"$2"; }
max() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
TORCH=0 HF_OK=0
"$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null && TORCH=1
if [ "${HF:-1}" != 0 ] && [ "$TORCH" = 1 ] && "$PYTHON" -c "import transformers" 2>/dev/null; then HF_OK=1; fi
[ "$TORCH" = 1 ] || echo "torch: not available (no bandwidth bound)" >&2
# read GB/s (1e9 bytes) of the 4 GiB device-to-device copy
readbw() { [ "$TORCH" = 1 ] && jget read_gbps "$("$PYTHON" bench/hf_infer.py --copy | tail -n 1)" || echo 0; }

# gg_rate FIELD CMD...: tokens/s from gggen's stats line (1 = prompt, 2 = generated).
gg_rate() {
    local field=$1 r
    shift
    r=$("$@" 2>&1 >/dev/null | sed -n 's/.*prompt [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tokens\/s); generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tokens\/s).*/\1 \2/p' |
        awk -v f="$field" '{ print $f }') || true
    [ -n "$r" ] || { echo "bench: '${*:1:4} ...' gave no stats line" >&2; echo 0; return; }
    echo "$r"
}

# ---- the timings ----
bw=$(readbw)
vocab=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$M/config.json")
pp_ids=$(awk -v v="$vocab" -v n="$PP" 'BEGIN { srand(1); for (i = 0; i < n; i++) printf "%d ", 3 + int(rand() * (v - 3)) }')
for round in $(seq "$RUNS"); do
    echo "round $round of $RUNS ..." >&2
    for t in $TYPES; do
        g="$M-$t.gg"
        pp=$(gg_rate 1 "$BIN/gggen" -m "$g" --device cuda --ids "$pp_ids" -n 0)
        tg=$(gg_rate 2 "$BIN/gggen" -m "$g" --device cuda --ids "1 2 3 4" -n "$TG" --temp 0 --ignore-eos --print-ids)
        best[$t:pp]=$(max "${best[$t:pp]:-0}" "$pp")
        best[$t:tg]=$(max "${best[$t:tg]:-0}" "$tg")
    done
done
hf_pp=0 hf_tg=0 hf_bytes=0
if [ "$HF_OK" = 1 ]; then
    echo "transformers ..." >&2
    line=$("$PYTHON" bench/hf_infer.py --model "$M" --prefill "$PP" --decode "$TG" 2>"$DIR/hf_infer.log" | tail -n 1) || true
    if [ -n "$line" ]; then
        hf_pp=$(jget prefill_tps "$line") hf_tg=$(jget decode_tps "$line") hf_bytes=$(jget weight_bytes "$line")
    else
        echo "hf_infer.py failed; the end of $DIR/hf_infer.log:" >&2
        tail -n 5 "$DIR/hf_infer.log" >&2
    fi
fi
bw=$(max "$bw" "$(readbw)")

# ---- the table ----
printf '\ngggen --device cuda on %s, batch 1; best of %s rounds; GPU: %s\n' "$(basename "$M")" "$RUNS" \
    "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || echo '?')"
printf 'read bandwidth %s GB/s (4 GiB device-to-device torch copy: bytes read + written ÷ 2 ÷ time; best of before and after)\n' \
    "$(awk -v b="$bw" 'BEGIN { if (b + 0 > 0) printf "%.0f", b; else print "-" }')"
[ "$HF_OK" = 1 ] || echo "transformers: not available"
printf '\n| %-5s | %8s | %10s | %10s | %9s | %10s | %10s | %10s | %10s | %8s | %8s |\n' type "GB/tok" "pp$PP t/s" "tg$TG t/s" \
    "bound t/s" "% of bound" "HF pp t/s" "HF tg t/s" "HF % bound" "pp ratio" "tg ratio"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------- ---------- ------------ ------------ ----------- ------------ \
    ------------ ------------ ------------ ---------- ----------
for t in $TYPES; do
    awk -v t="$t" -v b="${bytes[$t]}" -v bw="$bw" -v pp="${best[$t:pp]}" -v tg="${best[$t:tg]}" \
        -v hpp="$hf_pp" -v htg="$hf_tg" -v hb="$hf_bytes" 'function f(x, fmt) { return x + 0 > 0 ? sprintf(fmt, x) : "-" }
    BEGIN {
        bound = bw > 0 ? bw * 1e9 / b : 0
        hbound = (bw > 0 && hb > 0) ? bw * 1e9 / hb : 0
        printf "| %-5s | %8.3f | %10s | %10s | %9s | %10s | %10s | %10s | %10s | %8s | %8s |\n", t, b / 1e9,
            f(pp, "%.1f"), f(tg, "%.2f"), f(bound, "%.2f"), f(bound > 0 ? 100 * tg / bound : 0, "%.1f%%"),
            f(hpp, "%.1f"), f(htg, "%.2f"), f(hbound > 0 ? 100 * htg / hbound : 0, "%.1f%%"),
            f(hpp > 0 ? pp / hpp : 0, "%.2fx"), f(htg > 0 ? tg / htg : 0, "%.2fx") }'
done
printf '\nHF: transformers bf16 (prefill: one %s-token forward; decode: greedy generate, %s new tokens), the same in every row;\n' "$PP" "$TG"
printf 'HF %% bound uses the bf16 parameter bytes; ratios: ours ÷ HF (> 1 is faster).\n'
