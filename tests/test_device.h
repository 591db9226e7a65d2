/* test_device.h — the backend a model-level test runs on: the CPU backend
 * (2 threads), or the one GG_TEST_DEVICE names ("cuda", "cuda:N"), loaded
 * as the tools load it (tools/engine.h; the CUDA plugin from $GG_CUDA_LIB,
 * else $GG_BIN/libggcuda.so, else bin/). On the GPU machine:
 *     GG_TEST_DEVICE=cuda build/rel/tests/test_model
 * runs the fixture parity tests on the GPU. */
#ifndef GG_TEST_DEVICE_H
#define GG_TEST_DEVICE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/engine.h"

/* The device named by GG_TEST_DEVICE, "cpu" when unset. */
static inline const char *test_device(void) {
    const char *d = getenv("GG_TEST_DEVICE");
    return d && *d ? d : "cpu";
}

static inline int test_device_is_cpu(void) { return strcmp(test_device(), "cpu") == 0; }

/* The backend, or NULL after printing why. */
static inline gg_backend *test_backend(void) {
    if (!getenv("GG_CUDA_LIB")) {
        static char lib[1100];
        const char *bin = getenv("GG_BIN");
        snprintf(lib, sizeof lib, "%s/libggcuda.so", bin && *bin ? bin : "bin");
        setenv("GG_CUDA_LIB", lib, 1);
    }
    gg_err err;
    gg_backend *be = gg_tool_backend(test_device(), 2, &err);
    if (!be) fprintf(stderr, "%s: %s\n", test_device(), err.msg);
    return be;
}

#endif
