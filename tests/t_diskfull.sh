#!/usr/bin/env bash
# t_diskfull.sh — writers on a full disk: ggconvert, ggmerge -o, --hf-out,
# --gguf-out and --peft-out into a 256 kB tmpfs (too small for any of
# them) fail with one line naming the file and the reason (ENOSPC), exit 1,
# and leave nothing behind: no output, no .tmp file, no partial folder.
# Needs permission to mount a tmpfs (root, or an unprivileged user+mount
# namespace via `unshare -rm`); prints "skip: ..." and passes otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(cd "${GG_BIN:-bin}" && pwd)
FIX=$(cd "${GG_FIXTURES:-tests/fixtures}" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
for t in ggmerge ggconvert; do [ -x "$BIN/$t" ] || fail "$BIN/$t not built"; done
L2=$FIX/hf/llama2-mha
"$BIN/ggconvert" -q -t f32 -o "$T/l2.gg" "$L2" 2>/dev/null || fail "convert"

# The checks run inside the namespace: one script, given the paths.
cat >"$T/inner.sh" <<'INNER'
set -u
BIN=$1 T=$2 L2=$3 M=$T/full
mount -t tmpfs -o size=256k tmpfs "$M" || exit 77
fill() { # leave ~8 kB free so that writers get going before ENOSPC
    head -c 200000 /dev/zero >"$M/fill" 2>/dev/null || true
}
fill
bad=0
check() { # check NAME LEFTOVER-GLOB... -- CMD...: exit 1, one stderr line with "No space", nothing left
    local name=$1; shift
    local globs=()
    while [ "$1" != -- ]; do globs+=("$1"); shift; done; shift
    local rc=0
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    if [ "$rc" -ne 1 ]; then echo "FAIL: $name: exit $rc, expected 1: $(cat "$T/err")"; bad=1; fi
    if [ "$(wc -l <"$T/err")" -ne 1 ]; then echo "FAIL: $name: $(wc -l <"$T/err") lines on stderr: $(cat "$T/err")"; bad=1; fi
    grep -q "No space left on device" "$T/err" || { echo "FAIL: $name: error does not say why: $(cat "$T/err")"; bad=1; }
    for g in "${globs[@]}"; do
        for f in $M/$g; do [ -e "$f" ] && { echo "FAIL: $name: left $f behind"; bad=1; }; done
    done
    echo "$name: $(cat "$T/err")"
}
check ggconvert 'c.gg*' -- "$BIN/ggconvert" -q -t f32 -o "$M/c.gg" "$L2"
check "ggmerge -o" 'm.gg*' -- "$BIN/ggmerge" -q -m "$T/l2.gg" -a "$L2/lora" -o "$M/m.gg"
check "ggmerge --gguf-out" 'x.gguf*' -- "$BIN/ggmerge" -q -m "$T/l2.gg" --gguf-out "$M/x.gguf" --gguf-type f32
check "ggmerge --hf-out" 'hf*' -- "$BIN/ggmerge" -q -m "$T/l2.gg" --hf-out "$M/hf" --hf-type f32
rm -f "$M/fill"; head -c 250000 /dev/zero >"$M/fill" 2>/dev/null || true
check "ggmerge --peft-out" 'peft*' -- "$BIN/ggmerge" -q -m "$T/l2.gg" -a "$L2/lora" --peft-out "$M/peft"
rm -f "$M/fill"
left=$(ls -A "$M")
[ -z "$left" ] || { echo "FAIL: files left on the full disk: $left"; bad=1; }
umount "$M"
exit $bad
INNER
mkdir -p "$T/full"
rc=0
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=4k tmpfs "$T/full" 2>/dev/null; then
    umount "$T/full"
    bash "$T/inner.sh" "$BIN" "$T" "$L2" || rc=$?
elif unshare -rm true 2>/dev/null; then
    unshare -rm bash "$T/inner.sh" "$BIN" "$T" "$L2" || rc=$?
else
    echo "skip: cannot mount a tmpfs here (not root, no user namespaces)"; exit 0
fi
[ "$rc" -ne 77 ] || { echo "skip: mounting a tmpfs failed"; exit 0; }
[ "$rc" -eq 0 ] || fail "see above"
echo ok
