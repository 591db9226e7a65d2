#!/usr/bin/env bash
# tests/gpu_pack.sh — packs what the lent GPU machine needs to check the
# CUDA backend into build/gpu/ (stripped tools, libggcuda.so, the GPU test
# binaries, and the shared libraries that machine lacks: utf8proc), well
# under the device tool's 64 MiB carry limit. Then, with the device tool:
#     run(command="bash tests/gpu_check.sh", carry=["build/gpu"])
# and the benchmarks (bench/train_gpu.sh, bench/infer_gpu.sh: see their top
# comments; GEN_HF=build/gpu/bench/gen_hf).
# The GPU machine runs Ubuntu 24.04 with a newer glibc, so binaries built
# here run there.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s CUDA=1 all build/rel/tests/test_backend_cuda build/rel/tests/test_model build/rel/tests/test_train
rm -rf build/gpu
mkdir -p build/gpu/bin build/gpu/tests build/gpu/lib
for t in bin/gg*; do strip -o "build/gpu/$t" "$t"; done
cp bin/libggcuda.so build/gpu/bin/
for t in test_backend_cuda test_model test_train; do strip -o "build/gpu/tests/$t" "build/rel/tests/$t"; done
# bench/train_gpu.sh and infer_gpu.sh generate their checkpoint with gen_hf
mkdir -p build/gpu/bench
cc -std=c11 -O2 -D_GNU_SOURCE bench/gen_hf.c -o build/gpu/bench/gen_hf
lib=$(ldd bin/gggen | awk '/libutf8proc/ { print $3 }')
[ -n "$lib" ] && cp -L "$lib" build/gpu/lib/
du -sh build/gpu
