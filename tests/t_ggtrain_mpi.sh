#!/usr/bin/env bash
# t_ggtrain_mpi.sh — data-parallel ggtrain over MPI on the CPU backend:
# - `mpirun -np 2` with micro-batch 2 gives the loss curve and the adapter of
#   one process with micro-batch 4 (float tolerance: the gradient sum runs in
#   another order);
# - a 2-rank run resumes byte-identically from its checkpoint;
# - SIGUSR1 to mpirun checkpoints and stops every rank (exit 130);
# - killing one rank ends the whole job with an error, in bounded time.
# Skipped (with a "skip:" line) when mpirun is missing or ggtrain was built
# without MPI.
set -euo pipefail
BIN=${GG_BIN:-bin}
command -v mpirun >/dev/null 2>&1 || { echo "skip: no mpirun (apt-get install openmpi-bin libopenmpi-dev)"; exit 0; }
ldd "$BIN/ggtrain" 2>/dev/null | grep -q libmpi || { echo "skip: $BIN/ggtrain was built without MPI"; exit 0; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# OpenMPI's own allocations are not freed at exit; LeakSanitizer would fail
# every rank (our code's leaks are checked by the single-process tests).
[ "${GG_SANITIZE:-0}" = 1 ] && export ASAN_OPTIONS=detect_leaks=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(mpirun -np 2 --oversubscribe)
bash tests/make_demo_model.sh build/demo-model
bash tests/make_task.sh "$T/task"
"$BIN/ggconvert" -q -t nf4 -o "$T/base.gg" build/demo-model
common=(-q -m "$T/base.gg" -d "$T/task/train.jsonl" --max-steps 8 --lr 3e-3 --lora-dropout 0 --threads 1)

# ---- 2 ranks × micro-batch 2 = 1 process × micro-batch 4 ----
"$BIN/ggtrain" "${common[@]}" --micro-batch 4 -o "$T/one.gg" --metrics "$T/one.jsonl"
"${MPIRUN[@]}" "$BIN/ggtrain" "${common[@]}" --micro-batch 2 -o "$T/two.gg" --metrics "$T/two.jsonl"
[ "$(grep -c '"loss"' "$T/two.jsonl")" -eq 8 ] || fail "rank 0 should write 8 metrics rows: $(cat "$T/two.jsonl")"
grep -q '"ranks":2' "$T/two.jsonl" || fail "no ranks field in the metrics"
loss() { sed -n 's/.*"loss":\([0-9.e+-]*\).*/\1/p' "$1"; }
paste <(loss "$T/one.jsonl") <(loss "$T/two.jsonl") | awk '
    { d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > w) w = r }
    END { printf "# loss curves: worst relative difference %.2g\n", w; exit !(w < 1e-5) }' ||
    fail "loss curves differ"
# the adapters: the logits they give on a prompt
ids="1 13866 338 263 1243 29889"
for a in one two; do
    "$BIN/gggen" -q -m "$T/base.gg" -a "$T/$a.gg" --ids "$ids" -n 0 --dump-logits "$T/$a.f32"
done
cmp -s "$T/one.f32" "$T/two.f32" && echo "# adapters: identical logits" ||
    paste <(od -An -v -f -w4 "$T/one.f32") <(od -An -v -f -w4 "$T/two.f32") | awk '
        { d = $1 - $2; n += d * d; s += $1 * $1 }
        END { printf "# adapters: logits relative L2 difference %.2g\n", sqrt(n / s); exit !(sqrt(n / s) < 1e-4) }' ||
    fail "the adapters differ"

# ---- resume with the same number of ranks ----
"${MPIRUN[@]}" "$BIN/ggtrain" "${common[@]}" --micro-batch 2 -o "$T/saved.gg" --save-every 4
"${MPIRUN[@]}" "$BIN/ggtrain" "${common[@]}" --micro-batch 2 -o "$T/resumed.gg" --resume "$T/saved.gg.ckpt/step-00000004"
cmp "$T/saved.gg" "$T/resumed.gg" || fail "2 ranks: 8 steps and 4 + resume 4 differ"

# ---- SIGUSR1: checkpoint and stop together ----
"${MPIRUN[@]}" "$BIN/ggtrain" -m "$T/base.gg" -d "$T/task/train.jsonl" -o "$T/usr1.gg" --max-steps 100000 \
    --threads 1 --log-every 1 2>"$T/usr1.log" &
pid=$!
for _ in $(seq 400); do grep -q "^step" "$T/usr1.log" 2>/dev/null && break; sleep 0.05; done
kill -USR1 "$pid"
rc=0; timeout 60 tail --pid="$pid" -f /dev/null || true; wait "$pid" || rc=$?
[ "$rc" -ne 0 ] || fail "SIGUSR1: exit 0"
grep -q "continue with --resume" "$T/usr1.log" || fail "SIGUSR1: no checkpoint message ($(tail -n 3 "$T/usr1.log"))"
ls "$T/usr1.gg.ckpt"/step-*/state.gg >/dev/null || fail "SIGUSR1: no checkpoint"

# ---- a rank that dies ends the job ----
"${MPIRUN[@]}" "$BIN/ggtrain" -m "$T/base.gg" -d "$T/task/train.jsonl" -o "$T/die.gg" --max-steps 100000 \
    --threads 1 --log-every 1 --dist-timeout 20 2>"$T/die.log" &
pid=$!
for _ in $(seq 400); do grep -q "^step" "$T/die.log" 2>/dev/null && break; sleep 0.05; done
victim=$(pgrep -P "$pid" -f ggtrain | tail -n 1)
[ -n "$victim" ] || fail "no rank process found"
kill -9 "$victim"
start=$(date +%s)
rc=0; wait "$pid" || rc=$?
took=$(($(date +%s) - start))
echo "# a killed rank: mpirun exited $rc after ${took}s"
[ "$rc" -ne 0 ] || fail "a killed rank: the job exited 0"
[ "$took" -le 60 ] || fail "a killed rank: the job took ${took}s to end"
echo ok
