/* decoder.c — the forward pass of the canonical decoder over a KV cache
 * (sessions in model.h): embedding, per block norm → attention (RoPE, GQA,
 * sliding window) → MLP, sequential or parallel residuals, final norm, LM
 * head; LoRA adapters added unmerged to every adapted linear layer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_internal.h"

#define MAX_ADAPTERS 16
#define LOGIT_ROWS 16 /* LM-head rows computed at once when every position's logits are wanted */

struct gg_session {
    gg_model *m;
    gg_backend *be;
    int64_t n_ctx, max_batch, pos;
    float **kc, **vc; /* per layer [n_ctx, kv_dim] */
    float *x, *h, *h2, *q, *att, *gate, *up, *lora_t, *logits;
    int32_t *ids, *posv, *k_lo, *k_hi; /* [max_batch] */
    int32_t *host_i32;                 /* [max_batch] staging */
    int64_t lora_cap;                  /* rows×r floats lora_t holds */
    gg_lora *ad[MAX_ADAPTERS];
    float ad_scale[MAX_ADAPTERS];
    size_t n_ad;
};

static void *balloc(gg_session *s, size_t bytes, int *failed, gg_err *err) {
    if (*failed) return NULL;
    void *p = s->be->alloc(s->be, bytes ? bytes : 4, err);
    if (!p) *failed = 1;
    return p;
}

int gg_session_new(gg_session **out, gg_model *m, int64_t n_ctx, int64_t max_batch, gg_err *err) {
    *out = NULL;
    const gg_model_config *c = &m->cfg;
    if (n_ctx < 1 || n_ctx > c->context_length)
        return gg_errf(err, "context of %lld tokens requested; the model allows 1..%lld", (long long)n_ctx,
                       (long long)c->context_length);
    if (max_batch < 1) max_batch = 1;
    if (max_batch > n_ctx) max_batch = n_ctx;
    gg_session *s = calloc(1, sizeof *s);
    if (!s) return gg_errf(err, "out of memory");
    s->m = m;
    s->be = m->be;
    s->n_ctx = n_ctx;
    s->max_batch = max_batch;
    s->kc = calloc((size_t)c->n_layers, sizeof *s->kc);
    s->vc = calloc((size_t)c->n_layers, sizeof *s->vc);
    s->host_i32 = calloc((size_t)max_batch, sizeof *s->host_i32);
    if (!s->kc || !s->vc || !s->host_i32) {
        gg_session_free(s);
        return gg_errf(err, "out of memory");
    }
    int failed = 0;
    size_t B = (size_t)max_batch, F = sizeof(float);
    size_t kvd = (size_t)(c->n_kv_heads * c->head_dim), qd = (size_t)(c->n_heads * c->head_dim);
    for (int64_t i = 0; i < c->n_layers; i++) {
        s->kc[i] = balloc(s, (size_t)n_ctx * kvd * F, &failed, err);
        s->vc[i] = balloc(s, (size_t)n_ctx * kvd * F, &failed, err);
    }
    s->x = balloc(s, B * (size_t)c->hidden * F, &failed, err);
    s->h = balloc(s, B * (size_t)c->hidden * F, &failed, err);
    s->h2 = balloc(s, B * (size_t)c->hidden * F, &failed, err);
    s->q = balloc(s, B * qd * F, &failed, err);
    s->att = balloc(s, B * qd * F, &failed, err);
    s->gate = balloc(s, B * (size_t)c->ffn * F, &failed, err);
    s->up = balloc(s, B * (size_t)c->ffn * F, &failed, err);
    s->logits = balloc(s, (B < LOGIT_ROWS ? B : LOGIT_ROWS) * (size_t)c->vocab * F, &failed, err);
    s->ids = balloc(s, B * 4, &failed, err);
    s->posv = balloc(s, B * 4, &failed, err);
    s->k_lo = balloc(s, B * 4, &failed, err);
    s->k_hi = balloc(s, B * 4, &failed, err);
    if (failed) {
        gg_session_free(s);
        return gg_err_prefix(err, "KV cache of %lld tokens", (long long)n_ctx);
    }
    *out = s;
    return 0;
}

void gg_session_free(gg_session *s) {
    if (!s) return;
    gg_backend *be = s->be;
    for (int64_t i = 0; i < s->m->cfg.n_layers; i++) {
        if (s->kc) be->free(be, s->kc[i]);
        if (s->vc) be->free(be, s->vc[i]);
    }
    float *bufs[] = {s->x, s->h, s->h2, s->q, s->att, s->gate, s->up, s->lora_t, s->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) be->free(be, bufs[i]);
    int32_t *ibufs[] = {s->ids, s->posv, s->k_lo, s->k_hi};
    for (size_t i = 0; i < 4; i++) be->free(be, ibufs[i]);
    free(s->kc);
    free(s->vc);
    free(s->host_i32);
    free(s);
}

int gg_session_set_adapters(gg_session *s, gg_lora *const *l, const float *scales, size_t n, gg_err *err) {
    if (n > MAX_ADAPTERS) return gg_errf(err, "at most %d adapters at once (got %zu)", MAX_ADAPTERS, n);
    int64_t max_r = 0;
    for (size_t i = 0; i < n; i++) {
        if (l[i]->n_layers != s->m->cfg.n_layers) return gg_errf(err, "adapter %zu was made for another model", i);
        if (!isfinite(scales[i])) return gg_errf(err, "adapter %zu: scale is not finite", i);
        if (l[i]->max_r > max_r) max_r = l[i]->max_r;
    }
    int64_t need = s->max_batch * max_r;
    if (need > s->lora_cap) {
        float *t = s->be->alloc(s->be, (size_t)need * sizeof(float), err);
        if (!t) return -1;
        s->be->free(s->be, s->lora_t);
        s->lora_t = t;
        s->lora_cap = need;
    }
    for (size_t i = 0; i < n; i++) {
        s->ad[i] = l[i];
        s->ad_scale[i] = scales[i];
    }
    s->n_ad = n;
    return 0;
}

int64_t gg_session_pos(const gg_session *s) { return s->pos; }

void gg_session_truncate(gg_session *s, int64_t n_keep) {
    if (n_keep < 0) n_keep = 0;
    if (n_keep < s->pos) s->pos = n_keep;
}

/* y[n, rows] = beta·y + x Wᵀ + bias + Σ adapters scale·(x Aᵀ) Bᵀ. */
static void linear(gg_session *s, int64_t layer, gg_linear l, float *y, const float *x, int64_t n, float beta) {
    gg_backend *be = s->be;
    const gg_weight *w = &s->m->layers[layer].w[l];
    be->matmul(be, y, x, n, w, s->m->layers[layer].bias[l], beta);
    for (size_t i = 0; i < s->n_ad; i++) {
        const gg_lora_bound *b = &s->ad[i]->mods[layer * GG_LIN_COUNT + l];
        if (!b->a) continue;
        be->gemm(be, 0, 1, n, b->r, w->cols, 1.0f, x, w->cols, b->a, w->cols, 0.0f, s->lora_t, b->r);
        be->gemm(be, 0, 1, n, w->rows, b->r, b->scale * s->ad_scale[i], s->lora_t, b->r, b->b, b->r, 1.0f, y,
                 w->rows);
    }
}

static void norm(gg_session *s, float *out, const float *x, const float *w, const float *b, int64_t n) {
    const gg_model_config *c = &s->m->cfg;
    if (c->norm == GG_MNORM_LAYER) s->be->layernorm(s->be, out, x, w, b, n, c->hidden, c->norm_eps);
    else s->be->rmsnorm(s->be, out, x, w, n, c->hidden, c->norm_eps, c->norm == GG_MNORM_RMS_1P);
}

/* One block on n tokens at cache slots [s->pos, s->pos + n): x += block(x). */
static void block(gg_session *s, int64_t li, int64_t n) {
    gg_backend *be = s->be;
    const gg_model_config *c = &s->m->cfg;
    const gg_layer *L = &s->m->layers[li];
    int64_t kvd = c->n_kv_heads * c->head_dim;
    float *kc = s->kc[li] + s->pos * kvd, *vc = s->vc[li] + s->pos * kvd;

    norm(s, s->h, s->x, L->attn_norm_w, L->attn_norm_b, n);
    /* The MLP's input: its own norm of the block input (sequential blocks
     * norm after the attention residual, below), or the attention's. */
    const float *mlp_in = s->h;
    if (c->parallel_attn && L->mlp_norm_w) {
        norm(s, s->h2, s->x, L->mlp_norm_w, L->mlp_norm_b, n);
        mlp_in = s->h2;
    }

    linear(s, li, GG_LIN_Q, s->q, s->h, n, 0.0f);
    linear(s, li, GG_LIN_K, kc, s->h, n, 0.0f);
    linear(s, li, GG_LIN_V, vc, s->h, n, 0.0f);
    be->rope(be, s->q, n, c->n_heads * c->head_dim, c->n_heads, c->head_dim, s->posv, s->m->inv_freq, 1.0f);
    be->rope(be, kc, n, kvd, c->n_kv_heads, c->head_dim, s->posv, s->m->inv_freq, 1.0f);
    be->attention(be, s->att, s->q, s->kc[li], s->vc[li], n, s->pos + n, kvd, c->n_heads, c->n_kv_heads,
                  c->head_dim, s->k_lo, s->k_hi, 1.0f / sqrtf((float)c->head_dim), NULL);

    /* Parallel blocks (x + attn(h) + mlp(h')) normed the MLP input from the
     * block input above, so x may take the attention output now. */
    linear(s, li, GG_LIN_O, s->x, s->att, n, 1.0f);
    if (!c->parallel_attn) {
        norm(s, s->h2, s->x, L->mlp_norm_w, L->mlp_norm_b, n);
        mlp_in = s->h2;
    }
    int64_t nf = n * c->ffn;
    linear(s, li, GG_LIN_UP, s->up, mlp_in, n, 0.0f);
    if (c->mlp == GG_MMLP_GELU) {
        be->act(be, s->up, s->up, nf, GG_ACT_GELU);
    } else {
        linear(s, li, GG_LIN_GATE, s->gate, mlp_in, n, 0.0f);
        be->glu(be, s->up, s->gate, s->up, nf, c->mlp == GG_MMLP_SWIGLU ? GG_ACT_SILU : GG_ACT_GELU_TANH);
    }
    linear(s, li, GG_LIN_DOWN, s->x, s->up, n, 1.0f);
}

/* Run n <= max_batch tokens; logits as in gg_session_eval. */
static void forward(gg_session *s, const int32_t *ids, int64_t n, float *logits, int all_logits) {
    gg_backend *be = s->be;
    const gg_model_config *c = &s->m->cfg;
    int32_t *hv = s->host_i32;
    be->upload(be, s->ids, ids, (size_t)n * 4);
    for (int64_t i = 0; i < n; i++) hv[i] = (int32_t)(s->pos + i);
    be->upload(be, s->posv, hv, (size_t)n * 4);
    be->upload(be, s->k_hi, hv, (size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        int64_t lo = c->sliding_window ? s->pos + i - c->sliding_window + 1 : 0;
        hv[i] = (int32_t)(lo > 0 ? lo : 0);
    }
    be->upload(be, s->k_lo, hv, (size_t)n * 4);

    be->embed(be, s->x, &s->m->embed, s->ids, n, c->embed_scale);
    for (int64_t li = 0; li < c->n_layers; li++) block(s, li, n);
    s->pos += n;
    if (!logits) return;

    int64_t first = all_logits ? 0 : n - 1;
    norm(s, s->h + first * c->hidden, s->x + first * c->hidden, s->m->final_norm_w, s->m->final_norm_b, n - first);
    int64_t rows = s->max_batch < LOGIT_ROWS ? s->max_batch : LOGIT_ROWS;
    for (int64_t r = first; r < n; r += rows) {
        int64_t cnt = n - r < rows ? n - r : rows;
        be->matmul(be, s->logits, s->h + r * c->hidden, cnt, s->m->lm_head, NULL, 0.0f);
        be->download(be, logits + (r - first) * c->vocab, s->logits, (size_t)(cnt * c->vocab) * sizeof(float));
    }
}

int gg_session_eval(gg_session *s, const int32_t *ids, int64_t n, float *logits, int all_logits, gg_err *err) {
    const gg_model_config *c = &s->m->cfg;
    if (n < 1) return gg_errf(err, "no tokens to evaluate");
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return gg_errf(err, "token id %d at position %lld is outside the vocabulary (0..%lld)", ids[i],
                           (long long)(s->pos + i), (long long)c->vocab - 1);
    if (s->pos + n > s->n_ctx)
        return gg_errf(err, "%lld tokens after %lld exceed the context of %lld tokens", (long long)n,
                       (long long)s->pos, (long long)s->n_ctx);
    for (int64_t done = 0; done < n; done += s->max_batch) {
        int64_t cnt = n - done < s->max_batch ? n - done : s->max_batch;
        int last = done + cnt == n;
        float *out = NULL;
        if (logits && all_logits) out = logits + done * c->vocab;
        else if (logits && last) out = logits;
        forward(s, ids + done, cnt, out, all_logits);
    }
    return s->be->sync(s->be, err);
}
