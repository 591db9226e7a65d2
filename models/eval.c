/* eval.c — request scoring on a gg_session with KV prefix reuse (eval.h). */
#include "models/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct gg_eval {
    gg_model *m;
    gg_session *s;
    int64_t n_ctx, batch, vocab;
    int32_t *cache; /* the ids in the KV cache, [ncache] */
    int64_t ncache;
    int reuse;
    float *logits; /* [batch, vocab] */
    gg_eval_stats st;
};

int gg_eval_new(gg_eval **out, gg_model *m, int64_t n_ctx, int64_t batch, gg_err *err) {
    *out = NULL;
    const gg_model_config *c = gg_model_cfg(m);
    if (n_ctx < 2) return gg_errf(err, "eval: context size %lld is too small (at least 2)", (long long)n_ctx);
    if (n_ctx > c->context_length)
        return gg_errf(err, "eval: context size %lld is larger than the model's (%lld)", (long long)n_ctx,
                       (long long)c->context_length);
    if (batch < 1) return gg_errf(err, "eval: batch %lld must be at least 1", (long long)batch);
    if (batch > n_ctx) batch = n_ctx;
    gg_eval *e = calloc(1, sizeof *e);
    if (!e) return gg_errf(err, "out of memory");
    e->m = m;
    e->n_ctx = n_ctx;
    e->batch = batch;
    e->vocab = c->vocab;
    e->reuse = 1;
    e->cache = malloc((size_t)n_ctx * sizeof *e->cache);
    e->logits = malloc((size_t)batch * (size_t)c->vocab * sizeof *e->logits);
    if (!e->cache || !e->logits) {
        gg_eval_free(e);
        return gg_errf(err, "out of memory (eval logits: %lld x %lld floats)", (long long)batch, (long long)c->vocab);
    }
    if (gg_session_new(&e->s, m, n_ctx, batch, err)) {
        gg_eval_free(e);
        return -1;
    }
    *out = e;
    return 0;
}

void gg_eval_free(gg_eval *e) {
    if (!e) return;
    gg_session_free(e->s);
    free(e->cache);
    free(e->logits);
    free(e);
}

gg_session *gg_eval_session(gg_eval *e) { return e->s; }
int64_t gg_eval_ctx(const gg_eval *e) { return e->n_ctx; }
void gg_eval_set_reuse(gg_eval *e, int on) { e->reuse = on; }
void gg_eval_stats_get(const gg_eval *e, gg_eval_stats *st) { *st = e->st; }

double gg_eval_logprob(const float *row, int64_t vocab, int32_t t, int *is_max) {
    int64_t am = 0;
    float mx = row[0];
    for (int64_t v = 1; v < vocab; v++)
        if (row[v] > mx) {
            mx = row[v];
            am = v;
        }
    double sum = 0;
    for (int64_t v = 0; v < vocab; v++) sum += exp((double)row[v] - (double)mx);
    if (is_max) *is_max = am == t;
    return (double)row[t] - (double)mx - log(sum);
}

/* ---- the cache mirror ---- */

/* Make the cache hold in[0..upto): keep the longest common prefix (at most
 * upto) when reuse is on, feed the rest without logits. */
static int prepare(gg_eval *e, const int32_t *in, int64_t upto, gg_err *err) {
    int64_t keep = 0;
    if (e->reuse) {
        int64_t lim = e->ncache < upto ? e->ncache : upto;
        while (keep < lim && e->cache[keep] == in[keep]) keep++;
    }
    if (keep < e->ncache || !e->reuse) {
        gg_session_truncate(e->s, keep);
        e->ncache = keep;
    }
    e->st.tokens_reused += keep;
    if (upto > keep) {
        if (gg_session_eval(e->s, in + keep, upto - keep, NULL, 0, err)) return -1;
        memcpy(e->cache + keep, in + keep, (size_t)(upto - keep) * sizeof *in);
        e->ncache = upto;
        e->st.tokens_fed += upto - keep;
    }
    return 0;
}

/* Feed n (<= batch) tokens after the cache; e->logits gets [n, vocab] (all)
 * or [vocab] (the last row). */
static int feed(gg_eval *e, const int32_t *ids, int64_t n, int all, gg_err *err) {
    if (e->ncache + n > e->n_ctx) return gg_errf(err, "eval: input longer than the context (%lld)", (long long)e->n_ctx);
    if (gg_session_eval(e->s, ids, n, e->logits, all, err)) return -1;
    memcpy(e->cache + e->ncache, ids, (size_t)n * sizeof *ids);
    e->ncache += n;
    e->st.tokens_fed += n;
    return 0;
}

/* ---- loglikelihood ---- */

static int cmp_tokens(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return na < nb ? -1 : na > nb;
}

static int cmp_ll(const void *pa, const void *pb, void *u) {
    const gg_ll_req *r = u;
    const gg_ll_req *a = &r[*(const size_t *)pa], *b = &r[*(const size_t *)pb];
    int c = cmp_tokens(a->ctx, a->n_ctx, b->ctx, b->n_ctx);
    if (c) return c;
    c = cmp_tokens(a->cont, a->n_cont, b->cont, b->n_cont);
    if (c) return c;
    return *(const size_t *)pa < *(const size_t *)pb ? -1 : 1;
}

static int score_one(gg_eval *e, gg_ll_req *r, int32_t *full, gg_err *err) {
    r->logprob = 0;
    r->greedy = 1;
    if (r->n_cont == 0) return 0;
    if (r->n_ctx == 0) return gg_errf(err, "eval: a loglikelihood request needs a context (at least a BOS token)");
    if ((int64_t)r->n_cont > e->n_ctx)
        return gg_errf(err, "eval: continuation of %zu tokens is longer than the context (%lld)", r->n_cont,
                       (long long)e->n_ctx);
    size_t lf = r->n_ctx + r->n_cont;
    memcpy(full, r->ctx, r->n_ctx * sizeof *full);
    memcpy(full + r->n_ctx, r->cont, r->n_cont * sizeof *full);
    size_t start = lf > (size_t)e->n_ctx + 1 ? lf - ((size_t)e->n_ctx + 1) : 0;
    const int32_t *in = full + start;
    int64_t L = (int64_t)(lf - 1 - start);
    int64_t first = L - (int64_t)r->n_cont; /* row `first` predicts cont[0] */
    if (prepare(e, in, first, err)) return -1;
    for (int64_t i = first; i < L; i += e->batch) {
        int64_t k = L - i < e->batch ? L - i : e->batch;
        if (feed(e, in + i, k, 1, err)) return -1;
        for (int64_t j = 0; j < k; j++) {
            int64_t c = i + j - first;
            int ismax;
            double lp = gg_eval_logprob(e->logits + (size_t)j * (size_t)e->vocab, e->vocab, r->cont[c], &ismax);
            r->logprob += lp;
            r->greedy &= ismax;
            if (r->token_logprobs) r->token_logprobs[c] = (float)lp;
        }
    }
    e->st.requests++;
    return 0;
}

int gg_eval_loglikelihood(gg_eval *e, gg_ll_req *reqs, size_t n, gg_eval_progress progress, void *user,
                          gg_err *err) {
    if (!n) return 0;
    size_t *ord = malloc(n * sizeof *ord), maxlen = 0;
    for (size_t i = 0; i < n; i++)
        if (reqs[i].n_ctx + reqs[i].n_cont > maxlen) maxlen = reqs[i].n_ctx + reqs[i].n_cont;
    int32_t *full = malloc((maxlen + 1) * sizeof *full);
    if (!ord || !full) {
        free(ord);
        free(full);
        return gg_errf(err, "out of memory");
    }
    for (size_t i = 0; i < n; i++) ord[i] = i;
    qsort_r(ord, n, sizeof *ord, cmp_ll, reqs);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        for (int64_t t = 0; t < (int64_t)reqs[ord[i]].n_ctx + (int64_t)reqs[ord[i]].n_cont; t++) {
            int32_t id = t < (int64_t)reqs[ord[i]].n_ctx ? reqs[ord[i]].ctx[t] : reqs[ord[i]].cont[t - (int64_t)reqs[ord[i]].n_ctx];
            if (id < 0 || id >= e->vocab) {
                rc = gg_errf(err, "eval: request %zu: token id %d is outside the vocabulary (0..%lld)", ord[i], id,
                             (long long)e->vocab - 1);
                break;
            }
        }
        if (!rc && score_one(e, &reqs[ord[i]], full, err)) rc = gg_err_prefix(err, "request %zu", ord[i]);
        if (progress) progress(user, i + 1, n);
    }
    free(ord);
    free(full);
    return rc;
}

/* ---- rolling windows ---- */

size_t gg_eval_rolling_windows(size_t n_tokens, size_t max_len, size_t stride, gg_window *out) {
    if (!n_tokens || !max_len) return 0;
    if (stride < 1 || stride > max_len) stride = max_len;
    size_t nw = 0, first = n_tokens < max_len ? n_tokens : max_len;
    if (out) out[nw] = (gg_window){.ctx_start = 0, .pred_start = 0, .pred_len = first, .ctx_prefix = 1};
    nw++;
    size_t predicted = first;
    while (predicted < n_tokens) {
        size_t wpl = n_tokens - predicted < stride ? n_tokens - predicted : stride;
        size_t ctx_len = max_len - wpl + 1;
        if (out) out[nw] = (gg_window){.ctx_start = predicted - ctx_len, .pred_start = predicted, .pred_len = wpl};
        nw++;
        predicted += wpl;
    }
    return nw;
}

static int check_rolling(const gg_eval *e, size_t max_len, size_t stride, gg_err *err) {
    if (max_len < 1 || (int64_t)max_len > e->n_ctx)
        return gg_errf(err, "eval: window length %zu is outside 1..%lld", max_len, (long long)e->n_ctx);
    if (stride < 1 || stride > max_len) return gg_errf(err, "eval: stride %zu is outside 1..%zu", stride, max_len);
    return 0;
}

int gg_eval_rolling(gg_eval *e, const int32_t *toks, size_t n, int32_t prefix, size_t max_len, size_t stride,
                    double *logprob, float *token_logprobs, size_t *n_windows, gg_eval_progress progress,
                    void *user, gg_err *err) {
    *logprob = 0;
    if (n_windows) *n_windows = 0;
    if (check_rolling(e, max_len, stride, err)) return -1;
    if (!n) return 0;
    size_t nw = gg_eval_rolling_windows(n, max_len, stride, NULL);
    gg_window *w = malloc(nw * sizeof *w);
    gg_ll_req *r = calloc(nw, sizeof *r);
    float *tl = token_logprobs ? token_logprobs : malloc(n * sizeof *tl);
    if (!w || !r || !tl) {
        free(w);
        free(r);
        if (!token_logprobs) free(tl);
        return gg_errf(err, "out of memory");
    }
    gg_eval_rolling_windows(n, max_len, stride, w);
    for (size_t i = 0; i < nw; i++) {
        if (w[i].ctx_prefix) {
            r[i].ctx = &prefix;
            r[i].n_ctx = 1;
        } else {
            r[i].ctx = toks + w[i].ctx_start;
            r[i].n_ctx = w[i].pred_start - w[i].ctx_start;
        }
        r[i].cont = toks + w[i].pred_start;
        r[i].n_cont = w[i].pred_len;
        r[i].token_logprobs = tl + w[i].pred_start;
    }
    int rc = gg_eval_loglikelihood(e, r, nw, progress, user, err);
    if (!rc)
        for (size_t i = 0; i < nw; i++) *logprob += r[i].logprob;
    if (n_windows) *n_windows = nw;
    free(w);
    free(r);
    if (!token_logprobs) free(tl);
    return rc;
}

/* ---- KL ---- */

static void kl_row(const float *pm, const float *pb, int64_t V, int32_t target, gg_kl_stats *st) {
    int64_t am = 0, ab = 0;
    for (int64_t v = 1; v < V; v++) {
        if (pm[v] > pm[am]) am = v;
        if (pb[v] > pb[ab]) ab = v;
    }
    double sm = 0, sb = 0;
    for (int64_t v = 0; v < V; v++) {
        sm += exp((double)pm[v] - pm[am]);
        sb += exp((double)pb[v] - pb[ab]);
    }
    double lsm = pm[am] + log(sm), lsb = pb[ab] + log(sb), kl = 0;
    for (int64_t v = 0; v < V; v++) {
        double lb = pb[v] - lsb, lm = pm[v] - lsm;
        kl += exp(lb) * (lb - lm);
    }
    if (kl < 0) kl = 0; /* rounding */
    st->n++;
    st->kl_sum += kl;
    if (kl > st->kl_max) st->kl_max = kl;
    st->top1_agree += am == ab;
    st->nll_model -= pm[target] - lsm;
    st->nll_base -= pb[target] - lsb;
}

int gg_eval_kl(gg_eval *model, gg_eval *base, const int32_t *toks, size_t n, int32_t prefix, size_t max_len,
               size_t stride, gg_kl_stats *st, gg_eval_progress progress, void *user, gg_err *err) {
    memset(st, 0, sizeof *st);
    if (model->vocab != base->vocab)
        return gg_errf(err, "eval: the model's vocabulary (%lld) differs from the base's (%lld)",
                       (long long)model->vocab, (long long)base->vocab);
    if (check_rolling(model, max_len, stride, err) || check_rolling(base, max_len, stride, err)) return -1;
    if (!n) return 0;
    size_t nw = gg_eval_rolling_windows(n, max_len, stride, NULL);
    gg_window *w = malloc(nw * sizeof *w);
    int32_t *in = malloc((max_len + 1) * sizeof *in);
    if (!w || !in) {
        free(w);
        free(in);
        return gg_errf(err, "out of memory");
    }
    gg_eval_rolling_windows(n, max_len, stride, w);
    int64_t B = model->batch < base->batch ? model->batch : base->batch;
    int rc = 0;
    for (size_t i = 0; i < nw && !rc; i++) {
        size_t nc = w[i].ctx_prefix ? 1 : w[i].pred_start - w[i].ctx_start;
        if (w[i].ctx_prefix) in[0] = prefix;
        else memcpy(in, toks + w[i].ctx_start, nc * sizeof *in);
        memcpy(in + nc, toks + w[i].pred_start, (w[i].pred_len - 1) * sizeof *in);
        int64_t L = (int64_t)(nc + w[i].pred_len - 1), first = (int64_t)nc - 1;
        if (prepare(model, in, first, err) || prepare(base, in, first, err)) {
            rc = -1;
            break;
        }
        for (int64_t p = first; p < L && !rc; p += B) {
            int64_t k = L - p < B ? L - p : B;
            if (feed(model, in + p, k, 1, err) || feed(base, in + p, k, 1, err)) {
                rc = -1;
                break;
            }
            for (int64_t j = 0; j < k; j++)
                kl_row(model->logits + (size_t)j * (size_t)model->vocab, base->logits + (size_t)j * (size_t)base->vocab,
                       model->vocab, toks[w[i].pred_start + (size_t)(p + j - first)], st);
        }
        if (progress) progress(user, i + 1, nw);
    }
    free(w);
    free(in);
    return rc;
}

/* ---- generate_until ---- */

static int cmp_gen(const void *pa, const void *pb, void *u) {
    const gg_gen_req *r = u;
    const gg_gen_req *a = &r[*(const size_t *)pa], *b = &r[*(const size_t *)pb];
    int c = cmp_tokens(a->ctx, a->n_ctx, b->ctx, b->n_ctx);
    if (c) return c;
    return *(const size_t *)pa < *(const size_t *)pb ? -1 : 1;
}

static int has_stop(const char *s, size_t len, const gg_gen_req *r) {
    for (size_t i = 0; i < r->n_until; i++)
        if (r->until[i][0] && memmem(s, len, r->until[i], strlen(r->until[i]))) return 1;
    return 0;
}

static int gen_one(gg_eval *e, const gg_tokenizer *tok, gg_gen_req *r, const int32_t *eos, size_t n_eos,
                   int32_t *gen, gg_err *err) {
    r->text = NULL;
    r->n_gen = 0;
    if (r->max_gen < 1) return gg_errf(err, "eval: max_gen_toks must be at least 1");
    if (r->max_gen >= e->n_ctx)
        return gg_errf(err, "eval: max_gen_toks %d leaves no room for a context of %lld", r->max_gen,
                       (long long)e->n_ctx);
    if (!r->n_ctx) return gg_errf(err, "eval: a generation request needs a context");
    size_t keep = (size_t)(e->n_ctx - r->max_gen);
    const int32_t *in = r->ctx;
    size_t L = r->n_ctx;
    if (L > keep) {
        in += L - keep;
        L = keep;
    }
    for (size_t i = 0; i < L; i++)
        if (in[i] < 0 || in[i] >= e->vocab) return gg_errf(err, "eval: token id %d is outside the vocabulary", in[i]);
    if (prepare(e, in, (int64_t)L - 1, err) || feed(e, in + L - 1, 1, 0, err)) return -1;
    char *text = NULL;
    size_t len = 0;
    for (;;) {
        int32_t best = 0;
        for (int64_t v = 1; v < e->vocab; v++)
            if (e->logits[v] > e->logits[best]) best = (int32_t)v;
        int stop = 0;
        for (size_t i = 0; i < n_eos; i++) stop |= eos[i] >= 0 && eos[i] == best;
        if (stop) break;
        gen[r->n_gen++] = best;
        free(text);
        if (gg_tokenizer_decode(tok, gen, r->n_gen, 1, &text, &len, err)) return -1;
        if (has_stop(text, len, r) || (int)r->n_gen >= r->max_gen || e->ncache >= e->n_ctx) break;
        if (feed(e, &best, 1, 0, err)) {
            free(text);
            return -1;
        }
    }
    if (!text) {
        text = strdup("");
        len = 0;
        if (!text) return gg_errf(err, "out of memory");
    }
    for (size_t i = 0; i < r->n_until; i++) {
        if (!r->until[i][0]) continue;
        char *hit = memmem(text, len, r->until[i], strlen(r->until[i]));
        if (hit) {
            *hit = 0;
            len = (size_t)(hit - text);
        }
    }
    r->text = text;
    e->st.requests++;
    return 0;
}

int gg_eval_generate(gg_eval *e, const gg_tokenizer *tok, gg_gen_req *reqs, size_t n, const int32_t *eos,
                     size_t n_eos, gg_eval_progress progress, void *user, gg_err *err) {
    if (!n) return 0;
    size_t *ord = malloc(n * sizeof *ord);
    int32_t *gen = malloc((size_t)e->n_ctx * sizeof *gen);
    if (!ord || !gen) {
        free(ord);
        free(gen);
        return gg_errf(err, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        ord[i] = i;
        reqs[i].text = NULL;
    }
    qsort_r(ord, n, sizeof *ord, cmp_gen, reqs);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (gen_one(e, tok, &reqs[ord[i]], eos, n_eos, gen, err)) rc = gg_err_prefix(err, "request %zu", ord[i]);
        if (progress) progress(user, i + 1, n);
    }
    free(ord);
    free(gen);
    if (rc) gg_gen_req_free_text(reqs, n);
    return rc;
}

void gg_gen_req_free_text(gg_gen_req *reqs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(reqs[i].text);
        reqs[i].text = NULL;
    }
}
