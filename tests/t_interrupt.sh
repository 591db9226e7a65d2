#!/usr/bin/env bash
# t_interrupt.sh — a conversion interrupted by SIGINT or SIGTERM leaves no
# output and no OUT.tmp, and an existing OUT is left as it was; an export
# (ggmerge --hf-out / --gguf-out) interrupted leaves no stage folder or
# .tmp file, and an existing output as it was.
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

"$BIN/ggconvert" -q -t f32 -o "$T/f32.gg" "$T/m" 2>/dev/null || fail "convert f32"
mkdir -p "$T/hf"; printf 'precious' >"$T/hf/keep.txt"; printf 'precious' >"$T/g.gguf"
for what in hf gguf; do
    if [ "$what" = hf ]; then
        "$BIN/ggmerge" -q -m "$T/f32.gg" --hf-out "$T/hf" --hf-type f32 2>/dev/null &
    else
        "$BIN/ggmerge" -q -m "$T/f32.gg" --gguf-out "$T/g.gguf" --gguf-type f32 2>/dev/null &
    fi
    pid=$!
    for _ in $(seq 500); do compgen -G "$T/hf.tmp-*" >/dev/null || [ -e "$T/g.gguf.tmp" ] && break; sleep 0.01; done
    compgen -G "$T/hf.tmp-*" >/dev/null || [ -e "$T/g.gguf.tmp" ] || fail "$what: no stage seen while exporting"
    kill -INT "$pid"
    rc=0; wait "$pid" || rc=$?
    [ "$rc" -ne 0 ] || fail "$what: export finished before the signal (rc 0)"
    ! compgen -G "$T/hf.tmp-*" >/dev/null || fail "$what: the stage folder was left: $(ls "$T")"
    [ ! -e "$T/g.gguf.tmp" ] || fail "$what: g.gguf.tmp was left"
    [ "$(cat "$T/hf/keep.txt")" = precious ] && [ "$(cat "$T/g.gguf")" = precious ] || fail "$what: existing output damaged"
done
echo ok
