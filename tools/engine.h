/* engine.h — shared by the tools that run a model (gggen, ggeval, ggserve):
 * picking the backend from --device, and loading LoRA adapters given as
 * `PATH[:SCALE]` (a .gg adapter or a PEFT folder) onto a loaded model.
 * Header-only; the work is in convert/adapter.c and models/model.c. */
#ifndef GG_TOOLS_ENGINE_H
#define GG_TOOLS_ENGINE_H

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend-cpu/cpu_backend.h"
#include "convert/adapter.h"
#include "models/model.h"

/* "cpu" or "cuda"; n_threads <= 0 means one per core (CPU). */
static inline gg_backend *gg_tool_backend(const char *device, int n_threads, gg_err *err) {
    if (!device || strcmp(device, "cpu") == 0) return gg_backend_cpu_new(n_threads, err);
    if (strcmp(device, "cuda") == 0) {
        gg_errf(err, "--device cuda: this build has no CUDA backend yet; use --device cpu");
        return NULL;
    }
    gg_errf(err, "--device '%s': expected cpu or cuda", device);
    return NULL;
}

/* Split "PATH[:SCALE]" (the scale is what follows the last ':' when it
 * parses as a number). path is malloc'd. */
static inline int gg_tool_adapter_arg(const char *arg, char **path, float *scale, gg_err *err) {
    const char *colon = strrchr(arg, ':');
    *scale = 1.0f;
    size_t plen = strlen(arg);
    if (colon && colon[1]) {
        char *end;
        double v = strtod(colon + 1, &end);
        if (!*end) {
            if (v != v || v > 1e6 || v < -1e6) return gg_errf(err, "adapter '%s': scale out of range", arg);
            *scale = (float)v;
            plen = (size_t)(colon - arg);
        }
    }
    if (!plen) return gg_errf(err, "adapter '%s': empty path", arg);
    *path = strndup(arg, plen);
    return *path ? 0 : gg_errf(err, "out of memory");
}

/* Load one adapter (a .gg file, or a PEFT folder) for model m whose file is
 * base, checked against it, onto m's backend. */
static inline int gg_tool_load_adapter(gg_lora **out, gg_model *m, const gg_file *base, const char *path,
                                       gg_err *err) {
    struct stat st;
    gg_adapter *a = NULL;
    if (stat(path, &st) != 0) return gg_errf(err, "adapter '%s': no such file or folder", path);
    int rc = S_ISDIR(st.st_mode) ? gg_adapter_load_peft(&a, path, base, err) : gg_adapter_load_gg(&a, path, err);
    if (rc) return -1;
    if (gg_adapter_check_base(a, base, err)) {
        gg_adapter_free(a);
        return -1;
    }
    gg_lora_module *mods = calloc(a->n ? a->n : 1, sizeof *mods);
    if (!mods) {
        gg_adapter_free(a);
        return gg_errf(err, "out of memory");
    }
    for (size_t i = 0; i < a->n; i++) {
        const gg_adapter_tensor *t = &a->t[i];
        mods[i] = (gg_lora_module){.layer = t->layer, .target = (gg_linear)t->target, .r = t->r,
                                   .a = t->a, .b = t->b, .scale = t->scale};
    }
    rc = gg_lora_new(out, m, mods, a->n, path, err);
    free(mods);
    gg_adapter_free(a);
    return rc;
}

#endif
