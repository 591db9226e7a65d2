#!/usr/bin/env bash
# bench/llama_cpp_build.sh — builds llama.cpp's own llama-bench (CPU,
# -march=native) from the llama.cpp source that node-llama-cpp ships as a
# git bundle (tests/fetch-llama-cpp.sh installs it from npm; pinned release
# in tests/ref/llama-cpp-package.json), into build/llama.cpp/bin. Prints the
# binary's path. bench/infer.sh uses it when LLAMA_BENCH is not set.
#
#   bash bench/llama_cpp_build.sh        (needs cmake and a C++ compiler)
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/llama.cpp
if [ -x "$out/bin/llama-bench" ]; then echo "$out/bin/llama-bench"; exit 0; fi
bash tests/fetch-llama-cpp.sh
bundle=build/npm/llama-cpp/node_modules/node-llama-cpp/llama/gitRelease.bundle
[ -f "$bundle" ] || { echo "llama_cpp_build: no llama.cpp source bundle ($bundle)" >&2; exit 1; }
command -v cmake >/dev/null || { echo "llama_cpp_build: cmake not found (apt-get install cmake g++)" >&2; exit 1; }
rm -rf "$out/src"
git clone -q "$bundle" "$out/src" 2>/dev/null
cmake -S "$out/src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >"$out/cmake.log" 2>&1 ||
    { tail -n 20 "$out/cmake.log" >&2; exit 1; }
cmake --build "$out/build" --target llama-bench -j"$(nproc)" >"$out/build.log" 2>&1 ||
    { tail -n 20 "$out/build.log" >&2; exit 1; }
mkdir -p "$out/bin"
cp "$out/build/bin/llama-bench" "$out/bin/"
echo "$out/bin/llama-bench"
