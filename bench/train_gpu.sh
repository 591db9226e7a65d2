#!/usr/bin/env bash
# bench/train_gpu.sh — QLoRA training speed and GPU memory of ggtrain
# --device cuda against Hugging Face transformers + peft (bf16 LoRA),
# measured in the same run on the same random-weight checkpoint of the
# Llama-2-7B shape (hidden 4096, 32 layers, 32 heads / 32 KV heads, ffn
# 11008, vocab 32000; bench/gen_hf.c ties the LM head to the embedding, so
# 6.61 B parameters, not 6.74 B).
#
#   bash bench/train_gpu.sh                     (repo root, after `make CUDA=1`)
#   GG_BIN=build/gpu/bin LD_LIBRARY_PATH=$PWD/build/gpu/lib \
#     GG_CUDA_LIB=$PWD/build/gpu/bin/libggcuda.so bash bench/train_gpu.sh
#                                               (on the lent GPU machine, over
#                                                tests/gpu_pack.sh's build/gpu)
#
# Settings, the same on both sides: seq 1024, micro-batch 4 (4096 tokens a
# step, one micro-batch per optimizer step), LoRA r 16, alpha 16, dropout 0,
# on every linear layer (q, k, v, o, gate, up, down), AdamW lr 1e-4
# (constant), gradient clipping 1.0, random token ids; each with and
# without gradient checkpointing (--grad-ckpt / gradient_checkpointing_enable).
#   ours: ggtrain on the nf4 base (ggconvert -t nf4: QLoRA), --max-steps
#         WARMUP+STEPS; tokens/s = the tokens of the steps after the first
#         WARMUP over their wall time (from --metrics' "tokens" and
#         "elapsed_s").
#   PEFT: bench/peft_train.py on the bf16 checkpoint folder: WARMUP untimed
#         steps, then STEPS timed ones (torch.cuda.synchronize at both ends).
# Peak GPU memory, both sides alike: nvidia-smi memory.used sampled every
# 100 ms while the process runs, the maximum minus the value just before it
# started (so it includes the CUDA context). Also reported: ggtrain's own
# prediction (--estimate --device cuda) and its final line (whole-run
# tokens/s with load and warm-up, host peak RSS), and torch's
# max_memory_allocated / max_memory_reserved for PEFT.
# MFU = 6 · N · tokens/s ÷ (the bf16 GEMM rate measured in the same run:
# bench/peft_train.py --gemm, a torch 8192³ bf16 matmul). N = the base's
# parameters (every matmul weight; the tied embedding once). 6N FLOP per
# token is the usual approximation (2N forward + 4N backward of a full
# fine-tune; attention's sequence-dependent FLOPs left out). A LoRA step on a
# frozen base does no weight gradients (about 4N, 6N with the recompute of
# gradient checkpointing), so this is the conventional figure, not the
# hardware's utilisation.
#
# Environment: GG_BIN (default bin), GG_BENCH_DIR (default /tmp/gg-bench:
# the checkpoint, 13.2 GB, and its nf4 .gg are made there once and kept),
# STEPS (timed steps, default 10), WARMUP (default 2), PYTHON (default
# python3), CKPTS (default "no yes": which grad-ckpt settings to run),
# PEFT=0 (skip the PEFT side), PREPARE_ONLY=1 (make the files and stop),
# GEN_HF (a built bench/gen_hf; default $GG_BIN/../bench/gen_hf,
# build/bench/gen_hf, else built with cc), GG_BENCH_SHAPE="hidden layers
# heads kv ffn vocab shard_mb" (a smaller model for a quick run).
# Without `import torch, peft, transformers` the PEFT side prints
# "peft: not available" and our rows still come.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GG_BIN:-bin}
DIR=${GG_BENCH_DIR:-/tmp/gg-bench}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
PYTHON=${PYTHON:-python3}
CKPTS=${CKPTS:-"no yes"}
SHAPE=${GG_BENCH_SHAPE:-"4096 32 32 32 11008 32000 2000"}
SEQ=1024 MB=4 R=16
mkdir -p "$DIR"

# ---- the files (bench/gpu_model.sh, shared with the other GPU bench) ----
# shellcheck source=bench/gpu_model.sh
. bench/gpu_model.sh
Q=$(gg_file nf4)
rows=$(((WARMUP + STEPS) * MB)); [ "$rows" -ge 64 ] || rows=64
awk -v v="$V" -v n="$rows" -v s="$SEQ" 'BEGIN { srand(5); for (r = 0; r < n; r++) { printf "{\"input_ids\": [";
    for (i = 0; i < s; i++) printf "%s%d", (i ? ", " : ""), 3 + int(rand() * (v - 3)); print "]}" } }' >"$DIR/train$SEQ.jsonl"
[ "${PREPARE_ONLY:-0}" = 0 ] || { echo "prepared $M and $Q" >&2; exit 0; }

HD=$((H / NH))
N=$(awk -v h="$H" -v l="$L" -v nh="$NH" -v nkv="$NKV" -v hd="$HD" -v f="$FFN" -v v="$V" \
    'BEGIN { printf "%.0f", l * (h * (2 * nh * hd + 2 * nkv * hd) + 3 * h * f) + v * h }')

# ---- GPU memory: nvidia-smi sampled in the background ----
smi() { nvidia-smi -i "${GPU_INDEX:-0}" --query-gpu=memory.used --format=csv,noheader,nounits "$@"; }
HAVE_SMI=0
smi >/dev/null 2>&1 && HAVE_SMI=1 || echo "nvidia-smi: not available (no peak GPU memory)" >&2
# measure LOG CMD...: runs CMD (stdout and stderr to LOG); sets RC and PEAK_GIB
# (max memory.used while it ran minus memory.used just before, in GiB; "-"
# without nvidia-smi).
measure() {
    local log=$1 idle pid
    shift
    RC=0 PEAK_GIB=-
    if [ "$HAVE_SMI" = 1 ]; then
        idle=$(smi | head -n 1)
        smi -lms 100 >"$DIR/smi.txt" 2>/dev/null &
        pid=$!
        "$@" >"$log" 2>&1 || RC=$?
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        PEAK_GIB=$(awk -v i="$idle" '$1 + 0 > m { m = $1 + 0 } END { if (NR) printf "%.2f", (m - i) / 1024; else print "-" }' "$DIR/smi.txt")
    else
        "$@" >"$log" 2>&1 || RC=$?
    fi
}
# jget KEY JSON: a number from a flat JSON line
jget() { sed -n "s/.*\"$1\": \([-0-9.eE+]*\).*/\1/p" <<<"$2"; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
mfu() { awk -v t="$1" -v n="$N" -v g="$GEMM" 'BEGIN { if (t + 0 > 0 && g + 0 > 0) printf "%.1f%%", 100 * 6 * n * t / (g * 1e12); else print "-" }'; }

TORCH=0 PEFT_OK=0
"$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null && TORCH=1
if [ "${PEFT:-1}" != 0 ] && [ "$TORCH" = 1 ] && "$PYTHON" -c "import torch, peft, transformers" 2>/dev/null; then
    PEFT_OK=1
fi
GEMM=-
if [ "$TORCH" = 1 ]; then
    GEMM=$(jget gemm_tflops "$("$PYTHON" bench/peft_train.py --gemm | tail -n 1)")
    GEMM=$(awk -v g="$GEMM" 'BEGIN { if (g + 0 > 0) printf "%.0f", g; else print "-" }')
fi

# ---- the runs ----
declare -A res
for ck in $CKPTS; do
    flags=(--device cuda --seq-len "$SEQ" --micro-batch "$MB" --r "$R" --alpha 16 --lora-dropout 0 --targets all
        --lr 1e-4 --schedule constant --warmup 0 --max-grad-norm 1 --no-shuffle --max-steps $((WARMUP + STEPS)) --log-every 1)
    [ "$ck" = yes ] && flags+=(--grad-ckpt)
    echo "ggtrain, grad-ckpt $ck ..." >&2
    rm -f "$DIR/m.jsonl"
    measure "$DIR/ggtrain-ckpt-$ck.log" "$BIN/ggtrain" -m "$Q" -d "$DIR/train$SEQ.jsonl" -o "$DIR/bench-adapter.gg" \
        --metrics "$DIR/m.jsonl" "${flags[@]}"
    if [ "$RC" = 0 ]; then
        res[$ck:ours]=$(sed -n 's/.*"step":\([0-9]*\),.*"tokens":\([0-9]*\),.*"elapsed_s":\([0-9.]*\).*/\1 \2 \3/p' "$DIR/m.jsonl" |
            awk -v w="$WARMUP" '$1 == w { t0 = $3 } $1 > w { n += $2; t1 = $3 } END { if (n && t1 > t0) printf "%.0f", n / (t1 - t0); else print "-" }')
        res[$ck:ours_mem]=$PEAK_GIB
        # ggtrain: S steps, T tokens in X s (Y tokens/s); last loss L; peak RSS Z MB; wrote F
        res[$ck:ours_run]=$(sed -n 's/^ggtrain: .* steps, .* tokens in .* s (\([0-9.]*\) tokens\/s);.*/\1/p' "$DIR/ggtrain-ckpt-$ck.log")
        res[$ck:ours_rss]=$(sed -n 's/.*peak RSS \([0-9.]*\) MB.*/\1/p' "$DIR/ggtrain-ckpt-$ck.log")
    else
        echo "ggtrain (grad-ckpt $ck) failed, rc $RC; the end of $DIR/ggtrain-ckpt-$ck.log:" >&2
        tail -n 5 "$DIR/ggtrain-ckpt-$ck.log" >&2
        res[$ck:ours]="rc $RC"
    fi
    res[$ck:ours_est]=$("$BIN/ggtrain" -m "$Q" --estimate "${flags[@]}" 2>/dev/null | awk '/total/ { print $2 }' || true)

    [ "$PEFT_OK" = 1 ] || continue
    echo "peft, grad-ckpt $ck ..." >&2
    pa=(--model "$M" --seq-len "$SEQ" --micro-batch "$MB" --steps "$STEPS" --warmup "$WARMUP" --r "$R")
    [ "$ck" = yes ] && pa+=(--grad-ckpt)
    measure "$DIR/peft-ckpt-$ck.log" "$PYTHON" bench/peft_train.py "${pa[@]}"
    line=$(grep '^{' "$DIR/peft-ckpt-$ck.log" | tail -n 1 || true)
    if [ "$RC" != 0 ] || [ -z "$line" ]; then
        echo "peft_train.py (grad-ckpt $ck) failed, rc $RC; the end of $DIR/peft-ckpt-$ck.log:" >&2
        tail -n 5 "$DIR/peft-ckpt-$ck.log" >&2
        res[$ck:peft]="rc $RC"
    elif grep -q '"error"' <<<"$line"; then
        res[$ck:peft]=OOM
    else
        res[$ck:peft]=$(awk -v t="$(jget tokens_per_s "$line")" 'BEGIN { printf "%.0f", t }')
        res[$ck:peft_mem]=$PEAK_GIB
    fi
    [ -z "$line" ] || res[$ck:peft_torch]=$(awk -v a="$(jget max_memory_allocated "$line")" -v r="$(jget max_memory_reserved "$line")" \
        'BEGIN { printf "%.2f / %.2f", a / 2^30, r / 2^30 }')
done

# ---- the tables ----
printf '\nggtrain --device cuda (nf4 base, QLoRA) vs transformers + peft (bf16 base) on %s (N = %.2f B),\n' \
    "$(basename "$M")" "$(awk -v n="$N" 'BEGIN { print n / 1e9 }')"
printf 'seq %s, micro-batch %s, r %s on all linear layers; %s timed steps after %s warm-up; GPU: %s\n' \
    "$SEQ" "$MB" "$R" "$STEPS" "$WARMUP" "$(nvidia-smi -i "${GPU_INDEX:-0}" --query-gpu=name --format=csv,noheader 2>/dev/null || echo '?')"
printf 'bf16 GEMM (torch 8192³ matmul): %s TFLOP/s; MFU = 6 · N · tokens/s ÷ that\n' "$GEMM"
[ "$PEFT_OK" = 1 ] || echo "peft: not available"
echo
printf '| %-9s | %10s | %10s | %6s | %8s | %8s | %13s | %13s | %6s |\n' grad-ckpt "ours tok/s" "PEFT tok/s" ratio \
    "ours MFU" "PEFT MFU" "ours peak GiB" "PEFT peak GiB" ratio
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- ------------ ------------ -------- ---------- ---------- \
    --------------- --------------- --------
for ck in $CKPTS; do
    o=${res[$ck:ours]:--} p=${res[$ck:peft]:--} om=${res[$ck:ours_mem]:--} pm=${res[$ck:peft_mem]:--}
    printf '| %-9s | %10s | %10s | %6s | %8s | %8s | %13s | %13s | %6s |\n' "$ck" "$o" "$p" "$(div "$o" "$p")" \
        "$(mfu "$o")" "$(mfu "$p")" "$om" "$pm" "$(div "$om" "$pm")"
done
printf '\npeak GiB: nvidia-smi memory.used, max while running minus just before (CUDA context included, both sides).\n'
printf 'ratio: ours ÷ PEFT (tokens/s: > 1 is faster; memory: < 1 is smaller).\n\n'
printf '| %-9s | %17s | %16s | %13s | %28s |\n' grad-ckpt "ours est. (MB)" "ours whole run" "ours host RSS" "PEFT torch alloc / reserved"
printf '|%s|%s|%s|%s|%s|\n' ----------- ------------------- ------------------ --------------- ------------------------------
for ck in $CKPTS; do
    printf '| %-9s | %17s | %10s tok/s | %10s MB | %24s GiB |\n' "$ck" "${res[$ck:ours_est]:--}" "${res[$ck:ours_run]:--}" \
        "${res[$ck:ours_rss]:--}" "${res[$ck:peft_torch]:--}"
done
printf '\nours est.: ggtrain --estimate --device cuda (predicted peak); whole run: ggtrain'"'"'s last line (load and warm-up included).\n'
