/* random_lora.h — a seeded random LoRA adapter for the engine tests
 * (test_batch, test_sched): rank r on every linear layer of model m,
 * A and B entries N(0, 0.3²) from tests/rng.h in layer, target order, the
 * given scale. Header-only; NULL (with a message on stderr) on failure. */
#ifndef GG_TEST_RANDOM_LORA_H
#define GG_TEST_RANDOM_LORA_H

#include <stdio.h>
#include <stdlib.h>

#include "models/model.h"
#include "tests/rng.h"

static inline gg_lora *test_random_lora(gg_model *m, uint64_t seed, int64_t r, float scale) {
    rng_seed(seed);
    const gg_model_config *c = gg_model_cfg(m);
    size_t cap = (size_t)c->n_layers * GG_LIN_COUNT, n = 0, nb = 0;
    gg_lora_module *mods = calloc(cap, sizeof *mods);
    float **bufs = calloc(2 * cap, sizeof *bufs);
    gg_lora *l = NULL;
    if (!mods || !bufs) goto out;
    for (int64_t li = 0; li < c->n_layers; li++)
        for (int t = 0; t < GG_LIN_COUNT; t++) {
            int64_t rows, cols;
            gg_model_linear_shape(m, (gg_linear)t, &rows, &cols);
            if (!rows) continue;
            float *a = malloc((size_t)(r * cols) * sizeof *a), *b = malloc((size_t)(rows * r) * sizeof *b);
            bufs[nb++] = a;
            bufs[nb++] = b;
            if (!a || !b) goto out;
            for (int64_t i = 0; i < r * cols; i++) a[i] = (float)(rng_gauss() * 0.3);
            for (int64_t i = 0; i < rows * r; i++) b[i] = (float)(rng_gauss() * 0.3);
            mods[n++] = (gg_lora_module){.layer = li, .target = (gg_linear)t, .r = r, .a = a, .b = b, .scale = scale};
        }
    gg_err err;
    if (gg_lora_new(&l, m, mods, n, "random", &err)) fprintf(stderr, "random lora: %s\n", err.msg);
out:
    for (size_t i = 0; bufs && i < nb; i++) free(bufs[i]);
    free(bufs);
    free(mods);
    return l;
}

#endif
