/* eval_task.c — running a task: requests from documents, scoring them on a
 * gg_eval, per-document metrics as lm-evaluation-harness computes them, and
 * their aggregation with standard errors (task.h). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/task_internal.h"

/* ---- counting ---- */

static size_t utf8_next(const unsigned char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned c = s[i];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + k > n) k = 1;
    uint32_t v = k == 1 ? c : k == 2 ? (c & 0x1F) : k == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t j = 1; j < k; j++) {
        if ((s[i + j] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = (v << 6) | (s[i + j] & 0x3F);
    }
    *cp = v;
    return k;
}

/* Python's str.isspace() */
static int py_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

size_t gg_task_count_words(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t runs = 0, i = 0;
    int in = 0;
    while (i < len) {
        uint32_t c;
        i += utf8_next(u, len, i, &c);
        int sp = py_space(c);
        if (sp && !in) runs++;
        in = sp;
    }
    return runs + 1;
}

size_t gg_task_count_chars(const char *s, size_t len) {
    size_t n = 0, i = 0;
    while (i < len) {
        uint32_t c;
        i += utf8_next((const unsigned char *)s, len, i, &c);
        n++;
    }
    return n;
}

void gg_task_mean_stderr(const double *x, size_t n, double *mean, double *se) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m += x[i];
    m = n ? m / (double)n : NAN;
    double v = 0;
    for (size_t i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *se = n > 1 ? sqrt(v / (double)(n - 1) / (double)n) : NAN;
}

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double agg(const double *x, const double *w, size_t n, const size_t *idx, int kind) {
    double sx = 0, sw = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = idx ? idx[i] : i;
        sx += x[k];
        sw += w ? w[k] : 1.0;
    }
    if (kind == 1) return exp(sx / sw);
    if (kind == 2) return sx / sw / log(2.0);
    return sx / sw;
}

double gg_task_bootstrap(const double *x, const double *w, size_t n, int kind, int iters, uint64_t seed) {
    if (n < 2 || iters < 2) return NAN;
    size_t *idx = malloc(n * sizeof *idx);
    double *v = malloc((size_t)iters * sizeof *v);
    if (!idx || !v) {
        free(idx);
        free(v);
        return NAN;
    }
    uint64_t st = seed;
    for (int b = 0; b < iters; b++) {
        for (size_t i = 0; i < n; i++) idx[i] = (size_t)(mix(&st) % n);
        v[b] = agg(x, w, n, idx, kind);
    }
    double m, se;
    gg_task_mean_stderr(v, (size_t)iters, &m, &se);
    free(idx);
    free(v);
    return se * sqrt((double)iters); /* the stddev of the resampled values (ddof 1) */
}

/* ---- text helpers ---- */

/* Replace every match of re in s with "" (re.sub(pattern, "", s)). */
static char *re_remove(pcre2_code *re, const char *s) {
    size_t n = strlen(s), cap = n + 1;
    char *o = malloc(cap);
    if (!o) return NULL;
    PCRE2_SIZE olen = cap;
    int rc = pcre2_substitute(re, (PCRE2_SPTR)s, n, 0, PCRE2_SUBSTITUTE_GLOBAL, NULL, NULL, (PCRE2_SPTR) "", 0,
                              (PCRE2_UCHAR *)o, &olen);
    if (rc < 0) {
        memcpy(o, s, n + 1);
    }
    return o;
}

static char *strip_ws(char *s) {
    size_t a = 0, n = strlen(s);
    while (a < n && isspace((unsigned char)s[a])) a++;
    while (n > a && isspace((unsigned char)s[n - 1])) n--;
    memmove(s, s + a, n - a);
    s[n - a] = 0;
    return s;
}

/* lm-eval's RegexFilter on one response: findall, take match group_select,
 * the first non-empty group of a tuple, strip; fallback when none. */
static char *regex_filter(const task_fstep *f, const char *s) {
    uint32_t ncap = 0;
    pcre2_pattern_info(f->re, PCRE2_INFO_CAPTURECOUNT, &ncap);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(f->re, NULL);
    size_t n = strlen(s), off = 0, nm = 0, cap = 0;
    char **matches = NULL;
    while (off <= n) {
        int rc = pcre2_match(f->re, (PCRE2_SPTR)s, n, off, 0, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        char *m = NULL;
        if (ncap == 0) m = strndup(s + ov[0], ov[1] - ov[0]);
        else if (ncap == 1) m = ov[2] == PCRE2_UNSET ? strdup("") : strndup(s + ov[2], ov[3] - ov[2]);
        else {
            for (uint32_t g = 1; g <= ncap && !m; g++)
                if ((int)g < rc && ov[2 * g] != PCRE2_UNSET && ov[2 * g + 1] > ov[2 * g])
                    m = strndup(s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
            if (!m) m = strdup("\x01"); /* a tuple of empty groups: the fallback */
        }
        if (nm == cap) {
            cap = cap ? cap * 2 : 8;
            matches = realloc(matches, cap * sizeof *matches);
        }
        matches[nm++] = m;
        off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
        while (off < n && (s[off] & 0xC0) == 0x80) off++;
    }
    pcre2_match_data_free(md);
    char *out;
    long gs = f->group_select < 0 ? (long)nm + f->group_select : f->group_select;
    if (nm && gs >= 0 && gs < (long)nm && strcmp(matches[gs], "\x01") != 0) out = strip_ws(strdup(matches[gs]));
    else out = strdup(f->fallback);
    for (size_t i = 0; i < nm; i++) free(matches[i]);
    free(matches);
    return out;
}

static char *apply_filters(const task_filterset *fs, const char *resp) {
    char *s = strdup(resp);
    for (int i = 0; i < fs->nsteps && s; i++) {
        const task_fstep *f = &fs->steps[i];
        if (f->kind == TF_REGEX) {
            char *n = regex_filter(f, s);
            free(s);
            s = n;
        } else if (f->kind == TF_REMOVE_WS) {
            size_t a = 0;
            while (s[a] == ' ') a++; /* lm-eval: lstrip(" ") */
            memmove(s, s + a, strlen(s + a) + 1);
        } else if (f->kind == TF_LOWER || f->kind == TF_UPPER) {
            for (char *p = s; *p; p++) *p = (char)(f->kind == TF_LOWER ? tolower((unsigned char)*p) : toupper((unsigned char)*p));
        }
    }
    return s;
}

/* HF evaluate's exact_match with lm-eval's options. */
static int exact_match(const gg_task *t, const char *pred, const char *ref) {
    char *a = strdup(pred), *b = strdup(ref);
    for (int i = 0; i < t->n_ignore; i++) {
        char *na = re_remove(t->ignore[i], a), *nb = re_remove(t->ignore[i], b);
        free(a);
        free(b);
        a = na;
        b = nb;
    }
    for (int k = 0; k < 2; k++) {
        char *s = k ? b : a, *w = s;
        for (char *p = s; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (t->em_ignore_punct && c < 128 && ispunct(c)) continue;
            if (t->em_ignore_numbers && isdigit(c)) continue;
            *w++ = t->em_ignore_case ? (char)tolower(c) : (char)c;
        }
        *w = 0;
    }
    int eq = strcmp(a, b) == 0;
    free(a);
    free(b);
    return eq;
}

int gg_task_n_filters(const gg_task *t) { return t->nfs ? t->nfs : 1; }
const char *gg_task_filter_name(const gg_task *t, int i) { return t->nfs ? t->fs[i].name : "none"; }

int gg_task_exact_match(const gg_task *t, int i, const char *resp, const char *target, char **filtered) {
    task_filterset none = {.name = "none"};
    char *f = apply_filters(t->nfs ? &t->fs[i] : &none, resp);
    int r = f ? exact_match(t, f, target) : 0;
    if (filtered) *filtered = f;
    else free(f);
    return r;
}

/* ---- tokenizing a (context, continuation) pair as lm-eval does ---- */

static int is_trailing_ws(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x1F); }

typedef struct req_toks {
    int32_t *ctx, *cont;
    size_t n_ctx, n_cont;
} req_toks;

static int encode_pair(const gg_tokenizer *tok, const char *ctx, const char *cont, const gg_task_opts *o, req_toks *r,
                       gg_err *err) {
    size_t nc = strlen(ctx), nt = strlen(cont);
    if (nc == 0) {
        r->ctx = malloc(sizeof *r->ctx);
        if (!r->ctx) return gg_errf(err, "out of memory");
        r->ctx[0] = o->prefix_token;
        r->n_ctx = 1;
        return gg_tokenizer_encode(tok, cont, nt, 0, &r->cont, &r->n_cont, err);
    }
    size_t keep = nc;
    while (keep > 0 && is_trailing_ws((unsigned char)ctx[keep - 1])) keep--;
    char *whole = malloc(nc + nt + 1);
    if (!whole) return gg_errf(err, "out of memory");
    memcpy(whole, ctx, nc);
    memcpy(whole + nc, cont, nt + 1);
    int32_t *w;
    size_t nw;
    if (gg_tokenizer_encode(tok, whole, nc + nt, o->add_bos, &w, &nw, err)) {
        free(whole);
        return -1;
    }
    int rc = gg_tokenizer_encode(tok, whole, keep, o->add_bos, &r->ctx, &r->n_ctx, err);
    free(whole);
    if (rc) {
        free(w);
        return -1;
    }
    size_t skip = r->n_ctx < nw ? r->n_ctx : nw;
    r->n_cont = nw - skip;
    r->cont = malloc((r->n_cont + 1) * sizeof *r->cont);
    if (!r->cont) {
        free(w);
        return gg_errf(err, "out of memory");
    }
    memcpy(r->cont, w + skip, r->n_cont * sizeof *w);
    free(w);
    return 0;
}

/* ---- one document's state ---- */

typedef struct dstate {
    char *ctx;       /* the prompt (few-shot examples included) */
    json_t *choices; /* MC: list of strings */
    int gold[64];    /* MC gold indices */
    int ngold;
    double *labels; /* mc2 */
    char *target;
    size_t req0, nreq;
    char **conts; /* the continuation (or context for multiple_input) strings */
    double ll;    /* rolling / loglikelihood */
    int greedy;
    size_t ntok;
    char *gen;
} dstate;

static void dstate_free(dstate *d) {
    free(d->ctx);
    json_decref(d->choices);
    free(d->labels);
    free(d->target);
    for (size_t i = 0; i < d->nreq && d->conts; i++) free(d->conts[i]);
    free(d->conts);
    free(d->gen);
}

static char *cat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *o = malloc(na + nb + 1);
    if (o) {
        memcpy(o, a, na);
        memcpy(o + na, b, nb + 1);
    }
    return o;
}

/* Gold indices from a resolved doc_to_target (or doc_to_text) value. */
static int read_gold(const gg_task *t, json_t *g, dstate *d, size_t di, gg_err *err) {
    d->ngold = 0;
    if (json_is_array(g)) {
        size_t i;
        json_t *x;
        json_array_foreach(g, i, x) if (d->ngold < 64) d->gold[d->ngold++] = task_index_of(x, d->choices);
    } else {
        d->gold[d->ngold++] = task_index_of(g, d->choices);
    }
    for (int i = 0; i < d->ngold; i++)
        if (d->gold[i] < 0 || (size_t)d->gold[i] >= json_array_size(d->choices)) d->gold[i] = -100;
    (void)t;
    (void)di;
    (void)err;
    return 0;
}

static int argmax_div(const double *ll, const double *div, size_t n) {
    int best = 0;
    double bv = 0;
    for (size_t i = 0; i < n; i++) {
        double v = div ? ll[i] / div[i] : ll[i];
        if (i == 0 || v > bv) {
            bv = v;
            best = (int)i;
        }
    }
    return best;
}

static int in_gold(const dstate *d, int p) {
    for (int i = 0; i < d->ngold; i++)
        if (d->gold[i] == p) return 1;
    return 0;
}

/* ---- metrics storage ---- */
typedef struct mcol {
    const char *name;
    char filter[32];
    int id, kind; /* kind: 0 mean, 1 exp(Σx/Σw), 2 Σx/Σw/ln2 */
    double *x, *w;
} mcol;

static void put_metric(gg_task_result *res, const mcol *c, size_t n, const gg_task_opts *o, uint64_t seed) {
    if (res->n_metrics >= sizeof res->m / sizeof res->m[0]) return;
    gg_metric *m = &res->m[res->n_metrics++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", c->name);
    snprintf(m->filter, sizeof m->filter, "%s", c->filter);
    m->higher_is_better = c->kind == 0;
    if (!n) {
        m->value = NAN;
        return;
    }
    m->value = agg(c->x, c->w, n, NULL, c->kind);
    m->stderr_boot = o->bootstrap_iters > 1 ? gg_task_bootstrap(c->x, c->w, n, c->kind, o->bootstrap_iters, seed) : NAN;
    if (c->kind == 0) {
        double mean;
        gg_task_mean_stderr(c->x, n, &mean, &m->stderr_);
    } else {
        m->stderr_ = m->stderr_boot;
    }
    m->has_stderr = m->stderr_ == m->stderr_;
}

int gg_task_run(gg_task *t, gg_eval *e, const gg_tokenizer *tok, const gg_task_opts *o, gg_task_result *res,
                gg_err *err) {
    memset(res, 0, sizeof *res);
    snprintf(res->name, sizeof res->name, "%s", t->name);
    struct timespec ts0, ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    if (!t->test.docs) return gg_errf(err, "task %s: documents not loaded", t->name);
    size_t nd = json_array_size(t->test.docs);
    if (o->limit && o->limit < nd) nd = o->limit;
    int k = o->num_fewshot >= 0 ? o->num_fewshot : t->num_fewshot;
    res->num_fewshot = k;
    res->n_docs = nd;
    dstate *ds = calloc(nd ? nd : 1, sizeof *ds);
    if (!ds) return gg_errf(err, "out of memory");
    int rc = -1;
    size_t nreq = 0;
    gg_ll_req *lr = NULL;
    req_toks *rt = NULL;
    gg_gen_req *gr = NULL;
    mcol cols[16];
    int ncol = 0;
    memset(cols, 0, sizeof cols);

    /* 1. prompts and gold */
    for (size_t i = 0; i < nd; i++) {
        dstate *d = &ds[i];
        json_t *doc = json_array_get(t->test.docs, i);
        if (gg_task_context(t, i, k, o->seed, &d->ctx, err)) goto out;
        if (t->type == GG_TASK_MULTIPLE_CHOICE) {
            if (!(d->choices = task_choices(t, doc, i, err))) goto out;
            json_t *g = task_resolve(t, t->multiple_input ? t->doc_to_text : t->doc_to_target, doc,
                                     t->multiple_input ? "doc_to_text" : "doc_to_target", i, err);
            if (!g) goto out;
            read_gold(t, g, d, i, err);
            json_decref(g);
            d->nreq = json_array_size(d->choices);
            d->conts = calloc(d->nreq, sizeof *d->conts);
            if (t->multiple_input) {
                json_t *tg = task_resolve(t, t->doc_to_target, doc, "doc_to_target", i, err);
                if (!tg) goto out;
                d->target = task_text(tg);
                json_decref(tg);
            }
            if (t->metrics & TMB(TM_MC2)) {
                json_t *lb = task_resolve(t, t->doc_to_labels, doc, "doc_to_labels", i, err);
                if (lb && json_is_string(lb)) {
                    json_t *p = json_loads(json_string_value(lb), 0, NULL);
                    json_decref(lb);
                    lb = p;
                }
                if (!json_is_array(lb) || json_array_size(lb) != d->nreq) {
                    json_decref(lb);
                    gg_errf(err, "%s:%d: doc_to_labels must give one 0/1 label per choice (%zu)", t->test.path,
                            t->test.lines[i], d->nreq);
                    goto out;
                }
                d->labels = calloc(d->nreq, sizeof *d->labels);
                for (size_t c = 0; c < d->nreq; c++) d->labels[c] = json_number_value(json_array_get(lb, c)) != 0;
                json_decref(lb);
            }
        } else {
            json_t *tg = task_resolve(t, t->doc_to_target, doc, "doc_to_target", i, err);
            if (!tg) goto out;
            d->target = task_text(json_is_array(tg) ? json_array_get(tg, 0) : tg);
            json_decref(tg);
            d->nreq = 1;
        }
        d->req0 = nreq;
        nreq += d->nreq;
    }
    res->n_requests = nreq;

    /* 2. requests, scored */
    if (t->type == GG_TASK_MULTIPLE_CHOICE || t->type == GG_TASK_LOGLIKELIHOOD) {
        lr = calloc(nreq ? nreq : 1, sizeof *lr);
        rt = calloc(nreq ? nreq : 1, sizeof *rt);
        if (!lr || !rt) {
            gg_errf(err, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < nd; i++) {
            dstate *d = &ds[i];
            for (size_t c = 0; c < d->nreq; c++) {
                char *ctx, *cont;
                if (t->type == GG_TASK_LOGLIKELIHOOD) { /* lm-eval: (ctx, doc_to_target), no delimiter */
                    ctx = strdup(d->ctx);
                    cont = strdup(d->target);
                } else if (t->multiple_input) {
                    ctx = cat(d->ctx, json_string_value(json_array_get(d->choices, c)));
                    cont = cat(t->target_delim, d->target);
                } else {
                    ctx = strdup(d->ctx);
                    cont = cat(t->target_delim, json_string_value(json_array_get(d->choices, c)));
                }
                req_toks *r = &rt[d->req0 + c];
                int bad = !ctx || !cont || encode_pair(tok, ctx, cont, o, r, err);
                if (d->conts) d->conts[c] = t->multiple_input ? strdup(ctx) : strdup(cont);
                free(ctx);
                free(cont);
                if (bad) goto out;
                lr[d->req0 + c] = (gg_ll_req){.ctx = r->ctx, .n_ctx = r->n_ctx, .cont = r->cont, .n_cont = r->n_cont};
            }
        }
        if (gg_eval_loglikelihood(e, lr, nreq, o->progress, o->user, err)) goto out;
    } else if (t->type == GG_TASK_GENERATE_UNTIL) {
        gr = calloc(nd ? nd : 1, sizeof *gr);
        rt = calloc(nd ? nd : 1, sizeof *rt);
        if (!gr || !rt) {
            gg_errf(err, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < nd; i++) {
            if (gg_tokenizer_encode(tok, ds[i].ctx, strlen(ds[i].ctx), o->add_bos, &rt[i].ctx, &rt[i].n_ctx, err))
                goto out;
            gr[i] = (gg_gen_req){.ctx = rt[i].ctx, .n_ctx = rt[i].n_ctx, .until = (const char *const *)t->until,
                                 .n_until = t->n_until, .max_gen = t->max_gen};
        }
        if (gg_eval_generate(e, tok, gr, nd, o->eos, 2, o->progress, o->user, err)) goto out;
        for (size_t i = 0; i < nd; i++) {
            ds[i].gen = gr[i].text;
            gr[i].text = NULL;
        }
    } else { /* rolling */
        for (size_t i = 0; i < nd; i++) {
            int32_t *ids;
            size_t n;
            if (gg_tokenizer_encode(tok, ds[i].target, strlen(ds[i].target), 0, &ids, &n, err)) goto out;
            size_t nw;
            int64_t L = gg_eval_ctx(e);
            int r = gg_eval_rolling(e, ids, n, o->prefix_token, (size_t)L, (size_t)L, &ds[i].ll, NULL, &nw, NULL, NULL,
                                    err);
            ds[i].ntok = n;
            free(ids);
            if (r) {
                gg_err_prefix(err, "%s:%d", t->test.path, t->test.lines[i]);
                goto out;
            }
            if (o->progress) o->progress(o->user, i + 1, nd);
        }
    }

    /* 3. per-document metrics */
#define COL(nm, idv, kd, flt)                                                                     \
    do {                                                                                          \
        cols[ncol] = (mcol){.name = nm, .id = idv, .kind = kd};                                   \
        snprintf(cols[ncol].filter, sizeof cols[ncol].filter, "%s", flt);                         \
        cols[ncol].x = calloc(nd ? nd : 1, sizeof(double));                                       \
        cols[ncol].w = kd ? calloc(nd ? nd : 1, sizeof(double)) : NULL;                           \
        ncol++;                                                                                   \
    } while (0)
    if (t->type == GG_TASK_MULTIPLE_CHOICE) {
        if (t->metrics & TMB(TM_ACC)) COL("acc", TM_ACC, 0, "none");
        if (t->metrics & TMB(TM_ACC_NORM)) COL("acc_norm", TM_ACC_NORM, 0, "none");
        if (t->metrics & TMB(TM_ACC_BYTES)) COL("acc_bytes", TM_ACC_BYTES, 0, "none");
        if (t->metrics & TMB(TM_MC2)) COL("mc2", TM_MC2, 0, "none");
    } else if (t->type == GG_TASK_GENERATE_UNTIL) {
        for (int f = 0; f < t->nfs; f++) COL("exact_match", TM_EXACT, 0, t->fs[f].name);
    } else if (t->type == GG_TASK_LOGLIKELIHOOD) {
        if (t->metrics & TMB(TM_PPL)) COL("perplexity", TM_PPL, 1, "none");
        if (t->metrics & TMB(TM_ACC)) COL("acc", TM_ACC, 0, "none");
    } else {
        if (t->metrics & TMB(TM_WORD_PPL)) COL("word_perplexity", TM_WORD_PPL, 1, "none");
        if (t->metrics & TMB(TM_BYTE_PPL)) COL("byte_perplexity", TM_BYTE_PPL, 1, "none");
        if (t->metrics & TMB(TM_BPB)) COL("bits_per_byte", TM_BPB, 2, "none");
        if (t->metrics & TMB(TM_TOKEN_PPL)) COL("token_perplexity", TM_TOKEN_PPL, 1, "none");
    }
#undef COL
    for (int c = 0; c < ncol; c++)
        if (!cols[c].x || (cols[c].kind && !cols[c].w)) {
            gg_errf(err, "out of memory");
            goto out;
        }
    for (size_t i = 0; i < nd; i++) {
        dstate *d = &ds[i];
        json_t *log = o->log_samples ? json_object() : NULL, *lm = log ? json_object() : NULL;
        double lls[4096];
        size_t nc = d->nreq < 4096 ? d->nreq : 4096;
        if (t->type == GG_TASK_MULTIPLE_CHOICE) {
            double chars[4096], bytes[4096];
            for (size_t c = 0; c < nc; c++) {
                lls[c] = lr[d->req0 + c].logprob;
                const char *s = json_string_value(json_array_get(d->choices, c));
                chars[c] = (double)gg_task_count_chars(s, strlen(s));
                bytes[c] = (double)strlen(s);
            }
            for (int c = 0; c < ncol; c++) {
                double v = 0;
                if (cols[c].id == TM_ACC) v = in_gold(d, argmax_div(lls, NULL, nc));
                else if (cols[c].id == TM_ACC_NORM) v = in_gold(d, argmax_div(lls, chars, nc));
                else if (cols[c].id == TM_ACC_BYTES) v = in_gold(d, argmax_div(lls, bytes, nc));
                else if (cols[c].id == TM_MC2) {
                    double mx = lls[0], pt = 0, pa = 0;
                    for (size_t q = 1; q < nc; q++) mx = lls[q] > mx ? lls[q] : mx;
                    for (size_t q = 0; q < nc; q++) {
                        double p = exp(lls[q] - mx);
                        pa += p;
                        if (d->labels[q] != 0) pt += p;
                    }
                    v = pt / pa;
                }
                cols[c].x[i] = v;
                if (lm) json_object_set_new(lm, cols[c].name, json_real(v));
            }
        } else if (t->type == GG_TASK_GENERATE_UNTIL) {
            json_t *fr = log ? json_object() : NULL;
            for (int c = 0; c < ncol; c++) {
                char *f = apply_filters(&t->fs[c], d->gen);
                cols[c].x[i] = f ? exact_match(t, f, d->target) : 0;
                if (lm) {
                    char key[80];
                    snprintf(key, sizeof key, "exact_match,%s", t->fs[c].name);
                    json_object_set_new(lm, key, json_real(cols[c].x[i]));
                    json_object_set_new(fr, t->fs[c].name, json_string(f ? f : ""));
                }
                free(f);
            }
            if (log) json_object_set_new(log, "filtered_resps", fr);
        } else if (t->type == GG_TASK_LOGLIKELIHOOD) {
            d->ll = lr[d->req0].logprob;
            d->greedy = lr[d->req0].greedy;
            for (int c = 0; c < ncol; c++) {
                cols[c].x[i] = cols[c].id == TM_PPL ? -d->ll : d->greedy;
                if (cols[c].w) cols[c].w[i] = 1;
                if (lm) json_object_set_new(lm, cols[c].name, json_real(cols[c].id == TM_PPL ? d->ll : d->greedy));
            }
        } else {
            size_t tl = strlen(d->target);
            for (int c = 0; c < ncol; c++) {
                cols[c].x[i] = -d->ll;
                cols[c].w[i] = cols[c].id == TM_WORD_PPL ? (double)gg_task_count_words(d->target, tl)
                               : cols[c].id == TM_TOKEN_PPL ? (double)d->ntok : (double)tl;
            }
            if (lm) {
                json_object_set_new(lm, "loglikelihood", json_real(d->ll));
                json_object_set_new(lm, "words", json_integer((json_int_t)gg_task_count_words(d->target, tl)));
                json_object_set_new(lm, "bytes", json_integer((json_int_t)tl));
                json_object_set_new(lm, "tokens", json_integer((json_int_t)d->ntok));
            }
        }
        if (log) {
            json_object_set_new(log, "task", json_string(t->name));
            json_object_set_new(log, "doc_id", json_integer((json_int_t)i));
            json_object_set(log, "doc", json_array_get(t->test.docs, i));
            json_object_set_new(log, "prompt", json_string(d->ctx));
            json_object_set_new(log, "target", d->target ? json_string(d->target) : json_null());
            if (t->type == GG_TASK_MULTIPLE_CHOICE || t->type == GG_TASK_LOGLIKELIHOOD) {
                json_t *args = json_array(), *resps = json_array();
                for (size_t c = 0; c < d->nreq; c++) {
                    const char *cs = d->conts ? d->conts[c] : NULL;
                    json_t *a = json_array();
                    if (t->multiple_input) {
                        char *ct = cat(t->target_delim, d->target ? d->target : "");
                        json_array_append_new(a, json_string(cs ? cs : ""));
                        json_array_append_new(a, json_string(ct ? ct : ""));
                        free(ct);
                    } else {
                        json_array_append_new(a, json_string(d->ctx));
                        json_array_append_new(a, json_string(cs ? cs : d->target ? d->target : ""));
                    }
                    json_array_append_new(args, a);
                    gg_ll_req *q = &lr[d->req0 + c];
                    json_array_append_new(resps, json_pack("[f,b,i,i]", q->logprob, q->greedy, (int)q->n_ctx, (int)q->n_cont));
                }
                json_object_set_new(log, "arguments", args);
                json_object_set_new(log, "resps", resps);
                if (d->ngold) {
                    json_t *g = json_array();
                    for (int q = 0; q < d->ngold; q++) json_array_append_new(g, json_integer(d->gold[q]));
                    json_object_set_new(log, "gold", g);
                }
            } else if (t->type == GG_TASK_GENERATE_UNTIL) {
                json_object_set_new(log, "resps", json_pack("[s]", d->gen ? d->gen : ""));
            }
            json_object_set_new(log, "metrics", lm);
            char *line = json_dumps(log, JSON_COMPACT | JSON_ENSURE_ASCII);
            if (line) {
                fputs(line, o->log_samples);
                fputc('\n', o->log_samples);
                free(line);
            }
            json_decref(log);
        }
    }

    /* 4. aggregate */
    for (int c = 0; c < ncol; c++) put_metric(res, &cols[c], nd, o, 1234 + (uint64_t)c);
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    res->seconds = (double)(ts1.tv_sec - ts0.tv_sec) + 1e-9 * (double)(ts1.tv_nsec - ts0.tv_nsec);
    rc = 0;
out:
    for (int c = 0; c < ncol; c++) {
        free(cols[c].x);
        free(cols[c].w);
    }
    if (rt) {
        size_t nrt = t->type == GG_TASK_GENERATE_UNTIL ? nd : nreq;
        for (size_t i = 0; i < nrt; i++) {
            free(rt[i].ctx);
            free(rt[i].cont);
        }
    }
    free(rt);
    free(lr);
    if (gr) gg_gen_req_free_text(gr, nd);
    free(gr);
    for (size_t i = 0; i < nd; i++) dstate_free(&ds[i]);
    free(ds);
    return rc;
}
