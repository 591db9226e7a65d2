/* train.c — LoRA training (train.h): the trainable adapter as flat
 * parameter / gradient / optimizer buffers, the training forward pass that
 * keeps each block's activations (or only its input, with gradient
 * checkpointing), the fused chunked LM head + cross-entropy, and the
 * backward pass through every block to the LoRA parameters. */
#include "models/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_internal.h"

#define CE_ROWS 64 /* LM-head rows per cross-entropy chunk */

/* What backward needs of one block (besides its input). */
typedef struct acts {
    float *q, *k, *v, *att, *lse, *x_mid, *gate, *up;
} acts;

/* One trainable module: offsets of A and B in the flat buffers. */
typedef struct tmod {
    int64_t layer;
    gg_linear target;
    int64_t r, in, out;
    float scale;
    size_t off_a, off_b;
} tmod;

struct gg_trainer {
    gg_model *m;
    gg_backend *be;
    gg_train_cfg cfg;
    int64_t max_n;

    /* parameters */
    tmod *mods;
    size_t n_mods, n_params;
    int64_t max_r, max_in;
    float *P, *G, *M, *V;          /* flat; M, V NULL with 8-bit state */
    uint8_t *M8, *V8;              /* 8-bit state */
    float *M8s, *V8s;              /* their absmax per block */
    gg_lora lora, grads;           /* views of P and G per (layer, linear) */
    int64_t steps;
    uint64_t drop_key;
    float *sumsq;                  /* [1] */

    /* activations */
    float **xs;                    /* [n_layers + 1] block inputs; xs[L] = final hidden */
    acts *A;                       /* [n_layers], or [1] with grad_ckpt */
    int n_acts;
    /* scratch */
    float *h, *h2, *a, *da, *dx, *dh, *dh2, *dq, *dk, *dv, *datt, *lt, *ldt, *xd, *xd2, *logits, *loss;
    int32_t *ids, *pos, *negpos, *k_lo, *k_hi, *targets;
    int32_t *host_i32;
    float *host_loss;
};

/* ------------------------------------------------------------------------ */
/* Allocation                                                                 */

static void *talloc(gg_trainer *t, size_t bytes, int *failed, gg_err *err) {
    if (*failed) return NULL;
    void *p = t->be->alloc(t->be, bytes ? bytes : 4, err);
    if (!p) *failed = 1;
    return p;
}

static int64_t lin_in(const gg_model_config *c, gg_linear l) {
    if (l == GG_LIN_O) return c->n_heads * c->head_dim;
    if (l == GG_LIN_DOWN) return c->ffn;
    return c->hidden;
}

static int64_t lin_out(const gg_model_config *c, gg_linear l) {
    switch (l) {
    case GG_LIN_Q: return c->n_heads * c->head_dim;
    case GG_LIN_K:
    case GG_LIN_V: return c->n_kv_heads * c->head_dim;
    case GG_LIN_GATE:
    case GG_LIN_UP: return c->ffn;
    default: return c->hidden;
    }
}

static int has_linear(const gg_model_config *c, gg_linear l) { return l != GG_LIN_GATE || c->mlp != GG_MMLP_GELU; }

/* Floats of activations one block keeps, per token. */
static int64_t acts_per_token(const gg_model_config *c) {
    int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    return 2 * qd + 2 * kvd + c->n_heads + (c->parallel_attn ? 0 : c->hidden) + 2 * c->ffn;
}

/* Floats of scratch per token (h, h2, a, da, dx, dh, dh2, dq, dk, dv, datt,
 * lora scratch, loss) plus the logits chunk. */
static void scratch_floats(const gg_model_config *c, int64_t n, int64_t max_r, int64_t max_in, int dropout,
                           double *per_tok, double *fixed) {
    int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    *per_tok = (double)(4 * c->hidden + 2 * c->ffn + 2 * qd + 2 * kvd + c->hidden + 2 * max_r + max_in +
                        (dropout ? max_in : 0) + 1);
    *fixed = (double)CE_ROWS * (double)c->vocab;
    (void)n;
}

void gg_train_mem_predict(gg_train_mem *mem, const gg_model_config *c, const gg_train_cfg *cfg) {
    double np = 0;
    int64_t max_r = cfg->r, max_in = 0;
    for (int l = 0; l < GG_LIN_COUNT; l++) {
        if (!(cfg->targets & (1u << l)) || !has_linear(c, (gg_linear)l)) continue;
        np += (double)cfg->r * (double)(lin_in(c, (gg_linear)l) + lin_out(c, (gg_linear)l));
        if (lin_in(c, (gg_linear)l) > max_in) max_in = lin_in(c, (gg_linear)l);
    }
    np *= (double)c->n_layers;
    mem->params = np * 4;
    mem->grads = np * 4;
    mem->optim = cfg->optim_8bit ? np * 2 + 2 * 4 * ceil(np / GG_ADAM8_BLOCK) : np * 8;
    double n = (double)cfg->max_tokens, per_tok, fixed;
    scratch_floats(c, cfg->max_tokens, max_r, max_in, cfg->dropout > 0, &per_tok, &fixed);
    double blocks = cfg->grad_ckpt ? 1 : (double)c->n_layers;
    mem->acts = 4 * (n * (double)c->hidden * (double)(c->n_layers + 1) + n * (double)acts_per_token(c) * blocks +
                     n * per_tok + fixed) +
                n * 4 * 7;
}

void gg_trainer_mem(const gg_trainer *t, gg_train_mem *mem) {
    gg_train_cfg c = t->cfg;
    c.max_tokens = t->max_n;
    gg_train_mem_predict(mem, &t->m->cfg, &c);
    /* the parameter count is exact from the modules (init adapters may
     * differ from cfg) */
    double np = (double)t->n_params;
    mem->params = np * 4;
    mem->grads = np * 4;
    mem->optim = t->cfg.optim_8bit ? np * 2 + 2 * 4 * ceil(np / GG_ADAM8_BLOCK) : np * 8;
}

/* ------------------------------------------------------------------------ */
/* Construction                                                               */

static int find_init(const gg_lora_module *init, size_t n, int64_t layer, gg_linear l) {
    for (size_t i = 0; i < n; i++)
        if (init[i].layer == layer && init[i].target == l) return (int)i;
    return -1;
}

/* A uniform float in [-1, 1) from (seed, i), the same on every machine. */
static float uniform_pm1(uint64_t seed, uint64_t i) { return 2.0f * gg_dropout_u(seed, i) - 1.0f; }

static int plan_modules(gg_trainer *t, const gg_lora_module *init, size_t n_init, gg_err *err) {
    const gg_model_config *c = &t->m->cfg;
    t->mods = calloc((size_t)(c->n_layers * GG_LIN_COUNT), sizeof *t->mods);
    if (!t->mods) return gg_errf(err, "out of memory");
    size_t off = 0;
    for (int64_t li = 0; li < c->n_layers; li++)
        for (int l = 0; l < GG_LIN_COUNT; l++) {
            if (!has_linear(c, (gg_linear)l)) continue;
            int k = init ? find_init(init, n_init, li, (gg_linear)l) : -1;
            if (init && k < 0) continue;
            if (!init && !(t->cfg.targets & (1u << l))) continue;
            tmod *md = &t->mods[t->n_mods++];
            md->layer = li;
            md->target = (gg_linear)l;
            md->in = lin_in(c, (gg_linear)l);
            md->out = lin_out(c, (gg_linear)l);
            md->r = k >= 0 ? init[k].r : t->cfg.r;
            md->scale = k >= 0 ? init[k].scale
                               : (float)(t->cfg.rslora ? t->cfg.alpha / sqrt((double)t->cfg.r)
                                                       : t->cfg.alpha / (double)t->cfg.r);
            if (md->r < 1 || md->r > 65536) return gg_errf(err, "LoRA rank %lld out of range 1..65536", (long long)md->r);
            md->off_a = off;
            off += (size_t)(md->r * md->in);
            md->off_b = off;
            off += (size_t)(md->r * md->out);
            if (md->r > t->max_r) t->max_r = md->r;
            if (md->in > t->max_in) t->max_in = md->in;
        }
    if (init && t->n_mods != n_init)
        return gg_errf(err, "the initial adapter has %zu modules this model cannot take", n_init - t->n_mods);
    if (!t->n_mods) return gg_errf(err, "no LoRA targets: nothing to train");
    t->n_params = off;
    return 0;
}

static int bind_views(gg_trainer *t, gg_err *err) {
    const gg_model_config *c = &t->m->cfg;
    gg_lora *views[2] = {&t->lora, &t->grads};
    float *base[2] = {t->P, t->G};
    for (int v = 0; v < 2; v++) {
        views[v]->be = t->be;
        views[v]->n_layers = c->n_layers;
        views[v]->max_r = t->max_r;
        views[v]->mods = calloc((size_t)(c->n_layers * GG_LIN_COUNT), sizeof(gg_lora_bound));
        if (!views[v]->mods) return gg_errf(err, "out of memory");
        for (size_t i = 0; i < t->n_mods; i++) {
            const tmod *md = &t->mods[i];
            gg_lora_bound *b = &views[v]->mods[md->layer * GG_LIN_COUNT + md->target];
            b->a = base[v] + md->off_a;
            b->b = base[v] + md->off_b;
            b->r = md->r;
            b->scale = md->scale;
        }
    }
    return 0;
}

static int init_params(gg_trainer *t, const gg_lora_module *init, size_t n_init, gg_err *err) {
    float *host = malloc(t->n_params * sizeof(float));
    if (!host) return gg_errf(err, "out of memory");
    for (size_t i = 0; i < t->n_mods; i++) {
        const tmod *md = &t->mods[i];
        size_t na = (size_t)(md->r * md->in), nb = (size_t)(md->r * md->out);
        int k = init ? find_init(init, n_init, md->layer, md->target) : -1;
        if (k >= 0) {
            memcpy(host + md->off_a, init[k].a, na * sizeof(float));
            memcpy(host + md->off_b, init[k].b, nb * sizeof(float));
        } else {
            float bound = 1.0f / sqrtf((float)md->in);
            uint64_t s = t->cfg.seed * 0x100000001B3ull + (uint64_t)(md->layer * GG_LIN_COUNT + md->target);
            for (size_t j = 0; j < na; j++) host[md->off_a + j] = bound * uniform_pm1(s, j);
            memset(host + md->off_b, 0, nb * sizeof(float));
        }
    }
    t->be->upload(t->be, t->P, host, t->n_params * sizeof(float));
    free(host);
    return 0;
}

int gg_trainer_new(gg_trainer **out, gg_model *m, const gg_train_cfg *cfg, const gg_lora_module *init, size_t n_init,
                   gg_err *err) {
    *out = NULL;
    const gg_model_config *c = &m->cfg;
    if (cfg->max_tokens < 2) return gg_errf(err, "a micro-batch needs at least 2 tokens");
    if (!(cfg->dropout >= 0 && cfg->dropout < 1)) return gg_errf(err, "LoRA dropout %g is not in [0, 1)", cfg->dropout);
    gg_trainer *t = calloc(1, sizeof *t);
    if (!t) return gg_errf(err, "out of memory");
    t->m = m;
    t->be = m->be;
    t->cfg = *cfg;
    t->max_n = cfg->max_tokens;
    gg_backend *be = t->be;
    if (plan_modules(t, init, n_init, err)) goto fail;

    int failed = 0;
    size_t F = sizeof(float), N = (size_t)t->max_n, np = t->n_params;
    t->P = talloc(t, np * F, &failed, err);
    t->G = talloc(t, np * F, &failed, err);
    if (cfg->optim_8bit) {
        size_t nb = (np + GG_ADAM8_BLOCK - 1) / GG_ADAM8_BLOCK;
        t->M8 = talloc(t, np, &failed, err);
        t->V8 = talloc(t, np, &failed, err);
        t->M8s = talloc(t, nb * F, &failed, err);
        t->V8s = talloc(t, nb * F, &failed, err);
    } else {
        t->M = talloc(t, np * F, &failed, err);
        t->V = talloc(t, np * F, &failed, err);
    }
    t->sumsq = talloc(t, F, &failed, err);

    int64_t L = c->n_layers, H = c->hidden, QD = c->n_heads * c->head_dim, KVD = c->n_kv_heads * c->head_dim;
    t->xs = calloc((size_t)L + 1, sizeof *t->xs);
    t->n_acts = cfg->grad_ckpt ? 1 : (int)L;
    t->A = calloc((size_t)t->n_acts, sizeof *t->A);
    if (!t->xs || !t->A) {
        gg_errf(err, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i <= L; i++) t->xs[i] = talloc(t, N * (size_t)H * F, &failed, err);
    for (int i = 0; i < t->n_acts; i++) {
        acts *a = &t->A[i];
        a->q = talloc(t, N * (size_t)QD * F, &failed, err);
        a->k = talloc(t, N * (size_t)KVD * F, &failed, err);
        a->v = talloc(t, N * (size_t)KVD * F, &failed, err);
        a->att = talloc(t, N * (size_t)QD * F, &failed, err);
        a->lse = talloc(t, N * (size_t)c->n_heads * F, &failed, err);
        if (!c->parallel_attn) a->x_mid = talloc(t, N * (size_t)H * F, &failed, err);
        a->gate = talloc(t, N * (size_t)c->ffn * F, &failed, err);
        a->up = talloc(t, N * (size_t)c->ffn * F, &failed, err);
    }
    t->h = talloc(t, N * (size_t)H * F, &failed, err);
    t->h2 = talloc(t, N * (size_t)H * F, &failed, err);
    t->dx = talloc(t, N * (size_t)H * F, &failed, err);
    t->dh = talloc(t, N * (size_t)H * F, &failed, err);
    t->dh2 = talloc(t, N * (size_t)H * F, &failed, err);
    t->a = talloc(t, N * (size_t)c->ffn * F, &failed, err);
    t->da = talloc(t, N * (size_t)c->ffn * F, &failed, err);
    t->dq = talloc(t, N * (size_t)QD * F, &failed, err);
    t->datt = talloc(t, N * (size_t)QD * F, &failed, err);
    t->dk = talloc(t, N * (size_t)KVD * F, &failed, err);
    t->dv = talloc(t, N * (size_t)KVD * F, &failed, err);
    t->lt = talloc(t, N * (size_t)t->max_r * F, &failed, err);
    t->ldt = talloc(t, N * (size_t)t->max_r * F, &failed, err);
    t->xd = talloc(t, N * (size_t)t->max_in * F, &failed, err);
    if (cfg->dropout > 0) t->xd2 = talloc(t, N * (size_t)t->max_in * F, &failed, err);
    t->logits = talloc(t, (size_t)CE_ROWS * (size_t)c->vocab * F, &failed, err);
    t->loss = talloc(t, N * F, &failed, err);
    t->ids = talloc(t, N * 4, &failed, err);
    t->pos = talloc(t, N * 4, &failed, err);
    t->negpos = talloc(t, N * 4, &failed, err);
    t->k_lo = talloc(t, N * 4, &failed, err);
    t->k_hi = talloc(t, N * 4, &failed, err);
    t->targets = talloc(t, N * 4, &failed, err);
    if (failed) {
        gg_err_prefix(err, "training buffers for %lld tokens per micro-batch", (long long)t->max_n);
        goto fail;
    }
    t->host_i32 = malloc(N * 4);
    t->host_loss = malloc(N * F);
    if (!t->host_i32 || !t->host_loss) {
        gg_errf(err, "out of memory");
        goto fail;
    }
    if (bind_views(t, err) || init_params(t, init, n_init, err)) goto fail;
    be->memset0(be, t->G, np * F);
    if (t->M) {
        be->memset0(be, t->M, np * F);
        be->memset0(be, t->V, np * F);
    } else {
        size_t nb = (np + GG_ADAM8_BLOCK - 1) / GG_ADAM8_BLOCK;
        be->memset0(be, t->M8, np);
        be->memset0(be, t->V8, np);
        be->memset0(be, t->M8s, nb * F);
        be->memset0(be, t->V8s, nb * F);
    }
    if (be->sync(be, err)) goto fail;
    *out = t;
    return 0;
fail:
    gg_trainer_free(t);
    return -1;
}

void gg_trainer_free(gg_trainer *t) {
    if (!t) return;
    gg_backend *be = t->be;
    void *bufs[] = {t->P, t->G, t->M, t->V, t->M8, t->V8, t->M8s, t->V8s, t->sumsq, t->h, t->h2, t->a, t->da,
                    t->dx, t->dh, t->dh2, t->dq, t->dk, t->dv, t->datt, t->lt, t->ldt, t->xd, t->xd2, t->logits,
                    t->loss, t->ids, t->pos, t->negpos, t->k_lo, t->k_hi, t->targets};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) be->free(be, bufs[i]);
    if (t->xs)
        for (int64_t i = 0; i <= t->m->cfg.n_layers; i++) be->free(be, t->xs[i]);
    if (t->A)
        for (int i = 0; i < t->n_acts; i++) {
            acts *a = &t->A[i];
            void *ab[] = {a->q, a->k, a->v, a->att, a->lse, a->x_mid, a->gate, a->up};
            for (size_t j = 0; j < sizeof ab / sizeof *ab; j++) be->free(be, ab[j]);
        }
    free(t->xs);
    free(t->A);
    free(t->lora.mods);
    free(t->grads.mods);
    free(t->mods);
    free(t->host_i32);
    free(t->host_loss);
    free(t);
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                    */

static uint64_t drop_seed(const gg_trainer *t, int64_t layer, gg_linear l) {
    uint64_t z = t->cfg.seed ^ (t->drop_key * 0x9E3779B97F4A7C15ull);
    return z + (uint64_t)(layer * GG_LIN_COUNT + l + 1) * 0xD1B54A32D192ED03ull;
}

static const gg_lora_bound *mod_of(const gg_lora *l, int64_t layer, gg_linear lin) {
    const gg_lora_bound *b = &l->mods[layer * GG_LIN_COUNT + lin];
    return b->a ? b : NULL;
}

/* The module's input: x, or x with the module's dropout mask (in t->xd). */
static const float *lora_input(gg_trainer *t, int64_t layer, gg_linear l, const float *x, int64_t n, int64_t in,
                               int train) {
    if (!train || t->cfg.dropout <= 0) return x;
    t->be->dropout(t->be, t->xd, x, n * in, t->cfg.dropout, drop_seed(t, layer, l));
    return t->xd;
}

/* y[n, out] = beta·y + x Wᵀ + bias + scale·(x' Aᵀ) Bᵀ. */
static void linear(gg_trainer *t, int64_t layer, gg_linear l, float *y, const float *x, int64_t n, float beta,
                   int train) {
    gg_backend *be = t->be;
    const gg_weight *w = &t->m->layers[layer].w[l];
    be->matmul(be, y, x, n, w, t->m->layers[layer].bias[l], beta);
    const gg_lora_bound *b = mod_of(&t->lora, layer, l);
    if (!b) return;
    const float *xi = lora_input(t, layer, l, x, n, w->cols, train);
    be->gemm(be, 0, 1, n, b->r, w->cols, 1.0f, xi, w->cols, b->a, w->cols, 0.0f, t->lt, b->r);
    be->gemm(be, 0, 1, n, w->rows, b->r, b->scale, t->lt, b->r, b->b, b->r, 1.0f, y, w->rows);
}

static void norm(gg_trainer *t, float *out, const float *x, const float *w, const float *b, int64_t n) {
    const gg_model_config *c = &t->m->cfg;
    if (c->norm == GG_MNORM_LAYER) t->be->layernorm(t->be, out, x, w, b, n, c->hidden, c->norm_eps);
    else t->be->rmsnorm(t->be, out, x, w, n, c->hidden, c->norm_eps, c->norm == GG_MNORM_RMS_1P);
}

static void norm_bwd(gg_trainer *t, float *dx, const float *dy, const float *x, const float *w, int64_t n) {
    const gg_model_config *c = &t->m->cfg;
    if (c->norm == GG_MNORM_LAYER) t->be->layernorm_bwd(t->be, dx, dy, x, w, n, c->hidden, c->norm_eps, 1.0f);
    else t->be->rmsnorm_bwd(t->be, dx, dy, x, w, n, c->hidden, c->norm_eps, c->norm == GG_MNORM_RMS_1P, 1.0f);
}

static gg_act glu_act(const gg_model_config *c) { return c->mlp == GG_MMLP_SWIGLU ? GG_ACT_SILU : GG_ACT_GELU_TANH; }

/* The MLP's input of block li (normed), into t->h2 unless it is t->h. */
static const float *mlp_input(gg_trainer *t, int64_t li, const float *x_in, const acts *A, int64_t n) {
    const gg_model_config *c = &t->m->cfg;
    const gg_layer *Ly = &t->m->layers[li];
    if (c->parallel_attn) {
        if (!Ly->mlp_norm_w) return t->h;
        norm(t, t->h2, x_in, Ly->mlp_norm_w, Ly->mlp_norm_b, n);
        return t->h2;
    }
    norm(t, t->h2, A->x_mid, Ly->mlp_norm_w, Ly->mlp_norm_b, n);
    return t->h2;
}

/* x_out = block(x_in), keeping what backward needs in A. Leaves the
 * attention input norm in t->h and the MLP input in t->h2 (or t->h). */
static void block_fwd(gg_trainer *t, int64_t li, const float *x_in, float *x_out, acts *A, int64_t n, int train) {
    gg_backend *be = t->be;
    const gg_model_config *c = &t->m->cfg;
    const gg_layer *Ly = &t->m->layers[li];
    int64_t H = c->hidden, QD = c->n_heads * c->head_dim, KVD = c->n_kv_heads * c->head_dim, nf = n * c->ffn;

    norm(t, t->h, x_in, Ly->attn_norm_w, Ly->attn_norm_b, n);
    linear(t, li, GG_LIN_Q, A->q, t->h, n, 0.0f, train);
    linear(t, li, GG_LIN_K, A->k, t->h, n, 0.0f, train);
    linear(t, li, GG_LIN_V, A->v, t->h, n, 0.0f, train);
    be->rope(be, A->q, n, QD, c->n_heads, c->head_dim, t->pos, t->m->inv_freq, 1.0f);
    be->rope(be, A->k, n, KVD, c->n_kv_heads, c->head_dim, t->pos, t->m->inv_freq, 1.0f);
    be->attention(be, A->att, A->q, A->k, A->v, n, n, KVD, c->n_heads, c->n_kv_heads, c->head_dim, t->k_lo, t->k_hi,
                  1.0f / sqrtf((float)c->head_dim), A->lse);

    const float *mlp_in = NULL;
    if (c->parallel_attn) mlp_in = mlp_input(t, li, x_in, A, n); /* from the block input, before x_out changes */
    be->copy(be, x_out, x_in, (size_t)(n * H) * sizeof(float));
    linear(t, li, GG_LIN_O, x_out, A->att, n, 1.0f, train);
    if (!c->parallel_attn) {
        be->copy(be, A->x_mid, x_out, (size_t)(n * H) * sizeof(float));
        mlp_in = mlp_input(t, li, x_in, A, n);
    }
    linear(t, li, GG_LIN_UP, A->up, mlp_in, n, 0.0f, train);
    if (c->mlp == GG_MMLP_GELU) {
        be->act(be, t->a, A->up, nf, GG_ACT_GELU);
    } else {
        linear(t, li, GG_LIN_GATE, A->gate, mlp_in, n, 0.0f, train);
        be->glu(be, t->a, A->gate, A->up, nf, glu_act(c));
    }
    linear(t, li, GG_LIN_DOWN, x_out, t->a, n, 1.0f, train);
}

static acts *acts_of(gg_trainer *t, int64_t li) { return t->n_acts == 1 ? &t->A[0] : &t->A[li]; }

/* Upload a micro-batch and check it. */
static int load_batch(gg_trainer *t, const int32_t *ids, const int32_t *pos, const int32_t *k_lo,
                      const int32_t *targets, int64_t n, int64_t *n_targets, gg_err *err) {
    const gg_model_config *c = &t->m->cfg;
    gg_backend *be = t->be;
    if (n < 1 || n > t->max_n)
        return gg_errf(err, "micro-batch of %lld tokens; this trainer takes 1..%lld", (long long)n,
                       (long long)t->max_n);
    int64_t nt = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return gg_errf(err, "token %lld of the batch: id %d is outside the vocabulary", (long long)i, ids[i]);
        if (targets[i] >= c->vocab)
            return gg_errf(err, "token %lld of the batch: target %d is outside the vocabulary", (long long)i,
                           targets[i]);
        if (k_lo[i] < 0 || k_lo[i] > i || pos[i] < 0 || pos[i] >= c->context_length)
            return gg_errf(err, "token %lld of the batch: bad segment start or position", (long long)i);
        nt += targets[i] >= 0;
    }
    *n_targets = nt;
    int32_t *hv = t->host_i32;
    be->upload(be, t->ids, ids, (size_t)n * 4);
    be->upload(be, t->pos, pos, (size_t)n * 4);
    be->upload(be, t->targets, targets, (size_t)n * 4);
    for (int64_t i = 0; i < n; i++) hv[i] = -pos[i];
    be->upload(be, t->negpos, hv, (size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        int64_t lo = k_lo[i];
        if (c->sliding_window && i - c->sliding_window + 1 > lo) lo = i - c->sliding_window + 1;
        hv[i] = (int32_t)lo;
    }
    be->upload(be, t->k_lo, hv, (size_t)n * 4);
    for (int64_t i = 0; i < n; i++) hv[i] = (int32_t)i;
    be->upload(be, t->k_hi, hv, (size_t)n * 4);
    return 0;
}

/* Embedding and every block; xs[L] holds the final hidden state. */
static void forward(gg_trainer *t, int64_t n, int train) {
    gg_backend *be = t->be;
    const gg_model_config *c = &t->m->cfg;
    be->embed(be, t->xs[0], &t->m->embed, t->ids, n, c->embed_scale);
    for (int64_t li = 0; li < c->n_layers; li++) block_fwd(t, li, t->xs[li], t->xs[li + 1], acts_of(t, li), n, train);
}

/* Final norm, LM head and cross-entropy in chunks of rows; with grad, the
 * gradient of the final hidden state goes to t->dx. Returns Σ loss. */
static int head_loss(gg_trainer *t, int64_t n, const int32_t *targets, float grad_scale, int grad, double *loss_sum,
                     gg_err *err) {
    gg_backend *be = t->be;
    const gg_model_config *c = &t->m->cfg;
    int64_t H = c->hidden;
    const float *xf = t->xs[c->n_layers];
    norm(t, t->h, xf, t->m->final_norm_w, t->m->final_norm_b, n);
    if (grad) be->memset0(be, t->dh, (size_t)(n * H) * sizeof(float));
    be->memset0(be, t->loss, (size_t)n * sizeof(float));
    for (int64_t r = 0; r < n; r += CE_ROWS) {
        int64_t cnt = n - r < CE_ROWS ? n - r : CE_ROWS, any = 0;
        for (int64_t i = r; i < r + cnt; i++) any |= targets[i] >= 0;
        if (!any) continue;
        be->matmul(be, t->logits, t->h + r * H, cnt, t->m->lm_head, NULL, 0.0f);
        be->cross_entropy(be, t->loss + r, t->logits, t->targets + r, cnt, c->vocab, grad_scale);
        if (grad) be->matmul_dx(be, t->dh + r * H, t->logits, cnt, t->m->lm_head, 0.0f);
    }
    be->download(be, t->host_loss, t->loss, (size_t)n * sizeof(float));
    if (be->sync(be, err)) return -1;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += t->host_loss[i];
    *loss_sum = s;
    if (grad) {
        be->memset0(be, t->dx, (size_t)(n * H) * sizeof(float));
        norm_bwd(t, t->dx, t->dh, xf, t->m->final_norm_w, n);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                   */

/* dx = beta·dx + dy·W + the LoRA module's input gradient; the module's
 * gradients accumulate: dB += s·dyᵀ·t, dA += s·(dy·B)ᵀ·x', t = x'·Aᵀ. */
static void linear_bwd(gg_trainer *t, int64_t layer, gg_linear l, float *dx, const float *dy, const float *x,
                       int64_t n, float beta) {
    gg_backend *be = t->be;
    const gg_weight *w = &t->m->layers[layer].w[l];
    be->matmul_dx(be, dx, dy, n, w, beta);
    const gg_lora_bound *b = mod_of(&t->lora, layer, l), *g = mod_of(&t->grads, layer, l);
    if (!b) return;
    int64_t in = w->cols, out = w->rows, r = b->r;
    const float *xi = lora_input(t, layer, l, x, n, in, 1);
    be->gemm(be, 0, 1, n, r, in, 1.0f, xi, in, b->a, in, 0.0f, t->lt, r);         /* t = x' Aᵀ   */
    be->gemm(be, 1, 0, out, r, n, b->scale, dy, out, t->lt, r, 1.0f, g->b, r);     /* dB += s dyᵀ t */
    be->gemm(be, 0, 0, n, r, out, b->scale, dy, out, b->b, r, 0.0f, t->ldt, r);    /* dt = s dy B */
    be->gemm(be, 1, 0, r, in, n, 1.0f, t->ldt, r, xi, in, 1.0f, g->a, in);         /* dA += dtᵀ x' */
    if (t->cfg.dropout > 0) {
        be->gemm(be, 0, 0, n, in, r, 1.0f, t->ldt, r, b->a, in, 0.0f, t->xd2, in);
        be->dropout(be, t->xd2, t->xd2, n * in, t->cfg.dropout, drop_seed(t, layer, l));
        be->add(be, dx, dx, t->xd2, n * in);
    } else {
        be->gemm(be, 0, 0, n, in, r, 1.0f, t->ldt, r, b->a, in, 1.0f, dx, in);     /* dx += dt A */
    }
}

/* The MLP's backward: from dy (gradient of the block output) to the
 * gradient of the MLP input, written (beta) into dmlp. */
static void mlp_bwd(gg_trainer *t, int64_t li, const float *dy, const float *mlp_in, acts *A, float *dmlp, float beta,
                    int64_t n) {
    gg_backend *be = t->be;
    const gg_model_config *c = &t->m->cfg;
    int64_t nf = n * c->ffn;
    if (c->mlp == GG_MMLP_GELU) be->act(be, t->a, A->up, nf, GG_ACT_GELU);
    else be->glu(be, t->a, A->gate, A->up, nf, glu_act(c));
    linear_bwd(t, li, GG_LIN_DOWN, t->da, dy, t->a, n, 0.0f);
    if (c->mlp == GG_MMLP_GELU) {
        be->act_bwd(be, t->da, t->da, A->up, nf, GG_ACT_GELU);
        linear_bwd(t, li, GG_LIN_UP, dmlp, t->da, mlp_in, n, beta);
    } else {
        be->glu_bwd(be, A->gate, A->up, t->da, A->gate, A->up, nf, glu_act(c));
        linear_bwd(t, li, GG_LIN_UP, dmlp, A->up, mlp_in, n, beta);
        linear_bwd(t, li, GG_LIN_GATE, dmlp, A->gate, mlp_in, n, 1.0f);
    }
}

/* The attention's backward from datt (the gradient of its output A->att)
 * to the gradient of the normed block input t->h, written (beta) into dh. */
static void attn_bwd(gg_trainer *t, int64_t li, const float *datt, acts *A, float *dh, float beta, int64_t n) {
    gg_backend *be = t->be;
    const gg_model_config *c = &t->m->cfg;
    int64_t QD = c->n_heads * c->head_dim, KVD = c->n_kv_heads * c->head_dim;
    be->attention_bwd(be, t->dq, t->dk, t->dv, datt, A->q, A->k, A->v, A->att, A->lse, n, n, KVD, c->n_heads,
                      c->n_kv_heads, c->head_dim, t->k_lo, t->k_hi, 1.0f / sqrtf((float)c->head_dim));
    /* RoPE is a rotation by pos·θ: its transpose rotates by −pos·θ. */
    be->rope(be, t->dq, n, QD, c->n_heads, c->head_dim, t->negpos, t->m->inv_freq, 1.0f);
    be->rope(be, t->dk, n, KVD, c->n_kv_heads, c->head_dim, t->negpos, t->m->inv_freq, 1.0f);
    linear_bwd(t, li, GG_LIN_Q, dh, t->dq, t->h, n, beta);
    linear_bwd(t, li, GG_LIN_K, dh, t->dk, t->h, n, 1.0f);
    linear_bwd(t, li, GG_LIN_V, dh, t->dv, t->h, n, 1.0f);
}

/* t->dx holds d loss / d (block output); make it d loss / d (block input). */
static void block_bwd(gg_trainer *t, int64_t li, int64_t n) {
    const gg_model_config *c = &t->m->cfg;
    const gg_layer *Ly = &t->m->layers[li];
    const float *x_in = t->xs[li];
    acts *A = acts_of(t, li);
    if (t->n_acts == 1) block_fwd(t, li, x_in, t->xs[li + 1], A, n, 1); /* recompute (xs[li+1] is spent) */
    else {
        norm(t, t->h, x_in, Ly->attn_norm_w, Ly->attn_norm_b, n);
        if (!c->parallel_attn || Ly->mlp_norm_w) (void)mlp_input(t, li, x_in, A, n);
    }
    const float *mlp_in = c->parallel_attn && !Ly->mlp_norm_w ? t->h : t->h2;

    if (!c->parallel_attn) {
        mlp_bwd(t, li, t->dx, mlp_in, A, t->dh2, 0.0f, n);
        norm_bwd(t, t->dx, t->dh2, A->x_mid, Ly->mlp_norm_w, n);
        linear_bwd(t, li, GG_LIN_O, t->datt, t->dx, A->att, n, 0.0f);
        attn_bwd(t, li, t->datt, A, t->dh, 0.0f, n);
        norm_bwd(t, t->dx, t->dh, x_in, Ly->attn_norm_w, n);
        return;
    }
    /* parallel: both branches read the same output gradient */
    linear_bwd(t, li, GG_LIN_O, t->datt, t->dx, A->att, n, 0.0f);
    if (Ly->mlp_norm_w) {
        mlp_bwd(t, li, t->dx, mlp_in, A, t->dh2, 0.0f, n);
        attn_bwd(t, li, t->datt, A, t->dh, 0.0f, n);
        norm_bwd(t, t->dx, t->dh2, x_in, Ly->mlp_norm_w, n);
    } else {
        mlp_bwd(t, li, t->dx, mlp_in, A, t->dh, 0.0f, n);
        attn_bwd(t, li, t->datt, A, t->dh, 1.0f, n);
    }
    norm_bwd(t, t->dx, t->dh, x_in, Ly->attn_norm_w, n);
}

/* ------------------------------------------------------------------------ */
/* Public steps                                                               */

int gg_trainer_micro(gg_trainer *t, const int32_t *ids, const int32_t *pos, const int32_t *k_lo,
                     const int32_t *targets, int64_t n, float grad_scale, uint64_t dropout_key, double *loss_sum,
                     int64_t *n_targets, gg_err *err) {
    if (load_batch(t, ids, pos, k_lo, targets, n, n_targets, err)) return -1;
    t->drop_key = dropout_key;
    forward(t, n, 1);
    if (head_loss(t, n, targets, grad_scale, 1, loss_sum, err)) return -1;
    for (int64_t li = t->m->cfg.n_layers - 1; li >= 0; li--) block_bwd(t, li, n);
    return t->be->sync(t->be, err);
}

int gg_trainer_eval(gg_trainer *t, const int32_t *ids, const int32_t *pos, const int32_t *k_lo,
                    const int32_t *targets, int64_t n, double *loss_sum, int64_t *n_targets, gg_err *err) {
    if (load_batch(t, ids, pos, k_lo, targets, n, n_targets, err)) return -1;
    forward(t, n, 0);
    return head_loss(t, n, targets, 0.0f, 0, loss_sum, err);
}

int gg_trainer_grad_norm(gg_trainer *t, double *norm_out, gg_err *err) {
    float s = 0;
    t->be->sumsq(t->be, t->sumsq, t->G, (int64_t)t->n_params);
    t->be->download(t->be, &s, t->sumsq, sizeof s);
    if (t->be->sync(t->be, err)) return -1;
    *norm_out = sqrt((double)s);
    return 0;
}

int gg_trainer_step(gg_trainer *t, const gg_adamw_hp *hp_in, gg_err *err) {
    gg_adamw_hp hp = *hp_in;
    if (hp.step <= 0) hp.step = t->steps + 1;
    gg_backend *be = t->be;
    if (t->M) be->adamw(be, t->P, t->G, t->M, t->V, (int64_t)t->n_params, &hp);
    else be->adamw8bit(be, t->P, t->G, t->M8, t->V8, t->M8s, t->V8s, (int64_t)t->n_params, &hp);
    be->memset0(be, t->G, t->n_params * sizeof(float));
    t->steps = hp.step;
    return be->sync(be, err);
}

int64_t gg_trainer_steps_done(const gg_trainer *t) { return t->steps; }

float *gg_trainer_grad_data(gg_trainer *t, size_t *n) {
    *n = t->n_params;
    return t->G;
}
gg_lora *gg_trainer_lora(gg_trainer *t) { return &t->lora; }

void gg_trainer_lora_info(const gg_trainer *t, int64_t *r, double *alpha, int *rslora, unsigned *targets) {
    unsigned tg = 0;
    for (size_t i = 0; i < t->n_mods; i++) tg |= 1u << t->mods[i].target;
    *r = t->mods[0].r;
    *rslora = t->cfg.rslora;
    /* alpha from the first module's scale (init adapters keep their own) */
    *alpha = t->cfg.rslora ? t->mods[0].scale * sqrt((double)t->mods[0].r) : t->mods[0].scale * (double)t->mods[0].r;
    *targets = tg;
}

int gg_trainer_modules(gg_trainer *t, int grads, gg_lora_module **mods_out, size_t *n_out, gg_err *err) {
    *mods_out = NULL;
    *n_out = 0;
    /* one block: the module array, then the floats */
    size_t head = (t->n_mods * sizeof(gg_lora_module) + 63) & ~(size_t)63;
    char *blk = malloc(head + t->n_params * sizeof(float));
    if (!blk) return gg_errf(err, "out of memory");
    gg_lora_module *mods = (gg_lora_module *)blk;
    float *data = (float *)(blk + head);
    t->be->download(t->be, data, grads ? t->G : t->P, t->n_params * sizeof(float));
    if (t->be->sync(t->be, err)) {
        free(blk);
        return -1;
    }
    for (size_t i = 0; i < t->n_mods; i++) {
        const tmod *md = &t->mods[i];
        mods[i] = (gg_lora_module){.layer = md->layer, .target = md->target, .r = md->r,
                                   .a = data + md->off_a, .b = data + md->off_b, .scale = md->scale};
    }
    *mods_out = mods;
    *n_out = t->n_mods;
    return 0;
}

void gg_trainer_modules_free(gg_lora_module *mods) { free(mods); }

/* ------------------------------------------------------------------------ */
/* Checkpoint state                                                           */

size_t gg_trainer_state(const gg_trainer *t, gg_trainer_blob *blobs, size_t cap) {
    size_t np = t->n_params, nb = (np + GG_ADAM8_BLOCK - 1) / GG_ADAM8_BLOCK, k = 0;
    gg_trainer_blob all[5];
    all[k++] = (gg_trainer_blob){"params", np * 4};
    if (t->M) {
        all[k++] = (gg_trainer_blob){"adam.m", np * 4};
        all[k++] = (gg_trainer_blob){"adam.v", np * 4};
    } else {
        all[k++] = (gg_trainer_blob){"adam8.m", np};
        all[k++] = (gg_trainer_blob){"adam8.v", np};
        all[k++] = (gg_trainer_blob){"adam8.m_absmax", nb * 4};
        all[k++] = (gg_trainer_blob){"adam8.v_absmax", nb * 4};
    }
    for (size_t i = 0; i < k && i < cap; i++) blobs[i] = all[i];
    return k;
}

static void *state_ptr(gg_trainer *t, size_t i) {
    void *p8[] = {t->P, t->M8, t->V8, t->M8s, t->V8s}, *p32[] = {t->P, t->M, t->V};
    if (t->M) return i < 3 ? p32[i] : NULL;
    return i < 5 ? p8[i] : NULL;
}

int gg_trainer_state_get(gg_trainer *t, size_t i, void *host, gg_err *err) {
    gg_trainer_blob b[5];
    size_t k = gg_trainer_state(t, b, 5);
    if (i >= k) return gg_errf(err, "no trainer state blob %zu", i);
    t->be->download(t->be, host, state_ptr(t, i), b[i].bytes);
    return t->be->sync(t->be, err);
}

int gg_trainer_state_set(gg_trainer *t, size_t i, const void *host, int64_t steps_done, gg_err *err) {
    gg_trainer_blob b[5];
    size_t k = gg_trainer_state(t, b, 5);
    if (i >= k) return gg_errf(err, "no trainer state blob %zu", i);
    t->be->upload(t->be, state_ptr(t, i), host, b[i].bytes);
    t->steps = steps_done;
    return t->be->sync(t->be, err);
}

/* ------------------------------------------------------------------------ */
/* Schedules                                                                  */

double gg_lr_at(gg_lr_schedule k, double base_lr, int64_t s, int64_t total, int64_t warmup) {
    if (s < warmup) return base_lr * (double)s / (double)(warmup > 1 ? warmup : 1);
    double span = (double)(total - warmup > 1 ? total - warmup : 1), done = (double)(s - warmup) / span;
    switch (k) {
    case GG_SCHED_LINEAR: return base_lr * fmax(0.0, 1.0 - done);
    case GG_SCHED_COSINE: return base_lr * fmax(0.0, 0.5 * (1.0 + cos(M_PI * done)));
    default: return base_lr;
    }
}
