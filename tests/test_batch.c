/* test_batch.c — one forward over several sessions (gg_batch_eval in
 * models/model.h) equals gg_session_eval of each session alone: six
 * sessions with prompts of 1..17 tokens and mixed adapters (none, A, B in
 * one batch), then decode steps mixed with a late prompt chunk, on
 * llama2-mha (MHA, its PEFT adapter as A), llama3-gqa (GQA) and
 * falcon7b-style (parallel attention, MQA, LayerNorm, GELU), f32, q8 and
 * nf4 (a first step of 55 rows: q8/nf4 take the sgemm path there, the
 * reference the GEMV), and mistral-gqa-f16 with a sliding window of 6;
 * max abs logit difference <= 1e-4 (printed). Also: a batch of one, the
 * argument checks (capacity, same session twice, another model's session,
 * ids outside the vocabulary, past the context, no tokens) with nothing
 * evaluated on error. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "models/model_internal.h"
#include "tests/check.h"
#include "tests/fixture_gg.h"
#include "tests/random_lora.h"
#include "tests/rng.h"
#include "tools/engine.h"

#define TOL 1e-4

static char tmpdir[] = "/tmp/gg_test_batch_XXXXXX";
static gg_backend *be;

static double maxdiff(const float *a, const float *b, size_t n) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > mx || isnan(d)) mx = isnan(d) ? INFINITY : d;
    }
    return mx;
}

enum { NS = 6, MAXP = 30, STEPS = 4 };

/* Six sequences: prompt lengths, adapters (0 none, 1 A, 2 B), whether all
 * prompt logits are wanted; then STEPS decode tokens each, except sequence
 * 5, whose prompt is fed in two parts (the second with the first decode
 * step of the others). */
static const int64_t plen[NS] = {1, 5, 30, 3, 9, 12};
static const int which[NS] = {0, 1, 2, 1, 0, 2};
static const int allp[NS] = {1, 0, 1, 0, 0, 1};

static double run_fixture(const char *fix, gg_type t, int peft, int64_t window) {
    char path[600];
    gg_err err;
    gg_file *f;
    gg_model *m;
    if (fixture_gg(fix, t, tmpdir, path, sizeof path) || gg_file_open(&f, path, 0, &err)) return INFINITY;
    if (gg_model_load(&m, f, be, &err)) {
        fprintf(stderr, "%s: %s\n", fix, err.msg);
        gg_file_close(f);
        return INFINITY;
    }
    int64_t V = gg_model_cfg(m)->vocab;
    if (window) m->cfg.sliding_window = window; /* a window shorter than the prompts */
    gg_lora *A = NULL, *B = test_random_lora(m, 11, 3, 0.5f);
    if (peft) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/hf/%s/lora", check_fixtures(), fix);
        if (gg_tool_load_adapter(&A, m, f, dir, &err)) fprintf(stderr, "%s: %s\n", fix, err.msg);
    } else {
        A = test_random_lora(m, 12, 5, 0.5f);
    }
    float scA = 1.0f, scB = 0.75f;
    int32_t ids[NS][MAXP + STEPS];
    rng_seed(99);
    for (int i = 0; i < NS; i++)
        for (int j = 0; j < MAXP + STEPS; j++) ids[i][j] = (int32_t)(rng_u64() % (uint64_t)V);

    /* Reference: each sequence alone, token by token after the prompt. */
    gg_session *ref[NS], *bs[NS];
    size_t per = (size_t)(MAXP + STEPS) * (size_t)V;
    float *want = calloc(NS * per, sizeof *want), *got = calloc(NS * per, sizeof *got);
    float *out = malloc((size_t)(NS * (MAXP + 1)) * (size_t)V * sizeof *out);
    double mx = 0;
    int ok = A && B;
    for (int i = 0; i < NS && ok; i++) {
        ok = gg_session_new(&ref[i], m, 64, 8, &err) == 0 && gg_session_new(&bs[i], m, 64, 1, &err) == 0;
        gg_lora *l = which[i] == 1 ? A : which[i] == 2 ? B : NULL;
        float *sc = which[i] == 1 ? &scA : &scB;
        ok = ok && gg_session_set_adapters(ref[i], &l, sc, l ? 1 : 0, &err) == 0 &&
             gg_session_set_adapters(bs[i], &l, sc, l ? 1 : 0, &err) == 0;
        ok = ok && gg_session_eval(ref[i], ids[i], plen[i], want + i * per, 1, &err) == 0;
        for (int k = 0; ok && k < STEPS; k++)
            ok = gg_session_eval(ref[i], &ids[i][plen[i] + k], 1, want + i * per + (plen[i] + k) * V, 0, &err) == 0;
    }
    gg_batch *b = NULL;
    ok = ok && gg_batch_new(&b, m, 64, &err) == 0;
    if (!ok) fprintf(stderr, "%s: %s\n", fix, err.msg);
    /* Step 0: every prompt (sequence 5: its first 7 tokens). */
    gg_session *ss[NS];
    const int32_t *pi[NS];
    int64_t n[NS];
    int all[NS];
    for (int i = 0; i < NS; i++) {
        ss[i] = bs[i];
        pi[i] = ids[i];
        n[i] = i == 5 ? 7 : plen[i];
        all[i] = allp[i];
    }
    ok = ok && gg_batch_eval(b, ss, pi, n, NS, out, all, &err) == 0;
    if (ok) {
        size_t o = 0;
        for (int i = 0; i < NS; i++) {
            int64_t rows = all[i] ? n[i] : 1, first = all[i] ? 0 : n[i] - 1;
            memcpy(got + i * per + first * V, out + o * V, (size_t)(rows * V) * sizeof *out);
            o += (size_t)rows;
        }
    }
    /* Decode steps; sequence 5 reads the rest of its prompt in step 1 and
     * joins the decode from step 2 (its step-1 position is its prompt end). */
    for (int k = 0; ok && k < STEPS; k++) {
        for (int i = 0; i < NS; i++) {
            int64_t pos = gg_session_pos(bs[i]);
            pi[i] = &ids[i][pos];
            n[i] = i == 5 && k == 0 ? plen[5] - 7 : 1;
            all[i] = i == 5 && k == 0;
        }
        /* sequence 5 has one decode token fewer: leave it out of the last step */
        size_t nseq = k == STEPS - 1 ? NS - 1 : NS;
        ok = gg_batch_eval(b, ss, pi, n, nseq, out, all, &err) == 0;
        if (!ok) fprintf(stderr, "%s step %d: %s\n", fix, k, err.msg);
        size_t o = 0;
        for (size_t i = 0; ok && i < nseq; i++) {
            int64_t pos = gg_session_pos(bs[i]) - n[i];
            int64_t rows = all[i] ? n[i] : 1, first = all[i] ? 0 : n[i] - 1;
            memcpy(got + i * per + (pos + first) * V, out + o * V, (size_t)(rows * V) * sizeof *out);
            o += (size_t)rows;
        }
    }
    /* Compare every position both have: all rows where the reference kept
     * all logits and the batch did too, else the last prompt row and each
     * decode row. */
    for (int i = 0; ok && i < NS; i++) {
        int64_t end = i == 5 ? plen[5] + STEPS - 2 : plen[i] + STEPS;
        for (int64_t p = 0; p < end; p++) {
            int have = i == 5 || p >= plen[i] - 1 || allp[i];
            if (!have) continue;
            double d = maxdiff(got + i * per + p * V, want + i * per + p * V, (size_t)V);
            if (d > mx) mx = d;
        }
    }
    if (!ok) mx = INFINITY;
    gg_batch_free(b);
    for (int i = 0; i < NS; i++) {
        gg_session_free(ref[i]);
        gg_session_free(bs[i]);
    }
    free(want);
    free(got);
    free(out);
    gg_lora_free(A);
    gg_lora_free(B);
    gg_model_free(m);
    gg_file_close(f);
    return mx;
}

static void test_batched_equals_sequential(void) {
    struct {
        const char *fix;
        gg_type t;
        int peft;
        int64_t window;
    } cases[] = {{"llama2-mha", GG_TYPE_F32, 1, 0},  {"llama3-gqa", GG_TYPE_F32, 0, 0},
                 {"falcon7b-style", GG_TYPE_F32, 0, 0}, {"llama2-mha", GG_TYPE_Q8, 1, 0},
                 {"llama3-gqa", GG_TYPE_NF4, 0, 0}, {"mistral-gqa-f16", GG_TYPE_F16, 0, 6}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double mx = run_fixture(cases[i].fix, cases[i].t, cases[i].peft, cases[i].window);
        CHECK(mx <= TOL, "%s %s: max abs logit difference %.3g", cases[i].fix, gg_type_name(cases[i].t), mx);
        printf("  %-16s %-4s%s batched vs alone: max abs logit diff %.2e\n", cases[i].fix, gg_type_name(cases[i].t),
               cases[i].window ? " (window 6)" : "", mx);
    }
}

/* A batch of one session equals gg_session_eval, bit for bit (same path). */
static void test_batch_of_one(void) {
    char path[600];
    gg_err err;
    gg_file *f;
    gg_model *m;
    REQUIRE(fixture_gg("llama3-gqa", GG_TYPE_F32, tmpdir, path, sizeof path) == 0, "convert");
    REQUIRE(gg_file_open(&f, path, 0, &err) == 0 && gg_model_load(&m, f, be, &err) == 0, "%s", err.msg);
    int64_t V = gg_model_cfg(m)->vocab;
    int32_t ids[10] = {1, 5, 9, 33, 2, 7, 100, 999, 0, 4};
    float *a = malloc((size_t)(10 * V) * sizeof *a), *bb = malloc((size_t)(10 * V) * sizeof *bb);
    gg_session *s1, *s2;
    gg_batch *b;
    REQUIRE(gg_session_new(&s1, m, 32, 10, &err) == 0 && gg_session_new(&s2, m, 32, 1, &err) == 0 &&
                gg_batch_new(&b, m, 10, &err) == 0,
            "%s", err.msg);
    gg_session *ss[1] = {s2};
    const int32_t *pi[1] = {ids};
    int64_t n[1] = {10};
    int all[1] = {1};
    CHECK(gg_session_eval(s1, ids, 10, a, 1, &err) == 0, "%s", err.msg);
    CHECK(gg_batch_eval(b, ss, pi, n, 1, bb, all, &err) == 0, "%s", err.msg);
    CHECK(memcmp(a, bb, (size_t)(10 * V) * sizeof *a) == 0, "batch of one differs: %.3g",
          maxdiff(a, bb, (size_t)(10 * V)));
    CHECK(gg_session_pos(s2) == 10, "pos %lld", (long long)gg_session_pos(s2));
    /* no logits wanted: still advances */
    CHECK(gg_batch_eval(b, ss, pi, n, 1, NULL, NULL, &err) == 0 && gg_session_pos(s2) == 20, "%s", err.msg);
    gg_batch_free(b);
    gg_session_free(s1);
    gg_session_free(s2);
    free(a);
    free(bb);
    gg_model_free(m);
    gg_file_close(f);
}

static void test_errors(void) {
    char path[600], path2[600];
    gg_err err;
    gg_file *f, *f2;
    gg_model *m, *m2;
    REQUIRE(fixture_gg("llama2-mha", GG_TYPE_F32, tmpdir, path, sizeof path) == 0 &&
                fixture_gg("llama3-gqa", GG_TYPE_F32, tmpdir, path2, sizeof path2) == 0,
            "convert");
    REQUIRE(gg_file_open(&f, path, 0, &err) == 0 && gg_model_load(&m, f, be, &err) == 0, "%s", err.msg);
    REQUIRE(gg_file_open(&f2, path2, 0, &err) == 0 && gg_model_load(&m2, f2, be, &err) == 0, "%s", err.msg);
    gg_session *a, *b2, *other;
    gg_batch *b;
    REQUIRE(gg_session_new(&a, m, 16, 1, &err) == 0 && gg_session_new(&b2, m, 16, 1, &err) == 0 &&
                gg_session_new(&other, m2, 16, 1, &err) == 0 && gg_batch_new(&b, m, 8, &err) == 0,
            "%s", err.msg);
    int32_t ids[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, bad[2] = {1, 1000};
    float *lg = malloc(1000 * 16 * sizeof *lg);
    gg_session *ss[2] = {a, b2};
    const int32_t *pi[2] = {ids, ids};
    int64_t n[2] = {5, 4};
    CHECK(gg_batch_eval(b, ss, pi, n, 2, lg, NULL, &err) == -1 && strstr(err.msg, "capacity"), "%s", err.msg);
    n[1] = 3;
    ss[1] = a;
    CHECK(gg_batch_eval(b, ss, pi, n, 2, lg, NULL, &err) == -1 && strstr(err.msg, "same session"), "%s", err.msg);
    ss[1] = other;
    CHECK(gg_batch_eval(b, ss, pi, n, 2, lg, NULL, &err) == -1 && strstr(err.msg, "another model"), "%s", err.msg);
    ss[1] = b2;
    pi[1] = bad;
    n[1] = 2;
    CHECK(gg_batch_eval(b, ss, pi, n, 2, lg, NULL, &err) == -1 && strstr(err.msg, "sequence 1") &&
              strstr(err.msg, "vocabulary"),
          "%s", err.msg);
    printf("  e.g. %s\n", err.msg);
    pi[1] = ids;
    n[1] = 0;
    CHECK(gg_batch_eval(b, ss, pi, n, 2, lg, NULL, &err) == -1 && strstr(err.msg, "no tokens"), "%s", err.msg);
    CHECK(gg_batch_eval(b, ss, pi, n, 0, lg, NULL, &err) == -1 && strstr(err.msg, "no sequences"), "%s", err.msg);
    CHECK(gg_session_pos(a) == 0 && gg_session_pos(b2) == 0, "evaluated on error");
    /* past the context: b2 holds 12 of 16 */
    CHECK(gg_session_eval(b2, ids, 12, NULL, 0, &err) == 0, "%s", err.msg);
    n[0] = 2;
    n[1] = 5;
    CHECK(gg_batch_eval(b, ss, pi, n, 2, lg, NULL, &err) == -1 && strstr(err.msg, "context"), "%s", err.msg);
    CHECK(gg_session_pos(a) == 0 && gg_session_pos(b2) == 12, "evaluated on error");
    n[1] = 4;
    CHECK(gg_batch_eval(b, ss, pi, n, 2, lg, NULL, &err) == 0, "%s", err.msg);
    CHECK(gg_session_pos(a) == 2 && gg_session_pos(b2) == 16, "positions %lld %lld", (long long)gg_session_pos(a),
          (long long)gg_session_pos(b2));
    CHECK(gg_batch_new(&(gg_batch *){NULL}, m, 0, &err) == -1, "batch of 0 tokens accepted");
    gg_batch_free(b);
    gg_session_free(a);
    gg_session_free(b2);
    gg_session_free(other);
    free(lg);
    gg_model_free(m);
    gg_model_free(m2);
    gg_file_close(f);
    gg_file_close(f2);
}

static void cleanup(void) { check_rm_tree(tmpdir); }

int main(void) {
    if (!check_have_fixture("hf/llama2-mha/config.json")) return check_done();
    if (!mkdtemp(tmpdir)) return 1;
    gg_err err;
    be = gg_backend_cpu_new(2, &err);
    if (!be) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    RUN(test_batched_equals_sequential);
    RUN(test_batch_of_one);
    RUN(test_errors);
    gg_backend_free(be);
    cleanup();
    return check_done();
}
