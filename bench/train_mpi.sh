#!/usr/bin/env bash
# bench/train_mpi.sh — data-parallel scaling of ggtrain on this machine:
# tokens/s of one process (all cores as threads) against `mpirun -np 2`
# (half the cores each) on the same global batch, and the gradient
# all-reduce's share of the step time (from --metrics "allreduce_s").
# Model: bench/train_cpu.sh's random 0.55 B Llama (nf4), seq 512, r 16, all
# linear, global micro-batch 2, STEPS (default 4) steps; tokens/s = median
# of the steps after the first.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${GG_BENCH_DIR:-/tmp/gg-bench}
STEPS=${STEPS:-4}
NP=${NP:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -f "$DIR/train-nf4.gg" ] || TYPES=nf4 STEPS=2 bash bench/train_cpu.sh >/dev/null
cores=$(nproc)
flags=(-q -m "$DIR/train-nf4.gg" -d "$DIR/train512.jsonl" -o "$DIR/mpi-adapter.gg" --seq-len 512 --r 16
       --lora-dropout 0 --max-steps "$STEPS")
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
field() { sed -n "s/.*\"step\":\([0-9]*\),.*\"$2\":\([0-9.e-]*\).*/\1 \2/p" "$1" | awk '$1 > 1 { print $2 }' | median; }
rm -f "$DIR/mpi1.jsonl" "$DIR/mpi2.jsonl"
bin/ggtrain "${flags[@]}" --micro-batch "$NP" --threads "$cores" --metrics "$DIR/mpi1.jsonl"
mpirun -np "$NP" --oversubscribe bin/ggtrain "${flags[@]}" --micro-batch 1 --metrics "$DIR/mpi2.jsonl"
t1=$(field "$DIR/mpi1.jsonl" tokens_per_s)
t2=$(field "$DIR/mpi2.jsonl" tokens_per_s)
ar=$(field "$DIR/mpi2.jsonl" allreduce_s)
step=$(awk -v t="$t2" 'BEGIN { print 512 * '"$NP"' / t }')
printf '\nggtrain data parallel on %s cores, 0.55 B nf4 base, seq 512, global micro-batch %s\n\n' "$cores" "$NP"
printf '| %-28s | %10s | %8s |\n' run "tokens/s" ratio
printf '|%s|%s|%s|\n' ------------------------------ ------------ ----------
printf '| %-28s | %10s | %8s |\n' "1 process x $cores threads" "$t1" "1.00"
printf '| %-28s | %10s | %8s |\n' "mpirun -np $NP x $((cores / NP)) threads" "$t2" "$(awk -v a="$t2" -v b="$t1" 'BEGIN { printf "%.2f", a / b }')"
printf '\nall-reduce of the LoRA gradient: %.2f ms per step = %.3f%% of a %.1f s step\n' \
    "$(awk -v a="$ar" 'BEGIN { print a * 1e3 }')" "$(awk -v a="$ar" -v s="$step" 'BEGIN { print 100 * a / s }')" "$step"
