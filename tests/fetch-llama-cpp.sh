#!/usr/bin/env bash
# tests/fetch-llama-cpp.sh — installs llama.cpp as the prebuilt linux-x64
# CPU build inside node-llama-cpp (versions pinned in
# tests/ref/llama-cpp-package.json) from the npm registry into
# build/npm/llama-cpp, for tests/t_gguf_llama_cpp.sh and bench/infer.sh.
# Idempotent; never fails: without npm, offline, or on another platform it
# prints "skip: ..." on stderr and exits 0 (the callers then skip).
# --ignore-scripts: no postinstall (it would try to build llama.cpp);
# --omit=optional: only the linux-x64 CPU binaries the package.json names.
set -u
cd "$(dirname "$0")/.." || exit 0
LC=build/npm/llama-cpp
if cmp -s tests/ref/llama-cpp-package.json "$LC/package.json" && [ -d "$LC/node_modules/node-llama-cpp" ]; then exit 0; fi
[ "$(uname -sm)" = "Linux x86_64" ] || { echo "skip: the pinned llama.cpp build is linux-x64 only" >&2; exit 0; }
command -v npm >/dev/null 2>&1 || { echo "skip: npm not found: cannot fetch node-llama-cpp" >&2; exit 0; }
rm -rf "$LC"; mkdir -p "$LC"; cp tests/ref/llama-cpp-package.json "$LC/package.json"
log=$(mktemp)
if ! (cd "$LC" && npm_config_fetch_retries=1 timeout 600 npm install --omit=optional --ignore-scripts \
        --no-audit --no-fund --loglevel=error >"$log" 2>&1); then
    echo "skip: npm install node-llama-cpp failed (offline?): $(grep -m1 -i error "$log")" >&2
    rm -rf "$LC"
fi
rm -f "$log"
exit 0
