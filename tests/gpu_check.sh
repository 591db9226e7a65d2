#!/usr/bin/env bash
# tests/gpu_check.sh — on the lent GPU machine, over build/gpu from
# tests/gpu_pack.sh: every CUDA op against the CPU backend
# (test_backend_cuda), the fixture parity tests on the GPU
# (GG_TEST_DEVICE=cuda test_model, test_train), and gggen --device cuda
# greedy tokens against the CPU's. Logs go to $OUT (the device tool's
# output folder) when set, else build/gpu/logs. Exit status: the number of
# failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
G=build/gpu
LOGS=${OUT:-$G/logs}
mkdir -p "$LOGS"
export LD_LIBRARY_PATH="$PWD/$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GG_BIN="$G/bin" GG_CUDA_LIB="$PWD/$G/bin/libggcuda.so"
nvidia-smi -L 2>&1 | tee "$LOGS/gpu.txt"
failed=0
step() { # NAME CMD...: run, log, report
    local name=$1; shift
    local t0=$SECONDS rc=0
    "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
    printf '%-28s rc=%d  %3ds  %s\n' "$name" "$rc" $((SECONDS - t0)) "$(tail -n 1 "$LOGS/$name.log")"
    [ "$rc" -eq 0 ] || { failed=$((failed + 1)); grep -m 20 -E 'FAIL|error' "$LOGS/$name.log"; }
}
step test_backend_cuda "$G/tests/test_backend_cuda"
step test_model_cuda env GG_TEST_DEVICE=cuda "$G/tests/test_model"
step test_train_cuda env GG_TEST_DEVICE=cuda "$G/tests/test_train"
# gggen: greedy ids on the GPU equal the CPU's (f32 fixture)
T=$(mktemp -d)
fx=tests/fixtures/hf/llama3-gqa
"$G/bin/ggconvert" -q -t f32 -o "$T/m.gg" "$fx" 2>/dev/null
ids=$(tr -d ' \n' <"$fx/reference.json" | grep -o '"greedy_prompt":\[[0-9,]*\]' | sed 's/.*\[//; s/\]//; s/,/ /g')
a=$("$G/bin/gggen" -q -m "$T/m.gg" --ids "$ids" -n 12 --temp 0 --ignore-eos --print-ids)
step gggen_cuda "$G/bin/gggen" -q -m "$T/m.gg" --ids "$ids" -n 12 --temp 0 --ignore-eos --print-ids --device cuda
b=$(cat "$LOGS/gggen_cuda.log")
[ "$a" = "$b" ] || { echo "gggen: cpu '$a' vs cuda '$b'"; failed=$((failed + 1)); }
rm -rf "$T"
echo "gpu_check: $failed failed step(s)"
exit "$failed"
