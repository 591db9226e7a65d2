#!/usr/bin/env bash
# bench/convert.sh — ggconvert throughput against the raw read rate.
#
# Generates (once) a random-weight bf16 Llama checkpoint of the Llama 3.2 1B
# shape (sharded safetensors, 2.47 GB) under $GG_BENCH_DIR (default
# /tmp/gg-bench), warms the page cache, then times in the same run:
#   cat of the shards to /dev/null  (the raw read rate)
#   ggconvert -t nf4 and -t q8      (input MB/s; includes the final fsync)
#   ggconvert -t nf4 into /dev/shm (no disk: the pipeline's own rate)
# Each is run $RUNS times (default 3); the best time is reported. Every run
# starts from no output file (deleting a large file is not the convert's cost).
# Usage: bench/convert.sh   (from the repo root, after `make`)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${GG_BENCH_DIR:-/tmp/gg-bench}
RUNS=${RUNS:-3}
SHAPE=${GG_BENCH_SHAPE:-}   # e.g. "1024 4 16 4 4096 32000 500" for a quick run
mkdir -p "$DIR" build/bench
cc -std=c11 -O2 -D_GNU_SOURCE bench/gen_hf.c -o build/bench/gen_hf
M="$DIR/llama-1b${SHAPE:+-small}"
if [ ! -f "$M/config.json" ]; then
    echo "generating $M ..." >&2
    build/bench/gen_hf "$M" $SHAPE >&2
fi
[ -x bin/ggconvert ] || make -s
shards=("$M"/*.safetensors)
bytes=$(cat "${shards[@]}" | wc -c)
cat "${shards[@]}" >/dev/null; cat "${shards[@]}" >/dev/null   # warm the page cache

best() { # best wall time of RUNS runs of "$@"
    local b="" t0 t1 t
    for _ in $(seq "$RUNS"); do
        t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
        t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
        if [ -z "$b" ] || awk -v t="$t" -v b="$b" 'BEGIN { exit !(t < b) }'; then b=$t; fi
    done
    echo "$b"
}
t_cat=$(best cat "${shards[@]}")
out="$DIR/out.gg"
conv() { rm -f "$1"; sync; bin/ggconvert -q -t "$2" -o "$1" "$M"; }
t_nf4=$(best conv "$out" nf4); s_nf4=$(stat -c %s "$out")
t_q8=$(best conv "$out" q8); s_q8=$(stat -c %s "$out")
rm -f "$out"
# The same conversion into tmpfs, where fsync costs nothing: the rate of
# ggconvert's own pipeline without the disk.
shm=""
if [ -d /dev/shm ] && [ "$(df -k --output=avail /dev/shm | tail -1)" -gt $((s_nf4 / 1024 * 2)) ]; then
    shm=/dev/shm/gg-bench-out.gg
    t_nf4_shm=$(best conv "$shm" nf4); rm -f "$shm"
fi

mbps() { awk -v n="$bytes" -v t="$1" 'BEGIN { printf "%.0f", n / 1e6 / t }'; }
r_cat=$(mbps "$t_cat")
printf '\nggconvert on %s (%s MB of bf16 in %d shards), %s cores, best of %s\n\n' \
    "$(basename "$M")" "$((bytes / 1000000))" "${#shards[@]}" "$(nproc)" "$RUNS"
printf '| %-26s | %8s | %9s | %10s | %8s |\n' "run" "seconds" "input MB/s" "output MB" "vs cat"
printf '|%s|%s|%s|%s|%s|\n' "----------------------------" "----------" "-----------" "------------" "----------"
row() { printf '| %-26s | %8.3f | %9s | %10s | %7.1f%% |\n' "$1" "$2" "$(mbps "$2")" "$3" "$(awk -v a="$t_cat" -v b="$2" 'BEGIN { print 100 * a / b }')"; }
row "cat > /dev/null (raw read)" "$t_cat" "-"
row "ggconvert -t nf4" "$t_nf4" "$((s_nf4 / 1000000))"
row "ggconvert -t q8" "$t_q8" "$((s_q8 / 1000000))"
[ -n "$shm" ] && row "ggconvert -t nf4 -> tmpfs" "$t_nf4_shm" "$((s_nf4 / 1000000))"
echo
echo "goal: nf4 conversion >= 50% of the raw read rate (ratio column)"
