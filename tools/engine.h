/* engine.h — shared by the tools that run a model (gggen, ggeval, ggserve,
 * ggtrain): picking the backend from --device (the CUDA backend is a plugin,
 * libggcuda.so, loaded only when asked for, so the tools start on machines
 * without CUDA), and loading LoRA adapters given as `PATH[:SCALE]` (a .gg
 * adapter or a PEFT folder) onto a loaded model.
 * Header-only; the work is in convert/adapter.c and models/model.c. */
#ifndef GG_TOOLS_ENGINE_H
#define GG_TOOLS_ENGINE_H

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend-cpu/cpu_backend.h"
#include "convert/adapter.h"
#include "models/model.h"

/* The CUDA backend from libggcuda.so: $GG_CUDA_LIB, else next to the
 * running program, else the loader's search path. The library stays loaded
 * for the life of the process. */
static inline gg_backend *gg_tool_cuda_backend(int device, gg_err *err) {
    char path[PATH_MAX + 32];
    const char *env = getenv("GG_CUDA_LIB");
    void *h = NULL;
    char why[512] = "";
    if (env && *env) {
        h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
        if (!h) snprintf(why, sizeof why, "%s", dlerror());
    } else {
        ssize_t k = readlink("/proc/self/exe", path, PATH_MAX);
        if (k > 0) {
            path[k] = 0;
            char *slash = strrchr(path, '/');
            if (slash) {
                strcpy(slash + 1, "libggcuda.so");
                h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
                if (!h) {
                    struct stat st;
                    if (stat(path, &st) == 0) snprintf(why, sizeof why, "%s", dlerror());
                }
            }
        }
        if (!h) {
            h = dlopen("libggcuda.so", RTLD_NOW | RTLD_LOCAL);
            if (!h && !why[0]) snprintf(why, sizeof why, "%s", dlerror());
        }
    }
    if (!h) {
        for (char *c = why; *c; c++)
            if (*c == '\n') *c = ' ';
        gg_errf(err, "--device cuda: cannot load the CUDA backend (libggcuda.so, built by make CUDA=1): %s", why);
        return NULL;
    }
    gg_backend *(*make)(int, gg_err *) = NULL;
    *(void **)&make = dlsym(h, "gg_backend_cuda_new");
    if (!make) {
        gg_errf(err, "--device cuda: libggcuda.so has no gg_backend_cuda_new");
        return NULL;
    }
    return make(device, err);
}

/* "cpu", "cuda" or "cuda:N"; n_threads <= 0 means one per core (CPU). */
static inline gg_backend *gg_tool_backend(const char *device, int n_threads, gg_err *err) {
    if (!device || strcmp(device, "cpu") == 0) return gg_backend_cpu_new(n_threads, err);
    if (strncmp(device, "cuda", 4) == 0) {
        int idx = 0;
        if (device[4] == ':') {
            char *end;
            long v = strtol(device + 5, &end, 10);
            if (end == device + 5 || *end || v < 0 || v > 1023) {
                gg_errf(err, "--device '%s': expected cuda or cuda:N", device);
                return NULL;
            }
            idx = (int)v;
        } else if (device[4]) {
            gg_errf(err, "--device '%s': expected cpu, cuda or cuda:N", device);
            return NULL;
        }
        return gg_tool_cuda_backend(idx, err);
    }
    gg_errf(err, "--device '%s': expected cpu, cuda or cuda:N", device);
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
