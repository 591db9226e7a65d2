/* decoder.c — the forward pass of the canonical decoder over KV caches
 * (sessions and batches in model.h): embedding, per block norm → attention
 * (RoPE, GQA, sliding window) → MLP, sequential or parallel residuals, final
 * norm, LM head; LoRA adapters added unmerged to every adapted linear layer.
 *
 * One forward serves any number of sessions: their new tokens are the rows
 * of one activation matrix, ordered so that the sessions sharing an adapter
 * set are contiguous (one LoRA gemm pair per group); every linear layer is
 * one matmul over all rows; K/V rows go to each session's cache (straight
 * from the matmul when there is one session) and attention runs per
 * session over its own cache. gg_session_eval is that forward with one
 * session, on the session's own scratch batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_internal.h"

#define MAX_ADAPTERS 16
#define LOGIT_ROWS 16 /* LM-head rows computed at once */

struct gg_session {
    gg_model *m;
    gg_backend *be;
    int64_t n_ctx, max_batch, pos;
    float **kc, **vc; /* per layer [n_ctx, kv_dim] */
    gg_batch *own;    /* scratch of gg_session_eval: max_batch rows */
    gg_lora *ad[MAX_ADAPTERS];
    float ad_scale[MAX_ADAPTERS];
    size_t n_ad;
};

/* One session's rows in a forward (in row order). */
typedef struct bseq {
    gg_session *s;
    const int32_t *ids;
    int64_t n, off, pos; /* rows [off, off + n); the session's pos before */
    int all;             /* logits of every row */
    int64_t out;         /* first logits row of this session in the caller's layout */
} bseq;

/* Rows [lo, hi) whose sessions share the adapter set of session s. */
typedef struct bgroup {
    int64_t lo, hi;
    const gg_session *s;
} bgroup;

struct gg_batch {
    gg_model *m;
    gg_backend *be;
    int64_t cap, logit_rows, lora_cap; /* lora_cap: floats lora_t holds */
    float *x, *h, *h2, *q, *k, *v, *att, *gate, *up, *lora_t, *logits;
    int32_t *ids, *posv, *k_lo, *k_hi; /* backend [cap] */
    int32_t *host_i32;                 /* [cap] staging */
    bseq *seq;                         /* [cap] the plan of the current forward */
    bgroup *grp;                       /* [cap] */
    size_t *order;                     /* [cap] */
    size_t n_seq, n_grp;
};

static void *balloc(gg_backend *be, size_t bytes, int *failed, gg_err *err) {
    if (*failed) return NULL;
    void *p = be->alloc(be, bytes ? bytes : 4, err);
    if (!p) *failed = 1;
    return p;
}

int gg_batch_new(gg_batch **out, gg_model *m, int64_t max_tokens, gg_err *err) {
    *out = NULL;
    const gg_model_config *c = &m->cfg;
    if (max_tokens < 1 || max_tokens > (int64_t)1 << 24)
        return gg_errf(err, "batch of %lld tokens requested; expected 1..%lld", (long long)max_tokens,
                       (long long)1 << 24);
    gg_batch *b = calloc(1, sizeof *b);
    if (!b) return gg_errf(err, "out of memory");
    b->m = m;
    b->be = m->be;
    b->cap = max_tokens;
    b->logit_rows = max_tokens < LOGIT_ROWS ? max_tokens : LOGIT_ROWS;
    size_t B = (size_t)max_tokens, F = sizeof(float);
    b->host_i32 = calloc(B, sizeof *b->host_i32);
    b->seq = calloc(B, sizeof *b->seq);
    b->grp = calloc(B, sizeof *b->grp);
    b->order = calloc(B, sizeof *b->order);
    if (!b->host_i32 || !b->seq || !b->grp || !b->order) {
        gg_batch_free(b);
        return gg_errf(err, "out of memory");
    }
    int failed = 0;
    gg_backend *be = b->be;
    size_t qd = (size_t)(c->n_heads * c->head_dim);
    b->x = balloc(be, B * (size_t)c->hidden * F, &failed, err);
    b->h = balloc(be, B * (size_t)c->hidden * F, &failed, err);
    b->h2 = balloc(be, B * (size_t)c->hidden * F, &failed, err);
    b->q = balloc(be, B * qd * F, &failed, err);
    b->att = balloc(be, B * qd * F, &failed, err);
    b->gate = balloc(be, B * (size_t)c->ffn * F, &failed, err);
    b->up = balloc(be, B * (size_t)c->ffn * F, &failed, err);
    b->logits = balloc(be, (size_t)b->logit_rows * (size_t)c->vocab * F, &failed, err);
    b->ids = balloc(be, B * 4, &failed, err);
    b->posv = balloc(be, B * 4, &failed, err);
    b->k_lo = balloc(be, B * 4, &failed, err);
    b->k_hi = balloc(be, B * 4, &failed, err);
    if (failed) {
        gg_batch_free(b);
        return gg_err_prefix(err, "batch of %lld tokens", (long long)max_tokens);
    }
    *out = b;
    return 0;
}

void gg_batch_free(gg_batch *b) {
    if (!b) return;
    gg_backend *be = b->be;
    float *bufs[] = {b->x, b->h, b->h2, b->q, b->k, b->v, b->att, b->gate, b->up, b->lora_t, b->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) be->free(be, bufs[i]);
    int32_t *ibufs[] = {b->ids, b->posv, b->k_lo, b->k_hi};
    for (size_t i = 0; i < 4; i++) be->free(be, ibufs[i]);
    free(b->host_i32);
    free(b->seq);
    free(b->grp);
    free(b->order);
    free(b);
}

int64_t gg_batch_capacity(const gg_batch *b) { return b->cap; }

/* The K/V staging rows of a multi-session forward, made on first use (a
 * session's own batch never needs them). */
static int batch_kv(gg_batch *b, gg_err *err) {
    if (b->k) return 0;
    const gg_model_config *c = &b->m->cfg;
    size_t bytes = (size_t)b->cap * (size_t)(c->n_kv_heads * c->head_dim) * sizeof(float);
    int failed = 0;
    float *k = balloc(b->be, bytes, &failed, err), *v = balloc(b->be, bytes, &failed, err);
    if (failed) {
        b->be->free(b->be, k);
        return gg_err_prefix(err, "batch K/V rows");
    }
    b->k = k;
    b->v = v;
    return 0;
}

/* Room in lora_t for rows × max_r floats. */
static int batch_lora(gg_batch *b, int64_t need, gg_err *err) {
    if (need <= b->lora_cap) return 0;
    float *t = b->be->alloc(b->be, (size_t)need * sizeof(float), err);
    if (!t) return gg_err_prefix(err, "LoRA scratch");
    b->be->free(b->be, b->lora_t);
    b->lora_t = t;
    b->lora_cap = need;
    return 0;
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
    if (!s->kc || !s->vc) {
        gg_session_free(s);
        return gg_errf(err, "out of memory");
    }
    int failed = 0;
    size_t kvd = (size_t)(c->n_kv_heads * c->head_dim);
    for (int64_t i = 0; i < c->n_layers; i++) {
        s->kc[i] = balloc(s->be, (size_t)n_ctx * kvd * sizeof(float), &failed, err);
        s->vc[i] = balloc(s->be, (size_t)n_ctx * kvd * sizeof(float), &failed, err);
    }
    if (failed || gg_batch_new(&s->own, m, max_batch, err)) {
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
    gg_batch_free(s->own);
    free(s->kc);
    free(s->vc);
    free(s);
}

static int64_t adapters_max_r(const gg_session *s) {
    int64_t r = 0;
    for (size_t i = 0; i < s->n_ad; i++)
        if (s->ad[i]->max_r > r) r = s->ad[i]->max_r;
    return r;
}

int gg_session_set_adapters(gg_session *s, gg_lora *const *l, const float *scales, size_t n, gg_err *err) {
    if (n > MAX_ADAPTERS) return gg_errf(err, "at most %d adapters at once (got %zu)", MAX_ADAPTERS, n);
    int64_t max_r = 0;
    for (size_t i = 0; i < n; i++) {
        if (l[i]->n_layers != s->m->cfg.n_layers || l[i]->be != s->be)
            return gg_errf(err, "adapter %zu was made for another model", i);
        if (!isfinite(scales[i])) return gg_errf(err, "adapter %zu: scale is not finite", i);
        if (l[i]->max_r > max_r) max_r = l[i]->max_r;
    }
    if (batch_lora(s->own, s->max_batch * max_r, err)) return -1;
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

static int same_adapters(const gg_session *a, const gg_session *b) {
    if (a->n_ad != b->n_ad) return 0;
    for (size_t i = 0; i < a->n_ad; i++)
        if (a->ad[i] != b->ad[i] || a->ad_scale[i] != b->ad_scale[i]) return 0;
    return 1;
}

/* ---- the forward over b->seq[0 .. n_seq) ---- */

/* y[n, rows] = beta·y + x Wᵀ + bias over every row, then each group's
 * adapters on its rows: scale·(x Aᵀ) Bᵀ. */
static void linear(gg_batch *b, int64_t layer, gg_linear l, float *y, const float *x, int64_t n, float beta) {
    gg_backend *be = b->be;
    const gg_weight *w = &b->m->layers[layer].w[l];
    be->matmul(be, y, x, n, w, b->m->layers[layer].bias[l], beta);
    for (size_t g = 0; g < b->n_grp; g++) {
        const gg_session *s = b->grp[g].s;
        int64_t lo = b->grp[g].lo, rows = b->grp[g].hi - lo;
        for (size_t i = 0; i < s->n_ad; i++) {
            const gg_lora_bound *lb = &s->ad[i]->mods[layer * GG_LIN_COUNT + l];
            if (!lb->a) continue;
            be->gemm(be, 0, 1, rows, lb->r, w->cols, 1.0f, x + lo * w->cols, w->cols, lb->a, w->cols, 0.0f,
                     b->lora_t, lb->r);
            be->gemm(be, 0, 1, rows, w->rows, lb->r, lb->scale * s->ad_scale[i], b->lora_t, lb->r, lb->b, lb->r,
                     1.0f, y + lo * w->rows, w->rows);
        }
    }
}

static void norm(gg_batch *b, float *out, const float *x, const float *w, const float *bias, int64_t n) {
    const gg_model_config *c = &b->m->cfg;
    if (c->norm == GG_MNORM_LAYER) b->be->layernorm(b->be, out, x, w, bias, n, c->hidden, c->norm_eps);
    else b->be->rmsnorm(b->be, out, x, w, n, c->hidden, c->norm_eps, c->norm == GG_MNORM_RMS_1P);
}

/* One block on all n rows: x += block(x). */
static void block(gg_batch *b, int64_t li, int64_t n) {
    gg_backend *be = b->be;
    const gg_model_config *c = &b->m->cfg;
    const gg_layer *L = &b->m->layers[li];
    int64_t kvd = c->n_kv_heads * c->head_dim, qd = c->n_heads * c->head_dim;
    /* One session: K/V straight into its cache; else staged, then copied. */
    int direct = b->n_seq == 1;
    float *kd = direct ? b->seq[0].s->kc[li] + b->seq[0].pos * kvd : b->k;
    float *vd = direct ? b->seq[0].s->vc[li] + b->seq[0].pos * kvd : b->v;

    norm(b, b->h, b->x, L->attn_norm_w, L->attn_norm_b, n);
    /* The MLP's input: its own norm of the block input (sequential blocks
     * norm after the attention residual, below), or the attention's. */
    const float *mlp_in = b->h;
    if (c->parallel_attn && L->mlp_norm_w) {
        norm(b, b->h2, b->x, L->mlp_norm_w, L->mlp_norm_b, n);
        mlp_in = b->h2;
    }

    linear(b, li, GG_LIN_Q, b->q, b->h, n, 0.0f);
    linear(b, li, GG_LIN_K, kd, b->h, n, 0.0f);
    linear(b, li, GG_LIN_V, vd, b->h, n, 0.0f);
    be->rope(be, b->q, n, qd, c->n_heads, c->head_dim, b->posv, b->m->inv_freq, 1.0f);
    be->rope(be, kd, n, kvd, c->n_kv_heads, c->head_dim, b->posv, b->m->inv_freq, 1.0f);
    float scale = 1.0f / sqrtf((float)c->head_dim);
    for (size_t i = 0; i < b->n_seq; i++) {
        const bseq *q = &b->seq[i];
        gg_session *s = q->s;
        if (!direct) {
            size_t bytes = (size_t)(q->n * kvd) * sizeof(float);
            be->copy(be, s->kc[li] + q->pos * kvd, b->k + q->off * kvd, bytes);
            be->copy(be, s->vc[li] + q->pos * kvd, b->v + q->off * kvd, bytes);
        }
        be->attention(be, b->att + q->off * qd, b->q + q->off * qd, s->kc[li], s->vc[li], q->n, q->pos + q->n, kvd,
                      c->n_heads, c->n_kv_heads, c->head_dim, b->k_lo + q->off, b->k_hi + q->off, scale, NULL);
    }

    /* Parallel blocks (x + attn(h) + mlp(h')) normed the MLP input from the
     * block input above, so x may take the attention output now. */
    linear(b, li, GG_LIN_O, b->x, b->att, n, 1.0f);
    if (!c->parallel_attn) {
        norm(b, b->h2, b->x, L->mlp_norm_w, L->mlp_norm_b, n);
        mlp_in = b->h2;
    }
    int64_t nf = n * c->ffn;
    linear(b, li, GG_LIN_UP, b->up, mlp_in, n, 0.0f);
    if (c->mlp == GG_MMLP_GELU) {
        be->act(be, b->up, b->up, nf, GG_ACT_GELU);
    } else {
        linear(b, li, GG_LIN_GATE, b->gate, mlp_in, n, 0.0f);
        be->glu(be, b->up, b->gate, b->up, nf, c->mlp == GG_MMLP_SWIGLU ? GG_ACT_SILU : GG_ACT_GELU_TANH);
    }
    linear(b, li, GG_LIN_DOWN, b->x, b->up, n, 1.0f);
}

/* Run the planned rows (n in all); logits as in gg_batch_eval. */
static void forward(gg_batch *b, int64_t n, float *logits) {
    gg_backend *be = b->be;
    const gg_model_config *c = &b->m->cfg;
    int64_t H = c->hidden, V = c->vocab;
    int32_t *hv = b->host_i32;
    for (size_t i = 0; i < b->n_seq; i++) memcpy(hv + b->seq[i].off, b->seq[i].ids, (size_t)b->seq[i].n * 4);
    be->upload(be, b->ids, hv, (size_t)n * 4);
    for (size_t i = 0; i < b->n_seq; i++)
        for (int64_t t = 0; t < b->seq[i].n; t++) hv[b->seq[i].off + t] = (int32_t)(b->seq[i].pos + t);
    be->upload(be, b->posv, hv, (size_t)n * 4);
    be->upload(be, b->k_hi, hv, (size_t)n * 4);
    for (int64_t r = 0; r < n; r++) {
        int64_t lo = c->sliding_window ? hv[r] - c->sliding_window + 1 : 0;
        hv[r] = (int32_t)(lo > 0 ? lo : 0);
    }
    be->upload(be, b->k_lo, hv, (size_t)n * 4);

    be->embed(be, b->x, &b->m->embed, b->ids, n, c->embed_scale);
    for (int64_t li = 0; li < c->n_layers; li++) block(b, li, n);
    for (size_t i = 0; i < b->n_seq; i++) b->seq[i].s->pos += b->seq[i].n;
    if (!logits) return;

    /* The rows whose logits are wanted, gathered into h in the caller's
     * order (with one session they are already contiguous), normed there. */
    int64_t nsel = 0;
    for (size_t i = 0; i < b->n_seq; i++) {
        const bseq *q = &b->seq[i];
        int64_t first = q->all ? 0 : q->n - 1, cnt = q->n - first;
        be->copy(be, b->h + q->out * H, b->x + (q->off + first) * H, (size_t)(cnt * H) * sizeof(float));
        nsel += cnt;
    }
    norm(b, b->h, b->h, b->m->final_norm_w, b->m->final_norm_b, nsel);
    for (int64_t r = 0; r < nsel; r += b->logit_rows) {
        int64_t cnt = nsel - r < b->logit_rows ? nsel - r : b->logit_rows;
        be->matmul(be, b->logits, b->h + r * H, cnt, b->m->lm_head, NULL, 0.0f);
        be->download(be, logits + r * V, b->logits, (size_t)(cnt * V) * sizeof(float));
    }
}

/* Check one session's input; seq >= 0 names it in errors (a lone
 * session's errors name none). */
static int check_seq(const gg_session *s, const int32_t *ids, int64_t n, long seq, gg_err *err) {
    const gg_model_config *c = &s->m->cfg;
    char who[40] = "";
    int bad_id = -1;
    if (n >= 1 && ids)
        for (int64_t i = 0; i < n && bad_id < 0; i++)
            if (ids[i] < 0 || ids[i] >= c->vocab) bad_id = (int)i;
    int ok = n >= 1 && ids && bad_id < 0 && s->pos + n <= s->n_ctx;
    if (ok) return 0;
    if (seq >= 0) snprintf(who, sizeof who, "sequence %ld: ", seq);
    if (n < 1 || !ids) return gg_errf(err, "%sno tokens to evaluate", who);
    if (bad_id >= 0)
        return gg_errf(err, "%stoken id %d at position %lld is outside the vocabulary (0..%lld)", who, ids[bad_id],
                       (long long)(s->pos + bad_id), (long long)c->vocab - 1);
    return gg_errf(err, "%s%lld tokens after %lld exceed the context of %lld tokens", who, (long long)n,
                   (long long)s->pos, (long long)s->n_ctx);
}

int gg_session_eval(gg_session *s, const int32_t *ids, int64_t n, float *logits, int all_logits, gg_err *err) {
    const gg_model_config *c = &s->m->cfg;
    if (check_seq(s, ids, n, -1, err)) return -1;
    gg_batch *b = s->own;
    if (batch_lora(b, s->max_batch * adapters_max_r(s), err)) return -1;
    for (int64_t done = 0; done < n; done += s->max_batch) {
        int64_t cnt = n - done < s->max_batch ? n - done : s->max_batch;
        int last = done + cnt == n;
        float *out = NULL;
        if (logits && all_logits) out = logits + done * c->vocab;
        else if (logits && last) out = logits;
        b->seq[0] = (bseq){.s = s, .ids = ids + done, .n = cnt, .off = 0, .pos = s->pos, .all = all_logits, .out = 0};
        b->n_seq = 1;
        b->grp[0] = (bgroup){.lo = 0, .hi = cnt, .s = s};
        b->n_grp = s->n_ad ? 1 : 0;
        forward(b, cnt, out);
    }
    return s->be->sync(s->be, err);
}

int gg_batch_eval(gg_batch *b, gg_session *const *ss, const int32_t *const *ids, const int64_t *n, size_t n_seq,
                  float *logits, const int *all_logits, gg_err *err) {
    if (!b || !ss || !ids || !n) return gg_errf(err, "batch eval: missing argument");
    if (n_seq < 1) return gg_errf(err, "batch eval: no sequences");
    if (n_seq > (size_t)b->cap)
        return gg_errf(err, "batch eval: %zu sequences exceed the batch capacity of %lld tokens", n_seq,
                       (long long)b->cap);
    int64_t total = 0, max_r = 0;
    for (size_t i = 0; i < n_seq; i++) {
        const gg_session *s = ss[i];
        if (!s) return gg_errf(err, "sequence %zu: no session", i);
        if (s->m != b->m) return gg_errf(err, "sequence %zu: the session belongs to another model than the batch", i);
        for (size_t j = 0; j < i; j++)
            if (ss[j] == s) return gg_errf(err, "sequence %zu: the same session as sequence %zu", i, j);
        if (check_seq(s, ids[i], n[i], (long)i, err)) return -1;
        total += n[i];
        if (total > b->cap)
            return gg_errf(err, "batch eval: more than %lld tokens (the batch capacity) in %zu sequences",
                           (long long)b->cap, n_seq);
        int64_t r = adapters_max_r(s);
        if (r > max_r) max_r = r;
    }
    if (n_seq > 1 && batch_kv(b, err)) return -1;
    if (batch_lora(b, total * max_r, err)) return -1;

    /* Group the sessions by adapter set (first appearance order), then lay
     * out rows group by group; logits rows stay in the caller's order. */
    size_t ng = 0;
    for (size_t i = 0; i < n_seq; i++) {
        size_t g = 0;
        while (g < ng && !same_adapters(b->grp[g].s, ss[i])) g++;
        if (g == ng) b->grp[ng++] = (bgroup){.s = ss[i]};
        b->order[i] = g;
    }
    int64_t row = 0, out = 0;
    size_t k = 0;
    for (size_t g = 0; g < ng; g++) {
        b->grp[g].lo = row;
        for (size_t i = 0; i < n_seq; i++) {
            if (b->order[i] != g) continue;
            b->seq[k++] = (bseq){.s = ss[i], .ids = ids[i], .n = n[i], .off = row, .pos = ss[i]->pos,
                                 .all = all_logits && all_logits[i]};
            row += n[i];
        }
        b->grp[g].hi = row;
    }
    /* Logits rows: by caller order. seq[] is grouped, so find each. */
    for (size_t i = 0; i < n_seq; i++)
        for (size_t j = 0; j < n_seq; j++)
            if (b->seq[j].s == ss[i]) {
                b->seq[j].out = out;
                out += b->seq[j].all ? b->seq[j].n : 1;
                break;
            }
    /* Only groups with adapters need LoRA work. */
    size_t na = 0;
    for (size_t g = 0; g < ng; g++)
        if (b->grp[g].s->n_ad) b->grp[na++] = b->grp[g];
    b->n_seq = n_seq;
    b->n_grp = na;
    forward(b, total, logits);
    return b->be->sync(b->be, err);
}
