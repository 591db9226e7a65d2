/* cpu_backend.c — assembles the CPU gg_backend: context (thread pool, SIMD
 * level), host memory, and the ops table from matmul.c and ops.c. */
#include "backend-cpu/cpu_backend.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend-cpu/cpu_internal.h"

/* OpenBLAS runs inside our own worker threads (each on its share of the
 * rows), so its own threading is switched off. */
void openblas_set_num_threads(int num_threads);

static void *cpu_alloc(gg_backend *be, size_t bytes, gg_err *err) {
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) {
        gg_errf(err, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    return p;
}

static void cpu_free(gg_backend *be, void *p) { free(p); }
static void cpu_upload(gg_backend *be, void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
static void cpu_download(gg_backend *be, void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
static void cpu_copy(gg_backend *be, void *dst, const void *src, size_t n) { memmove(dst, src, n); }
static void cpu_memset0(gg_backend *be, void *dst, size_t n) { memset(dst, 0, n); }
static int cpu_sync(gg_backend *be, gg_err *err) { return 0; }

static void cpu_destroy(gg_backend *be) {
    if (!be) return;
    cpu_ctx *c = cpu_ctx_of(be);
    if (c) {
        gg_pool_free(c->pool);
        free(c->i8_buf);
    }
    free(c);
    free(be);
}

int gg_cpu_simd_cap(gg_backend *be, int level) {
    cpu_ctx *c = cpu_ctx_of(be);
    int best = GG_SIMD_SCALAR;
    for (int l = GG_SIMD_AVX512; l > GG_SIMD_SCALAR; l--)
        if (l <= level && gg_quant_kernels_at(l)) {
            best = l;
            break;
        }
    c->simd = best;
    return best;
}

gg_backend *gg_backend_cpu_new(int n_threads, gg_err *err) {
    if (n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = nc > 0 ? (int)nc : 1;
    }
    if (n_threads > 1024) n_threads = 1024;
    gg_backend *be = calloc(1, sizeof *be);
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        gg_errf(err, "out of memory creating the CPU backend");
        return NULL;
    }
    be->ctx = c;
    c->pool = gg_pool_new(n_threads);
    if (!c->pool) {
        cpu_destroy(be);
        gg_errf(err, "cannot start %d CPU threads", n_threads);
        return NULL;
    }
    openblas_set_num_threads(1);
    gg_cpu_simd_cap(be, GG_SIMD_AVX512);

    be->name = "cpu";
    be->n_threads = n_threads;
    be->destroy = cpu_destroy;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_upload;
    be->download = cpu_download;
    be->copy = cpu_copy;
    be->memset0 = cpu_memset0;
    be->sync = cpu_sync;
    be->weight_init = cpu_weight_init;
    be->weight_free = cpu_weight_free;
    be->matmul = cpu_matmul;
    be->matmul_dx = cpu_matmul_dx;
    be->gemm = cpu_gemm;
    be->embed = cpu_embed;
    be->rmsnorm = cpu_rmsnorm;
    be->layernorm = cpu_layernorm;
    be->rope = cpu_rope;
    be->attention = cpu_attention;
    be->act = cpu_act;
    be->glu = cpu_glu;
    be->softmax = cpu_softmax;
    be->add = cpu_add;
    be->scale = cpu_scale;
    be->rmsnorm_bwd = cpu_rmsnorm_bwd;
    be->layernorm_bwd = cpu_layernorm_bwd;
    be->act_bwd = cpu_act_bwd;
    be->glu_bwd = cpu_glu_bwd;
    be->attention_bwd = cpu_attention_bwd;
    be->cross_entropy = cpu_cross_entropy;
    be->dropout = cpu_dropout;
    be->sumsq = cpu_sumsq;
    be->adamw = cpu_adamw;
    be->adamw8bit = cpu_adamw8bit;
    be->argmax = cpu_argmax;
    be->topk = cpu_topk;
    return be;
}
