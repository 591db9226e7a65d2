#!/usr/bin/env bash
# t_interrupt.sh — a conversion interrupted by SIGINT or SIGTERM leaves no
# output and no OUT.tmp, and an existing OUT is left as it was.
set -euo pipefail
BIN=${GG_BIN:-bin}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cc -std=c11 -O2 -D_GNU_SOURCE bench/gen_hf.c -o "$T/gen_hf"
# A ~150M-parameter bf16 Llama (300 MB): converting it takes long enough to interrupt.
"$T/gen_hf" "$T/m" 1024 8 16 4 4096 32000 100 >/dev/null
for sig in INT TERM; do
    printf 'precious' >"$T/out.gg"
    "$BIN/ggconvert" -q -t nf4 --threads 1 -o "$T/out.gg" "$T/m" 2>/dev/null &
    pid=$!
    for _ in $(seq 500); do [ -e "$T/out.gg.tmp" ] && break; sleep 0.01; done
    [ -e "$T/out.gg.tmp" ] || fail "no OUT.tmp seen while converting"
    kill -"$sig" "$pid"
    rc=0; wait "$pid" || rc=$?
    [ "$rc" -ne 0 ] || fail "SIG$sig: conversion finished before the signal (rc 0)"
    [ ! -e "$T/out.gg.tmp" ] || fail "SIG$sig left OUT.tmp"
    [ "$(cat "$T/out.gg")" = precious ] || fail "SIG$sig damaged the existing output"
done
echo ok
