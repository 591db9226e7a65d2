/* test_eval.c — ggeval's scoring and tasks (models/eval.h, models/task.h)
 * against references computed outside them:
 *  - loglikelihood on the llama2-mha fixture equals Σ log-softmax of the
 *    fixture's ref_logits.f32 (transformers) for every context/continuation
 *    split, with and without prefix reuse;
 *  - rolling windows score every token exactly once (a text > 3 × ctx), and
 *    perplexity = exp(mean NLL) of the per-token scores, which equal a
 *    direct gg_session evaluation;
 *  - acc / acc_norm / acc_bytes / mc2 of a synthetic multiple-choice set on
 *    the demo model, recomputed in this file from gg_session logits and its
 *    own tokenization split, character and byte counts; a loglikelihood
 *    task's perplexity = exp(−mean ll) of the same direct scores;
 *  - generate_until stops at stop strings; GSM8K-style filters and
 *    exact_match; deterministic few-shot contexts; the YAML subset; bad task
 *    files fail with FILE:LINE; word counting and standard errors. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend-cpu/cpu_backend.h"
#include "models/eval.h"
#include "models/task.h"
#include "models/tokenizer.h"
#include "tests/check.h"
#include "tests/fixture_gg.h"

static char tmpdir[] = "/tmp/gg_test_eval_XXXXXX";
static gg_backend *be;
static char tasks_dir[512];

/* ---- the llama2-mha fixture ---- */

static int32_t ref_ids[2][24];
static float *ref_logits; /* [2, 24, 1000] */
static gg_file *fx_file;
static gg_model *fx_model;

static int load_fixture(void) {
    char p[1024], gg[1024];
    snprintf(p, sizeof p, "%s/hf/llama2-mha/reference.json", check_fixtures());
    json_t *j = json_load_file(p, 0, NULL);
    if (!j) return -1;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 24; i++)
            ref_ids[s][i] = (int32_t)json_integer_value(json_array_get(json_array_get(json_object_get(j, "ids"), s), i));
    json_decref(j);
    snprintf(p, sizeof p, "%s/hf/llama2-mha/ref_logits.f32", check_fixtures());
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    ref_logits = malloc(2 * 24 * 1000 * sizeof *ref_logits);
    size_t got = fread(ref_logits, sizeof *ref_logits, 2 * 24 * 1000, f);
    fclose(f);
    if (got != 2 * 24 * 1000) return -1;
    gg_err err;
    if (fixture_gg("llama2-mha", GG_TYPE_F32, tmpdir, gg, sizeof gg)) return -1;
    if (gg_file_open(&fx_file, gg, 0, &err) || gg_model_load(&fx_model, fx_file, be, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Σ_{j=c}^{23} log_softmax(ref[s][j-1])[ids[j]], in double, from the reference logits. */
static double ref_ll(int s, int c, int *greedy) {
    double sum = 0;
    *greedy = 1;
    for (int j = c; j < 24; j++) {
        const float *row = ref_logits + ((size_t)s * 24 + (size_t)(j - 1)) * 1000;
        double mx = row[0];
        int am = 0;
        for (int v = 1; v < 1000; v++)
            if (row[v] > mx) {
                mx = row[v];
                am = v;
            }
        double z = 0;
        for (int v = 0; v < 1000; v++) z += exp(row[v] - mx);
        sum += row[ref_ids[s][j]] - mx - log(z);
        *greedy &= am == ref_ids[s][j];
    }
    return sum;
}

static void test_loglikelihood_ref_logits(void) {
    REQUIRE(fx_model, "fixture not loaded");
    static const int splits[] = {1, 2, 5, 8, 12, 17, 23};
    enum { NS = sizeof splits / sizeof splits[0] };
    for (int reuse = 0; reuse < 2; reuse++) {
        gg_eval *e;
        gg_err err;
        REQUIRE(gg_eval_new(&e, fx_model, 64, reuse ? 7 : 64, &err) == 0, "%s", err.msg);
        gg_eval_set_reuse(e, reuse);
        gg_ll_req r[2 * NS];
        float tl[2 * NS][24];
        for (int s = 0; s < 2; s++)
            for (int k = 0; k < NS; k++) {
                int c = splits[k];
                r[s * NS + k] = (gg_ll_req){.ctx = ref_ids[s], .n_ctx = (size_t)c, .cont = ref_ids[s] + c,
                                            .n_cont = (size_t)(24 - c), .token_logprobs = tl[s * NS + k]};
            }
        REQUIRE(gg_eval_loglikelihood(e, r, 2 * NS, NULL, NULL, &err) == 0, "%s", err.msg);
        for (int s = 0; s < 2; s++)
            for (int k = 0; k < NS; k++) {
                int g;
                double want = ref_ll(s, splits[k], &g), got = r[s * NS + k].logprob;
                CHECK(fabs(got - want) <= 1e-4 * fabs(want), "reuse %d seq %d split %d: %.8f vs ref %.8f", reuse, s,
                      splits[k], got, want);
                CHECK(r[s * NS + k].greedy == g, "greedy flag seq %d split %d", s, splits[k]);
                double tsum = 0;
                for (int j = 0; j < 24 - splits[k]; j++) tsum += tl[s * NS + k][j];
                CHECK(fabs(tsum - got) < 1e-3, "token logprobs sum %.6f vs %.6f", tsum, got);
            }
        gg_eval_stats st;
        gg_eval_stats_get(e, &st);
        CHECK(st.requests == 2 * NS, "requests %lld", (long long)st.requests);
        if (reuse) CHECK(st.tokens_reused > 0, "no prefix reuse happened");
        else CHECK(st.tokens_reused == 0, "reuse off but %lld reused", (long long)st.tokens_reused);
        gg_eval_free(e);
    }
}

static void test_truncation_left(void) {
    /* a context longer than the window: lm-eval keeps the last ctx+1 tokens */
    REQUIRE(fx_model, "fixture not loaded");
    gg_eval *e, *e2;
    gg_err err;
    REQUIRE(gg_eval_new(&e, fx_model, 10, 4, &err) == 0, "%s", err.msg);
    REQUIRE(gg_eval_new(&e2, fx_model, 64, 64, &err) == 0, "%s", err.msg);
    gg_ll_req a = {.ctx = ref_ids[0], .n_ctx = 20, .cont = ref_ids[0] + 20, .n_cont = 4};
    gg_ll_req b = {.ctx = ref_ids[0] + 13, .n_ctx = 7, .cont = ref_ids[0] + 20, .n_cont = 4};
    REQUIRE(gg_eval_loglikelihood(e, &a, 1, NULL, NULL, &err) == 0, "%s", err.msg);
    REQUIRE(gg_eval_loglikelihood(e2, &b, 1, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(fabs(a.logprob - b.logprob) < 1e-5, "truncated %.6f vs explicit %.6f", a.logprob, b.logprob);
    gg_ll_req big = {.ctx = ref_ids[0], .n_ctx = 1, .cont = ref_ids[0] + 1, .n_cont = 11};
    CHECK(gg_eval_loglikelihood(e, &big, 1, NULL, NULL, &err) == -1 && strstr(err.msg, "longer than the context"),
          "continuation longer than the window: %s", err.msg);
    gg_eval_free(e);
    gg_eval_free(e2);
}

static void test_rolling_windows(void) {
    for (size_t max_len = 1; max_len <= 9; max_len += 4)
        for (size_t stride = 1; stride <= max_len; stride++)
            for (size_t n = 1; n <= 40; n += 3) {
                size_t nw = gg_eval_rolling_windows(n, max_len, stride, NULL);
                gg_window w[64];
                REQUIRE(nw <= 64, "too many windows");
                gg_eval_rolling_windows(n, max_len, stride, w);
                int seen[64] = {0};
                size_t next = 0;
                for (size_t i = 0; i < nw; i++) {
                    CHECK(w[i].pred_start == next, "n %zu len %zu stride %zu: window %zu starts at %zu, not %zu", n,
                          max_len, stride, i, w[i].pred_start, next);
                    for (size_t k = w[i].pred_start; k < w[i].pred_start + w[i].pred_len; k++) seen[k]++;
                    next = w[i].pred_start + w[i].pred_len;
                    size_t nctx = w[i].ctx_prefix ? 1 : w[i].pred_start - w[i].ctx_start;
                    CHECK(nctx + w[i].pred_len - 1 <= max_len, "window %zu input longer than %zu", i, max_len);
                    CHECK(i == 0 ? w[i].ctx_prefix : !w[i].ctx_prefix, "only the first window has the prefix");
                    if (i > 0) CHECK(nctx + w[i].pred_len - 1 == max_len, "later windows are full (%zu)", i);
                }
                for (size_t k = 0; k < n; k++) CHECK(seen[k] == 1, "token %zu scored %d times", k, seen[k]);
                CHECK(next == n, "covered %zu of %zu", next, n);
            }
    /* lm-eval's example: 10 tokens, max_seq_len 4, context_len 1 (stride 4) */
    gg_window w[8];
    size_t nw = gg_eval_rolling_windows(10, 4, 4, w);
    CHECK(nw == 3 && w[1].ctx_start == 3 && w[1].pred_start == 4 && w[1].pred_len == 4 && w[2].ctx_start == 5 &&
              w[2].pred_start == 8 && w[2].pred_len == 2,
          "lm-eval example windows: %zu", nw);
}

static void test_rolling_scores(void) {
    REQUIRE(fx_model, "fixture not loaded");
    enum { N = 110, CTX = 32 }; /* > 3 x ctx */
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = ref_ids[i % 2][(i * 7) % 24];
    gg_eval *e;
    gg_err err;
    REQUIRE(gg_eval_new(&e, fx_model, CTX, 16, &err) == 0, "%s", err.msg);
    float tl[N];
    for (int i = 0; i < N; i++) tl[i] = NAN;
    double lp;
    size_t nw;
    REQUIRE(gg_eval_rolling(e, toks, N, 1, CTX, CTX, &lp, tl, &nw, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(nw == (N + CTX - 1) / CTX, "windows %zu", nw);
    double sum = 0;
    int nan = 0;
    for (int i = 0; i < N; i++) {
        nan += tl[i] != tl[i];
        sum += tl[i];
    }
    CHECK(nan == 0, "%d tokens not scored", nan);
    CHECK(fabs(sum - lp) < 1e-3 * fabs(lp), "Σ token scores %.5f vs %.5f", sum, lp);
    double ppl = exp(-lp / N), ppl2 = exp(-sum / N);
    CHECK(fabs(ppl - ppl2) < 1e-3 * ppl, "perplexity %.6f vs exp(mean NLL) %.6f", ppl, ppl2);

    /* direct: the first window is [BOS, t0..t30] → t0..t31, the second
     * [t31..t62] → t32..t63 (one token of context, lm-eval's disjoint window) */
    gg_session *s;
    REQUIRE(gg_session_new(&s, fx_model, 64, 64, &err) == 0, "%s", err.msg);
    int32_t in[CTX];
    float *lg = malloc((size_t)CTX * 1000 * sizeof *lg);
    in[0] = 1;
    memcpy(in + 1, toks, (CTX - 1) * sizeof *in);
    REQUIRE(gg_session_eval(s, in, CTX, lg, 1, &err) == 0, "%s", err.msg);
    double maxd = 0;
    for (int j = 0; j < CTX; j++) {
        double d = fabs(gg_eval_logprob(lg + (size_t)j * 1000, 1000, toks[j], NULL) - tl[j]);
        maxd = d > maxd ? d : maxd;
    }
    gg_session_truncate(s, 0);
    REQUIRE(gg_session_eval(s, toks + CTX - 1, CTX, lg, 1, &err) == 0, "%s", err.msg);
    for (int j = 0; j < CTX; j++) {
        double d = fabs(gg_eval_logprob(lg + (size_t)j * 1000, 1000, toks[CTX + j], NULL) - tl[CTX + j]);
        maxd = d > maxd ? d : maxd;
    }
    CHECK(maxd < 1e-4, "rolling token scores differ from a direct evaluation by %g", maxd);
    free(lg);
    gg_session_free(s);

    /* KL of a model against itself: 0, full agreement */
    gg_eval *e2;
    REQUIRE(gg_eval_new(&e2, fx_model, CTX, 16, &err) == 0, "%s", err.msg);
    gg_kl_stats kl;
    REQUIRE(gg_eval_kl(e, e2, toks, N, 1, CTX, CTX, &kl, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(kl.n == N && kl.top1_agree == N && kl.kl_sum < 1e-9, "self KL: n %lld agree %lld kl %g", (long long)kl.n,
          (long long)kl.top1_agree, kl.kl_sum);
    CHECK(fabs(-kl.nll_model - lp) < 1e-3 * fabs(lp), "KL pass NLL %.5f vs rolling %.5f", kl.nll_model, -lp);
    gg_eval_free(e2);
    gg_eval_free(e);
}

/* ---- the demo model (Llama 2 tokenizer) ---- */

static gg_file *dm_file;
static gg_model *dm_model;
static gg_tokenizer *dm_tok;

static int load_demo(void) {
    char dir[600], out[700], cmd[1400];
    snprintf(dir, sizeof dir, "%s/demo-hf", tmpdir);
    snprintf(cmd, sizeof cmd, "bash tests/make_demo_model.sh '%s' >/dev/null", dir);
    if (system(cmd) != 0) return -1;
    snprintf(out, sizeof out, "%s/demo.f32.gg", tmpdir);
    if (fixture_convert_dir(dir, out, GG_TYPE_F32, NULL)) return -1;
    gg_err err;
    if (gg_file_open(&dm_file, out, 0, &err) || gg_model_load(&dm_model, dm_file, be, &err) ||
        gg_tokenizer_load_gg(&dm_tok, dm_file, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

/* log p(cont | ctx) by a fresh session: this file's own split and sum. */
static double direct_ll(const char *ctx, const char *cont) {
    gg_err err;
    int32_t *w, *c;
    size_t nw, nc;
    size_t lc = strlen(ctx), lt = strlen(cont);
    char *whole = malloc(lc + lt + 1);
    memcpy(whole, ctx, lc);
    memcpy(whole + lc, cont, lt + 1);
    if (gg_tokenizer_encode(dm_tok, whole, lc + lt, 0, &w, &nw, &err) ||
        gg_tokenizer_encode(dm_tok, ctx, lc, 0, &c, &nc, &err))
        return NAN;
    free(whole);
    gg_session *s;
    if (gg_session_new(&s, dm_model, 256, 256, &err)) return NAN;
    int64_t V = gg_model_cfg(dm_model)->vocab;
    float *lg = malloc((nw - 1) * (size_t)V * sizeof *lg);
    double sum = NAN;
    if (!gg_session_eval(s, w, (int64_t)nw - 1, lg, 1, &err)) {
        sum = 0;
        for (size_t j = nc; j < nw; j++) {
            const float *row = lg + (j - 1) * (size_t)V;
            double mx = row[0], z = 0;
            for (int64_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            for (int64_t v = 0; v < V; v++) z += exp(row[v] - mx);
            sum += row[w[j]] - mx - log(z);
        }
    }
    free(lg);
    free(w);
    free(c);
    gg_session_free(s);
    return sum;
}

static size_t code_points(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int load_task(gg_task **t, const char *rel) {
    char p[1024];
    gg_err err;
    snprintf(p, sizeof p, "%s/%s", tasks_dir, rel);
    if (gg_task_load(t, p, &err) || gg_task_load_docs(*t, NULL, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static const gg_metric *metric(const gg_task_result *r, const char *name, const char *filter) {
    for (size_t i = 0; i < r->n_metrics; i++)
        if (strcmp(r->m[i].name, name) == 0 && (!filter || strcmp(r->m[i].filter, filter) == 0)) return &r->m[i];
    return NULL;
}

static gg_task_opts base_opts(void) {
    return (gg_task_opts){.num_fewshot = -1, .seed = 1234, .bootstrap_iters = 200, .prefix_token = 1, .eos = {2, -1}};
}

static void test_mc_metrics(void) {
    REQUIRE(dm_model, "demo model not loaded");
    gg_task *t;
    REQUIRE(load_task(&t, "synth/mc.yaml") == 0, "load");
    gg_eval *e;
    gg_err err;
    REQUIRE(gg_eval_new(&e, dm_model, 256, 64, &err) == 0, "%s", err.msg);
    gg_task_opts o = base_opts();
    gg_task_result r;
    REQUIRE(gg_task_run(t, e, dm_tok, &o, &r, &err) == 0, "%s", err.msg);
    /* independently: the documents, each choice's loglikelihood by a fresh session */
    char p[1024];
    snprintf(p, sizeof p, "%s/synth/test.jsonl", tasks_dir);
    FILE *f = fopen(p, "r");
    REQUIRE(f, "open %s", p);
    char line[4096];
    double acc = 0, accn = 0, accb = 0, n = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *d = json_loads(line, 0, NULL);
        REQUIRE(d, "bad line");
        char ctx[1024];
        snprintf(ctx, sizeof ctx, "Q: %s\nA:", json_string_value(json_object_get(d, "question")));
        json_t *ch = json_object_get(d, "choices");
        int gold = (int)json_integer_value(json_object_get(d, "label"));
        double best = -INFINITY, bestn = -INFINITY, bestb = -INFINITY;
        int a = -1, an = -1, ab = -1;
        for (size_t c = 0; c < json_array_size(ch); c++) {
            const char *cs = json_string_value(json_array_get(ch, c));
            char cont[512];
            snprintf(cont, sizeof cont, " %s", cs);
            double ll = direct_ll(ctx, cont);
            if (ll > best) best = ll, a = (int)c;
            if (ll / (double)code_points(cs) > bestn) bestn = ll / (double)code_points(cs), an = (int)c;
            if (ll / (double)strlen(cs) > bestb) bestb = ll / (double)strlen(cs), ab = (int)c;
        }
        acc += a == gold;
        accn += an == gold;
        accb += ab == gold;
        n++;
        json_decref(d);
    }
    fclose(f);
    const gg_metric *m1 = metric(&r, "acc", NULL), *m2 = metric(&r, "acc_norm", NULL), *m3 = metric(&r, "acc_bytes", NULL);
    REQUIRE(m1 && m2 && m3, "metrics missing");
    CHECK(r.n_docs == 10 && n == 10, "docs %zu", r.n_docs);
    CHECK(fabs(m1->value - acc / n) < 1e-12, "acc %.4f vs independent %.4f", m1->value, acc / n);
    CHECK(fabs(m2->value - accn / n) < 1e-12, "acc_norm %.4f vs independent %.4f", m2->value, accn / n);
    CHECK(fabs(m3->value - accb / n) < 1e-12, "acc_bytes %.4f vs independent %.4f", m3->value, accb / n);
    /* lm-eval's stderr of a mean: sqrt(p(1-p)/(n-1)) for 0/1 values */
    double pm = m1->value, se = sqrt(pm * (1 - pm) / (n - 1));
    CHECK(fabs(m1->stderr_ - se) < 1e-12, "acc stderr %.6f vs %.6f", m1->stderr_, se);
    CHECK(m1->stderr_boot > 0 && fabs(m1->stderr_boot - se) < 0.35 * se, "bootstrap stderr %.4f vs %.4f",
          m1->stderr_boot, se);
    /* the same with prefix reuse off: identical */
    gg_eval_set_reuse(e, 0);
    gg_task_result r2;
    REQUIRE(gg_task_run(t, e, dm_tok, &o, &r2, &err) == 0, "%s", err.msg);
    for (size_t i = 0; i < r.n_metrics; i++)
        CHECK(r.m[i].value == r2.m[i].value, "%s differs without reuse", r.m[i].name);
    gg_eval_free(e);
    gg_task_free(t);
}

static void test_loglikelihood_task(void) {
    REQUIRE(dm_model, "demo model not loaded");
    gg_task *t;
    REQUIRE(load_task(&t, "synth/ll.yaml") == 0, "load");
    gg_eval *e;
    gg_err err;
    REQUIRE(gg_eval_new(&e, dm_model, 256, 64, &err) == 0, "%s", err.msg);
    gg_task_opts o = base_opts();
    gg_task_result r;
    REQUIRE(gg_task_run(t, e, dm_tok, &o, &r, &err) == 0, "%s", err.msg);
    char p[1024], line[4096];
    snprintf(p, sizeof p, "%s/synth/test.jsonl", tasks_dir);
    FILE *f = fopen(p, "r");
    REQUIRE(f, "open %s", p);
    double sum = 0;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *d = json_loads(line, 0, NULL);
        char ctx[1024], cont[512];
        snprintf(ctx, sizeof ctx, "Q: %s\nA:", json_string_value(json_object_get(d, "question")));
        snprintf(cont, sizeof cont, " %s",
                 json_string_value(json_array_get(json_object_get(d, "choices"),
                                                  (size_t)json_integer_value(json_object_get(d, "label")))));
        sum += direct_ll(ctx, cont); /* the delimiter "##" is not part of the request */
        n++;
        json_decref(d);
    }
    fclose(f);
    const gg_metric *m = metric(&r, "perplexity", NULL);
    REQUIRE(m && metric(&r, "acc", NULL), "metrics missing");
    double want = exp(-sum / n);
    CHECK(fabs(m->value - want) < 1e-6 * want, "perplexity %.6f vs exp(-mean ll) %.6f", m->value, want);
    CHECK(m->has_stderr && m->stderr_ == m->stderr_boot, "perplexity stderr is the bootstrap one");
    gg_eval_free(e);
    gg_task_free(t);
}

static void test_mc2(void) {
    REQUIRE(dm_model, "demo model not loaded");
    gg_task *t;
    REQUIRE(load_task(&t, "synth/mc2.yaml") == 0, "load");
    gg_eval *e;
    gg_err err;
    REQUIRE(gg_eval_new(&e, dm_model, 256, 64, &err) == 0, "%s", err.msg);
    gg_task_opts o = base_opts();
    char lp[700];
    snprintf(lp, sizeof lp, "%s/mc2.log", tmpdir);
    o.log_samples = fopen(lp, "w");
    gg_task_result r;
    REQUIRE(gg_task_run(t, e, dm_tok, &o, &r, &err) == 0, "%s", err.msg);
    fclose(o.log_samples);
    /* mc2 from the logged loglikelihoods: the first two choices are true */
    FILE *f = fopen(lp, "r");
    char line[1 << 14];
    double sum = 0;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        json_t *rs = json_object_get(j, "resps");
        double pt = 0, pa = 0;
        for (size_t c = 0; c < json_array_size(rs); c++) {
            double p = exp(json_real_value(json_array_get(json_array_get(rs, c), 0)));
            pa += p;
            if (c < 2) pt += p;
        }
        sum += pt / pa;
        n++;
        json_decref(j);
    }
    fclose(f);
    const gg_metric *m = metric(&r, "mc2", NULL);
    REQUIRE(m && n == 6, "mc2 missing or %d lines", n);
    CHECK(fabs(m->value - sum / n) < 1e-9, "mc2 %.6f vs %.6f", m->value, sum / n);
    gg_eval_free(e);
    gg_task_free(t);
}

static void test_generate_stops(void) {
    REQUIRE(dm_model, "demo model not loaded");
    gg_eval *e;
    gg_err err;
    REQUIRE(gg_eval_new(&e, dm_model, 128, 64, &err) == 0, "%s", err.msg);
    int32_t *ids;
    size_t n;
    REQUIRE(gg_tokenizer_encode(dm_tok, "The capital of France is", 24, 1, &ids, &n, &err) == 0, "%s", err.msg);
    int32_t eos[1] = {-1};
    gg_gen_req a = {.ctx = ids, .n_ctx = n, .max_gen = 12};
    REQUIRE(gg_eval_generate(e, dm_tok, &a, 1, eos, 1, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(a.n_gen == 12, "no stop: %zu tokens", a.n_gen);
    size_t len = strlen(a.text);
    REQUIRE(len > 8, "generated text too short: '%s'", a.text);
    /* a stop string from the middle of that text */
    char stop[5];
    memcpy(stop, a.text + len / 2, 4);
    stop[4] = 0;
    const char *until[] = {"never-appears", stop};
    gg_gen_req b = {.ctx = ids, .n_ctx = n, .max_gen = 12, .until = until, .n_until = 2};
    REQUIRE(gg_eval_generate(e, dm_tok, &b, 1, eos, 1, NULL, NULL, &err) == 0, "%s", err.msg);
    char *hit = strstr(a.text, stop);
    REQUIRE(hit, "stop not in text");
    CHECK(strlen(b.text) == (size_t)(hit - a.text) && strncmp(b.text, a.text, strlen(b.text)) == 0,
          "stopped text '%s' is not the prefix of '%s' before '%s'", b.text, a.text, stop);
    CHECK(b.n_gen < a.n_gen, "did not stop early (%zu tokens)", b.n_gen);
    /* EOS: the first generated token made an end id → empty output */
    gg_gen_req c = {.ctx = ids, .n_ctx = n, .max_gen = 12};
    gg_gen_req_free_text(&a, 1);
    gg_gen_req_free_text(&b, 1);
    /* the argmax of the prompt as "EOS" */
    gg_session *s;
    REQUIRE(gg_session_new(&s, dm_model, 128, 64, &err) == 0, "%s", err.msg);
    float *lg = malloc((size_t)gg_model_cfg(dm_model)->vocab * sizeof *lg);
    REQUIRE(gg_session_eval(s, ids, (int64_t)n, lg, 0, &err) == 0, "%s", err.msg);
    int32_t am = 0;
    for (int64_t v = 1; v < gg_model_cfg(dm_model)->vocab; v++)
        if (lg[v] > lg[am]) am = (int32_t)v;
    REQUIRE(gg_eval_generate(e, dm_tok, &c, 1, &am, 1, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(c.n_gen == 0 && c.text[0] == 0, "EOS first: %zu tokens '%s'", c.n_gen, c.text);
    gg_gen_req_free_text(&c, 1);
    free(lg);
    gg_session_free(s);
    free(ids);
    gg_eval_free(e);
}

static void test_filters_exact_match(void) {
    gg_task *t;
    REQUIRE(load_task(&t, "synth/gen.yaml") == 0, "load");
    REQUIRE(gg_task_n_filters(t) == 2, "filters %d", gg_task_n_filters(t));
    CHECK(strcmp(gg_task_filter_name(t, 0), "strict-match") == 0, "name 0");
    static const struct {
        const char *resp, *target;
        int strict, flex;
    } cases[] = {
        {" 3 plus 3 is 6.\n#### 6", "3 plus 3 is 6.\n#### 6", 1, 1},
        {" The answer is 1,234 dollars.", "... #### 1234", 0, 1},
        {" so $5.", "#### 5", 0, 0}, /* flexible takes "$5." → "5." → regexes → "5" ... see below */
        {" #### 72.", "x #### 72", 1, 1},
        {" no number here", "#### 7", 0, 0},
        {" 12 then 8", "#### 8", 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *f0, *f1;
        int s = gg_task_exact_match(t, 0, cases[i].resp, cases[i].target, &f0);
        int x = gg_task_exact_match(t, 1, cases[i].resp, cases[i].target, &f1);
        int want_flex = cases[i].flex;
        if (i == 2) want_flex = 1; /* "$5." matches [$0-9.,]{2,}; "$" and a final "." are ignored */
        CHECK(s == cases[i].strict, "case %zu strict: %d ('%s')", i, s, f0);
        CHECK(x == want_flex, "case %zu flexible: %d ('%s')", i, x, f1);
        if (i == 4) CHECK(strcmp(f0, "[invalid]") == 0 && strcmp(f1, "[invalid]") == 0, "fallback '%s' '%s'", f0, f1);
        free(f0);
        free(f1);
    }
    gg_task_free(t);
}

static void test_fewshot_determinism(void) {
    gg_task *t;
    REQUIRE(load_task(&t, "synth/mc.yaml") == 0, "load");
    gg_err err;
    int differ = 0;
    for (size_t i = 0; i < 10; i++) {
        char *a, *b, *c;
        REQUIRE(gg_task_context(t, i, 3, 42, &a, &err) == 0, "%s", err.msg);
        REQUIRE(gg_task_context(t, i, 3, 42, &b, &err) == 0, "%s", err.msg);
        REQUIRE(gg_task_context(t, i, 3, 43, &c, &err) == 0, "%s", err.msg);
        CHECK(strcmp(a, b) == 0, "doc %zu: same seed, different contexts", i);
        differ += strcmp(a, c) != 0;
        int q = 0;
        for (const char *p = a; (p = strstr(p, "Q: ")); p++) q++;
        CHECK(q == 4, "doc %zu: %d questions, want 3 examples + the doc", i, q);
        CHECK(strstr(a, "Example question number") != NULL, "examples come from the train split");
        /* each example: text, " ", target choice, "\n\n" */
        CHECK(strstr(a, "\nA: answer ") != NULL && strstr(a, "\n\nQ: ") != NULL, "example layout: %s", a);
        free(a);
        free(b);
        free(c);
    }
    CHECK(differ > 0, "seed does not change the draw");
    char *z;
    REQUIRE(gg_task_context(t, 0, 0, 1, &z, &err) == 0, "%s", err.msg);
    CHECK(strcmp(z, "Q: The sky is\nA:") == 0, "zero-shot context '%s'", z);
    free(z);
    gg_task_free(t);
}

static void test_yaml_subset(void) {
    static const char *y =
        "# comment\n"
        "---\n"
        "a: plain text  # trailing comment\n"
        "b: 'it''s'\n"
        "c: \"tab\\tnew\\nline \\u00e9\"\n"
        "d: [1, 2.5, \"x, y\", true, null, [n]]\n"
        "e:\n"
        "  - one\n"
        "  - key: v\n"
        "    k2: 3\n"
        "f:\n"
        "  g: h\n"
        "  i: {j: k, l: [m]}\n"
        "lit: |\n"
        "  line1\n"
        "    indented\n"
        "\n"
        "  line3\n"
        "fold: >-\n"
        "  a\n"
        "  b\n"
        "seq:\n"
        "- x\n"
        "- y\n"
        "yes_: yes\n"
        "neg: -12\n";
    json_t *v, *lines;
    gg_err err;
    REQUIRE(gg_task_yaml_parse(&v, &lines, y, strlen(y), "t.yaml", &err) == 0, "%s", err.msg);
    json_t *want = json_loads(
        "{\"a\": \"plain text\", \"b\": \"it's\", \"c\": \"tab\\tnew\\nline \\u00e9\","
        " \"d\": [1, 2.5, \"x, y\", true, null, [\"n\"]], \"e\": [\"one\", {\"key\": \"v\", \"k2\": 3}],"
        " \"f\": {\"g\": \"h\", \"i\": {\"j\": \"k\", \"l\": [\"m\"]}}, \"lit\": \"line1\\n  indented\\n\\nline3\\n\","
        " \"fold\": \"a b\", \"seq\": [\"x\", \"y\"], \"yes_\": true, \"neg\": -12}",
        0, NULL);
    char *got = json_dumps(v, JSON_SORT_KEYS), *exp_ = json_dumps(want, JSON_SORT_KEYS);
    CHECK(json_equal(v, want), "parsed\n%s\nwant\n%s", got, exp_);
    free(got);
    free(exp_);
    CHECK(json_integer_value(json_object_get(lines, "lit")) == 14, "line of lit: %lld",
          (long long)json_integer_value(json_object_get(lines, "lit")));
    json_decref(v);
    json_decref(lines);
    json_decref(want);
    static const struct {
        const char *src, *err;
    } bad[] = {
        {"a: 1\na: 2\n", "x.yaml:2: duplicate key 'a'"},
        {"a: 1\n\tb: 2\n", "x.yaml:2: a tab"},
        {"a: &anchor 1\n", "x.yaml:1: anchors"},
        {"a: !function f\n", "x.yaml:1: anchors, aliases and tags"},
        {"a: [1, 2\n", "x.yaml:1: unterminated flow"},
        {"a: \"open\n", "x.yaml:1: unterminated quoted"},
        {"a: 1\n  b: 2\n", "x.yaml:2: unexpected indentation"},
        {"- a\n", "x.yaml:1: a task file is a mapping"},
        {"a: 1\n---\nb: 2\n", "x.yaml:2: one document"},
        {"{\"a\": 1, \"a\": 2}", "x.yaml:1:"},
        {"a: \"\\q\"\n", "x.yaml:1: unknown escape"},
        {"", "x.yaml:1: the file is empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *x = NULL;
        int rc = gg_task_yaml_parse(&x, NULL, bad[i].src, strlen(bad[i].src), "x.yaml", &err);
        CHECK(rc == -1 && strstr(err.msg, bad[i].err), "case %zu: rc %d '%s', want '%s'", i, rc, rc ? err.msg : "",
              bad[i].err);
        json_decref(x);
    }
}

static void test_bad_task_files(void) {
    static const struct {
        const char *file, *want;
    } cases[] = {
        {"bad/tab.yaml", "bad/tab.yaml:4: a tab"},
        {"bad/unknown_key.yaml", "bad/unknown_key.yaml:5: unknown key 'doc_to_txet'"},
        {"bad/function.yaml", "bad/function.yaml:4: anchors, aliases and tags"},
        {"bad/output_type.yaml", "bad/output_type.yaml:3: output_type 'multiple_choise'"},
        {"bad/bad_doc.yaml", "data/test.jsonl:3:"},
        {"bad/jinja.yaml", "bad/jinja.yaml:4: doc_to_text: jinja: 1:"},
        {"bad/mc_no_choice.yaml", "bad/mc_no_choice.yaml:2: multiple_choice needs doc_to_choice"},
        {"bad/sampling.yaml", "bad/sampling.yaml:6: sampling is not supported"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[1024];
        gg_err err;
        gg_task *t = NULL;
        snprintf(p, sizeof p, "%s/%s", tasks_dir, cases[i].file);
        int rc = gg_task_load(&t, p, &err);
        if (!rc) rc = gg_task_load_docs(t, NULL, &err);
        CHECK(rc == -1 && strstr(err.msg, cases[i].want), "%s: rc %d '%s'", cases[i].file, rc, rc ? err.msg : "");
        gg_task_free(t);
    }
}

static void test_counts_and_stderr(void) {
    static const struct {
        const char *s;
        size_t words;
    } w[] = {{"a b c", 3}, {" a  b ", 4}, {"", 1}, {"one\n\ttwo", 2}, {"x\xc2\xa0y", 2}, {"a\xe3\x80\x80" "b c", 3}};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        CHECK(gg_task_count_words(w[i].s, strlen(w[i].s)) == w[i].words, "words('%s') = %zu", w[i].s,
              gg_task_count_words(w[i].s, strlen(w[i].s)));
    CHECK(gg_task_count_chars("h\xc3\xa9llo \xe6\x97\xa5", 10) == 7, "chars");
    double x[] = {1, 0, 1, 1, 0, 1, 0, 1}, m, se;
    gg_task_mean_stderr(x, 8, &m, &se);
    CHECK(fabs(m - 0.625) < 1e-15 && fabs(se - sqrt(0.625 * 0.375 / 7)) < 1e-12, "mean %.4f se %.6f", m, se);
    double b1 = gg_task_bootstrap(x, NULL, 8, 0, 2000, 7), b2 = gg_task_bootstrap(x, NULL, 8, 0, 2000, 7);
    CHECK(b1 == b2 && fabs(b1 - se) < 0.2 * se, "bootstrap %.4f %.4f vs %.4f", b1, b2, se);
}

static void cleanup(void) { check_rm_tree(tmpdir); }

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    snprintf(tasks_dir, sizeof tasks_dir, "%s/tasks", check_fixtures());
    gg_err err;
    be = gg_backend_cpu_new(2, &err);
    if (!be) return 1;
    if (load_fixture()) fprintf(stderr, "llama2-mha fixture: cannot load\n");
    if (load_demo()) fprintf(stderr, "demo model: cannot build\n");
    RUN(test_loglikelihood_ref_logits);
    RUN(test_truncation_left);
    RUN(test_rolling_windows);
    RUN(test_rolling_scores);
    RUN(test_mc_metrics);
    RUN(test_loglikelihood_task);
    RUN(test_mc2);
    RUN(test_generate_stops);
    RUN(test_filters_exact_match);
    RUN(test_fewshot_determinism);
    RUN(test_yaml_subset);
    RUN(test_bad_task_files);
    RUN(test_counts_and_stderr);
    gg_tokenizer_free(dm_tok);
    gg_model_free(dm_model);
    gg_file_close(dm_file);
    gg_model_free(fx_model);
    gg_file_close(fx_file);
    free(ref_logits);
    gg_backend_free(be);
    cleanup();
    return check_done();
}
