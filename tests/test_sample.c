/* test_sample.c — next-token selection (models/sample.h): greedy is the
 * argmax, top_k = 1 is the argmax at any temperature, a seed fixes the
 * draws, empirical frequencies over 20000 draws match the softmax at
 * temperatures 1 and 0.5, top-k (with ties), top-p and min-p keep exactly
 * the tokens Hugging Face keeps on constructed distributions and agree with
 * a brute-force reference on a large vocabulary, the repetition penalty
 * (positive and negative logits, distinct tokens, window), NaN / inf
 * logits, and the time per token at a 152k vocabulary. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "models/sample.h"
#include "tests/check.h"

static uint64_t lcg_state = 88172645463325252ull;
static double urand(void) { /* xorshift64, test data only */
    lcg_state ^= lcg_state << 13;
    lcg_state ^= lcg_state >> 7;
    lcg_state ^= lcg_state << 17;
    return (double)(lcg_state >> 11) * 0x1.0p-53;
}
static float nrand(void) { /* Box-Muller */
    double u = urand(), v = urand();
    return (float)(sqrt(-2 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

static gg_sample_params plain(float temp) {
    gg_sample_params p;
    gg_sample_params_default(&p);
    p.temp = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

static int32_t ref_argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

static void test_defaults(void) {
    gg_sample_params p;
    gg_err err;
    gg_sample_params_default(&p);
    CHECK(p.temp == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f && p.repeat_penalty == 1.0f &&
              p.repeat_last_n == 64 && p.seed == 0,
          "defaults");
    CHECK(gg_sample_params_check(&p, &err) == 0, "%s", err.msg);
    gg_sample_params q = p;
    q.temp = NAN;
    CHECK(gg_sample_params_check(&q, &err) == -1 && strstr(err.msg, "temp"), "%s", err.msg);
    q = p;
    q.repeat_penalty = 0;
    CHECK(gg_sample_params_check(&q, &err) == -1 && strstr(err.msg, "repeat_penalty"), "%s", err.msg);
    q = p;
    q.top_p = NAN;
    CHECK(gg_sample_params_check(&q, &err) == -1 && strstr(err.msg, "top_p"), "%s", err.msg);
    q = p;
    q.repeat_last_n = -2;
    CHECK(gg_sample_params_check(&q, &err) == -1 && strstr(err.msg, "repeat_last_n"), "%s", err.msg);
    CHECK(gg_sampler_new(&q, 10) == NULL, "invalid params accepted");
    CHECK(gg_sampler_new(&p, 0) == NULL, "vocab 0 accepted");
    CHECK(gg_sampler_new(&p, (int64_t)INT32_MAX + 1) == NULL, "vocab too large accepted");
}

static void test_greedy(void) {
    gg_sample_params p = plain(0);
    p.top_k = 40; /* filters do not matter when greedy */
    gg_sampler *s = gg_sampler_new(&p, 1000);
    REQUIRE(s != NULL, "new");
    float l[1000];
    for (int r = 0; r < 50; r++) {
        for (int i = 0; i < 1000; i++) l[i] = nrand() * 3;
        int32_t want = ref_argmax(l, 1000);
        CHECK(gg_sampler_next(s, l, NULL, 0) == want, "row %d", r);
    }
    for (int i = 0; i < 1000; i++) l[i] = 0;
    l[17] = l[400] = l[999] = 2;
    CHECK(gg_sampler_next(s, l, NULL, 0) == 17, "ties: first index");
    l[3] = NAN;
    CHECK(gg_sampler_next(s, l, NULL, 0) == 17, "NaN is never the argmax");
    l[500] = INFINITY;
    CHECK(gg_sampler_next(s, l, NULL, 0) == 500, "+inf wins");
    for (int i = 0; i < 1000; i++) l[i] = -INFINITY;
    CHECK(gg_sampler_next(s, l, NULL, 0) == 0, "all -inf: index 0");
    for (int i = 0; i < 1000; i++) l[i] = NAN;
    l[7] = -INFINITY;
    CHECK(gg_sampler_next(s, l, NULL, 0) == 7, "all NaN but one -inf");
    gg_sampler_free(s);
}

static void test_top_k1(void) {
    const float temps[] = {0.05f, 0.7f, 1.0f, 5.0f, 100.0f};
    float l[5000];
    for (size_t t = 0; t < sizeof temps / sizeof *temps; t++) {
        gg_sample_params p = plain(temps[t]);
        p.top_k = 1;
        p.seed = 1234 + t;
        gg_sampler *s = gg_sampler_new(&p, 5000);
        REQUIRE(s != NULL, "new");
        int bad = 0;
        for (int r = 0; r < 40; r++) {
            for (int i = 0; i < 5000; i++) l[i] = nrand();
            int32_t want = ref_argmax(l, 5000);
            if (gg_sampler_next(s, l, NULL, 0) != want) bad++;
        }
        CHECK(bad == 0, "temp %g: %d rows not the argmax", (double)temps[t], bad);
        gg_sampler_free(s);
    }
}

static void test_determinism(void) {
    gg_sample_params p;
    gg_sample_params_default(&p);
    p.seed = 42;
    gg_sampler *a = gg_sampler_new(&p, 300), *b = gg_sampler_new(&p, 300);
    p.seed = 43;
    gg_sampler *c = gg_sampler_new(&p, 300);
    REQUIRE(a && b && c, "new");
    float la[300], lb[300], lc[300];
    int32_t seq[200], hist[200];
    int diff_c = 0, same = 1;
    for (int r = 0; r < 200; r++) {
        for (int i = 0; i < 300; i++) la[i] = lb[i] = lc[i] = nrand() * 0.5f;
        int32_t x = gg_sampler_next(a, la, hist, (size_t)r), y = gg_sampler_next(b, lb, hist, (size_t)r),
                z = gg_sampler_next(c, lc, hist, (size_t)r);
        if (x != y) same = 0;
        if (x != z) diff_c++;
        seq[r] = x;
        hist[r] = x;
    }
    CHECK(same, "same seed, different tokens");
    CHECK(diff_c > 20, "seeds 42 and 43 agree on %d of 200 tokens", 200 - diff_c);
    /* reseed: the same sequence again (same logits replayed) */
    lcg_state = 99;
    float rows[20][300];
    for (int r = 0; r < 20; r++)
        for (int i = 0; i < 300; i++) rows[r][i] = nrand();
    int32_t first[20];
    gg_sampler_reseed(a, 7);
    for (int r = 0; r < 20; r++) {
        memcpy(la, rows[r], sizeof la);
        first[r] = gg_sampler_next(a, la, NULL, 0);
    }
    gg_sampler_reseed(a, 7);
    int again = 1;
    for (int r = 0; r < 20; r++) {
        memcpy(la, rows[r], sizeof la);
        if (gg_sampler_next(a, la, NULL, 0) != first[r]) again = 0;
    }
    CHECK(again, "reseed does not restart the sequence");
    (void)seq;
    gg_sampler_free(a);
    gg_sampler_free(b);
    gg_sampler_free(c);
}

/* Draw n tokens and compare the frequencies with want[] (within 4.5
 * standard errors each, and a chi-square test). */
static void freq_check(const char *what, gg_sample_params p, const float *logits, int V, const double *want, int n) {
    gg_sampler *s = gg_sampler_new(&p, V);
    REQUIRE(s != NULL, "new");
    int cnt[64] = {0};
    float l[64];
    for (int k = 0; k < n; k++) {
        memcpy(l, logits, (size_t)V * sizeof *l);
        int32_t t = gg_sampler_next(s, l, NULL, 0);
        REQUIRE(t >= 0 && t < V, "token %d", t);
        cnt[t]++;
    }
    double chi2 = 0;
    int df = -1;
    for (int i = 0; i < V; i++) {
        double f = (double)cnt[i] / n, se = sqrt(want[i] * (1 - want[i]) / n);
        if (want[i] == 0) {
            CHECK(cnt[i] == 0, "%s: token %d drawn %d times, probability 0", what, i, cnt[i]);
            continue;
        }
        CHECK(fabs(f - want[i]) <= 4.5 * se, "%s: token %d frequency %.4f, expected %.4f (se %.4f)", what, i, f,
              want[i], se);
        chi2 += (cnt[i] - n * want[i]) * (cnt[i] - n * want[i]) / (n * want[i]);
        df++;
    }
    /* 99.99% quantile of chi-square with df <= 7 is below 30 */
    CHECK(chi2 < 30, "%s: chi-square %.2f with %d degrees of freedom", what, chi2, df);
    gg_sampler_free(s);
}

static void softmax(const float *l, int V, double T, double *out) {
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < V; i++)
        if (l[i] / T > mx) mx = l[i] / T;
    for (int i = 0; i < V; i++) z += (out[i] = exp(l[i] / T - mx));
    for (int i = 0; i < V; i++) out[i] /= z;
}

static void test_frequencies(void) {
    const float l[8] = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f, 1.5f, 0.2f};
    double want[8];
    gg_sample_params p = plain(1.0f);
    p.seed = 2024;
    softmax(l, 8, 1.0, want);
    freq_check("temp 1", p, l, 8, want, 20000);
    p = plain(0.5f);
    p.seed = 77;
    softmax(l, 8, 0.5, want);
    freq_check("temp 0.5", p, l, 8, want, 20000);
    /* top_k 3 at temp 1: the renormalised top three */
    p = plain(1.0f);
    p.top_k = 3;
    p.seed = 5;
    softmax(l, 8, 1.0, want);
    double z = want[3] + want[6] + want[0];
    for (int i = 0; i < 8; i++) want[i] = (i == 3 || i == 6 || i == 0) ? want[i] / z : 0;
    freq_check("top_k 3", p, l, 8, want, 20000);
}

/* Survivors of gg_sampler_dist as a sorted id list. */
static size_t survivors(gg_sample_params p, float *l, int V, int32_t *ids, float *probs) {
    gg_sampler *s = gg_sampler_new(&p, V);
    if (!s) return 0;
    size_t n = gg_sampler_dist(s, l, NULL, 0, ids, probs, (size_t)V);
    gg_sampler_free(s);
    return n;
}

static void test_top_p(void) {
    /* probabilities 0.5, 0.25, 0.15, 0.06, 0.04 at shuffled positions */
    const double pr[5] = {0.15, 0.04, 0.5, 0.06, 0.25};
    float l[5];
    const struct {
        float top_p;
        size_t keep;
    } cases[] = {{0.0f, 1}, {0.3f, 1}, {0.7f, 2}, {0.74f, 2}, {0.8f, 3}, {0.89f, 3},
                 {0.91f, 4}, {0.95f, 4}, {0.97f, 5}, {1.0f, 5}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        for (int i = 0; i < 5; i++) l[i] = (float)log(pr[i]);
        gg_sample_params p = plain(1.0f);
        p.top_p = cases[c].top_p;
        int32_t ids[5];
        float probs[5];
        size_t n = survivors(p, l, 5, ids, probs);
        CHECK(n == cases[c].keep, "top_p %g: %zu survivors, expected %zu", (double)cases[c].top_p, n, cases[c].keep);
        /* survivors are the most probable ones, renormalised */
        static const int order[5] = {2, 4, 0, 3, 1};
        double z = 0;
        for (size_t k = 0; k < n && k < 5; k++) z += pr[order[k]];
        for (size_t k = 0; k < n && k < 5; k++) {
            CHECK(ids[k] == order[k], "top_p %g: survivor %zu is %d, expected %d", (double)cases[c].top_p, k, ids[k],
                  order[k]);
            CHECK(fabs(probs[k] - pr[order[k]] / z) < 1e-6, "top_p %g: p %g, expected %g", (double)cases[c].top_p,
                  (double)probs[k], pr[order[k]] / z);
        }
    }
    /* draws with top_p 0.7 never leave {2, 4}; 2:1 ratio */
    gg_sample_params p = plain(1.0f);
    p.top_p = 0.7f;
    p.seed = 11;
    for (int i = 0; i < 5; i++) l[i] = (float)log(pr[i]);
    double want[5] = {0, 0, 2.0 / 3, 0, 1.0 / 3};
    freq_check("top_p 0.7", p, l, 5, want, 20000);
}

static void test_min_p(void) {
    const double pr[6] = {0.04, 0.3, 0.2, 0.4, 0.06, 0.0};
    float l[6];
    const struct {
        float min_p, top_p;
        size_t keep;
    } cases[] = {
        {0.125f, 1.0f, 4}, /* threshold 0.05: 0.06 stays, 0.04 goes */
        {0.125f, 0.99f, 4},
        {0.09f, 1.0f, 5},  /* threshold 0.036 */
        {0.6f, 1.0f, 2},   /* threshold 0.24 */
        {0.76f, 1.0f, 1},  /* threshold 0.304 */
        {1.0f, 1.0f, 1},
        {0.6f, 0.65f, 2},  /* top-p keeps {0.4, 0.3}; min-p keeps both */
        {0.4f, 0.85f, 3},  /* top-p keeps 3 (0.2's mass above is 0.7); threshold 0.16 keeps all 3 */
        {0.55f, 0.85f, 2}, /* threshold 0.22 drops 0.2 */
    };
    static const int order[5] = {3, 1, 2, 4, 0};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        for (int i = 0; i < 6; i++) l[i] = pr[i] > 0 ? (float)log(pr[i]) : -INFINITY;
        gg_sample_params p = plain(1.0f);
        p.min_p = cases[c].min_p;
        p.top_p = cases[c].top_p;
        int32_t ids[6];
        float probs[6];
        size_t n = survivors(p, l, 6, ids, probs);
        CHECK(n == cases[c].keep, "min_p %g top_p %g: %zu survivors, expected %zu", (double)cases[c].min_p,
              (double)cases[c].top_p, n, cases[c].keep);
        for (size_t k = 0; k < n && k < 5; k++)
            CHECK(ids[k] == order[k], "min_p %g: survivor %zu is %d", (double)cases[c].min_p, k, ids[k]);
    }
    /* with top_k set too (unsorted path) */
    for (int i = 0; i < 6; i++) l[i] = pr[i] > 0 ? (float)log(pr[i]) : -INFINITY;
    gg_sample_params p = plain(1.0f);
    p.top_k = 4;
    p.min_p = 0.6f;
    int32_t ids[6];
    CHECK(survivors(p, l, 6, ids, NULL) == 2 && ids[0] == 3 && ids[1] == 1, "top_k 4 + min_p 0.6");
}

static void test_top_k_ties(void) {
    float l[6] = {3, 5, 5, 1, 5, 2};
    gg_sample_params p = plain(1.0f);
    p.top_k = 2;
    int32_t ids[6];
    size_t n = survivors(p, l, 6, ids, NULL);
    CHECK(n == 3 && ids[0] == 1 && ids[1] == 2 && ids[2] == 4, "ties at the k-th value survive (%zu)", n);
    float l2[6] = {3, 5, 5, 1, 5, 2};
    p.top_k = 4;
    n = survivors(p, l2, 6, ids, NULL);
    CHECK(n == 4 && ids[3] == 0, "top_k 4: %zu", n);
    float l3[6] = {3, 5, 5, 1, 5, 2};
    p.top_k = 100;
    CHECK(survivors(p, l3, 6, ids, NULL) == 6, "top_k > vocab is off");
}

/* Brute-force reference of top-k → top-p → min-p on a large vocabulary. */
static int cmp_desc(const void *a, const void *b) {
    const float *x = a, *y = b;
    if (x[0] != y[0]) return x[0] > y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

static void test_large_reference(void) {
    enum { V = 20000 };
    static float l[V], copy[V], pairs[V][2];
    static int32_t ids[V];
    const struct {
        int k;
        float top_p, min_p;
        int ties; /* logits rounded to quarters: many exact ties */
    } cases[] = {{40, 1, 0, 0},      {0, 0.9f, 0, 0},     {0, 0.5f, 0, 0},     {0, 0.999f, 0, 0},
                 {1000, 0.95f, 0, 0}, {0, 1, 0.01f, 0},    {0, 0.9f, 0.05f, 0}, {40, 0.95f, 0.05f, 0},
                 {5000, 0.99f, 0, 0}, {40, 1, 0, 1},       {0, 0.9f, 0, 1},     {0, 0.3f, 0, 1},
                 {333, 0.97f, 0.02f, 1}, {0, 0.95f, 0, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        for (int i = 0; i < V; i++) l[i] = nrand() * 2.0f;
        if (cases[c].ties == 1)
            for (int i = 0; i < V; i++) l[i] = roundf(l[i] * 4) / 4;
        if (cases[c].ties == 2) /* a few dominant tokens over a flat floor */
            for (int i = 0; i < V; i++) l[i] = i % 997 == 5 ? 12.0f + (float)(i % 3) : -3.0f;
        /* reference: full sort, value desc, id asc */
        for (int i = 0; i < V; i++) pairs[i][0] = l[i], pairs[i][1] = (float)i;
        qsort(pairs, V, sizeof pairs[0], cmp_desc);
        size_t n = V;
        if (cases[c].k > 0 && cases[c].k < V) {
            n = (size_t)cases[c].k;
            while (n < V && pairs[n][0] == pairs[cases[c].k - 1][0]) n++;
        }
        double mx = pairs[0][0], z = 0, cum = 0;
        for (size_t j = 0; j < n; j++) z += exp((double)pairs[j][0] - mx);
        if (cases[c].top_p < 1) {
            size_t cut = n;
            for (size_t j = 0; j < n; j++) {
                if (cum >= cases[c].top_p * z) {
                    cut = j;
                    break;
                }
                cum += exp((double)pairs[j][0] - mx);
            }
            n = cut ? cut : 1;
        }
        if (cases[c].min_p > 0) {
            size_t m = 1;
            while (m < n && exp((double)pairs[m][0] - mx) >= cases[c].min_p) m++;
            n = m;
        }
        memcpy(copy, l, sizeof l);
        gg_sample_params p = plain(1.0f);
        p.top_k = cases[c].k;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        size_t got = survivors(p, copy, V, ids, NULL);
        CHECK(got == n, "case %zu: %zu survivors, reference %zu", c, got, n);
        int bad = 0;
        for (size_t j = 0; j < got && j < n; j++)
            if (ids[j] != (int32_t)pairs[j][1]) bad++;
        CHECK(bad == 0, "case %zu: %d survivors differ", c, bad);
    }
}

/* OpenAI's additive penalties: logit -= count × frequency + presence, over
 * the same window, after the repetition penalty; a greedy pick flips. */
static void test_freq_presence(void) {
    gg_sample_params p = plain(1.0f);
    p.freq_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.repeat_last_n = -1;
    int32_t hist[6] = {0, 1, 0, 0, 4, 99};
    float l[5] = {2, -2, 1, 0.5f, 0};
    gg_sampler *s = gg_sampler_new(&p, 5);
    REQUIRE(s != NULL, "new");
    int32_t ids[5];
    gg_sampler_dist(s, l, hist, 6, ids, NULL, 5);
    /* 0 three times: 2 - 1.5 - 0.25; 1 once: -2 - 0.75; 4 once: -0.75; 99 out of range */
    CHECK(l[0] == 0.25f && l[1] == -2.75f && l[2] == 1.0f && l[3] == 0.5f && l[4] == -0.75f,
          "penalised logits %g %g %g %g %g", (double)l[0], (double)l[1], (double)l[2], (double)l[3], (double)l[4]);
    CHECK(ids[0] == 2, "most probable after the penalties: %d", ids[0]);
    gg_sampler_free(s);
    /* with the repetition penalty first: 2 / 2 = 1, then - 1.75 */
    p.repeat_penalty = 2.0f;
    s = gg_sampler_new(&p, 5);
    float l2[5] = {2, -2, 1, 0.5f, 0};
    gg_sampler_dist(s, l2, hist, 6, ids, NULL, 5);
    CHECK(l2[0] == -0.75f && l2[1] == -4.75f, "with repetition penalty: %g %g", (double)l2[0], (double)l2[1]);
    gg_sampler_free(s);
    /* the window: last 2 tokens {4, 99} */
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 2;
    s = gg_sampler_new(&p, 5);
    float l3[5] = {2, -2, 1, 0.5f, 0};
    gg_sampler_dist(s, l3, hist, 6, ids, NULL, 5);
    CHECK(l3[0] == 2.0f && l3[4] == -0.75f, "window 2: %g %g", (double)l3[0], (double)l3[4]);
    gg_sampler_free(s);
    gg_err err;
    p.freq_penalty = NAN;
    CHECK(gg_sample_params_check(&p, &err) == -1 && strstr(err.msg, "freq_penalty"), "%s", err.msg);
}

static void test_repeat_penalty(void) {
    gg_sample_params p = plain(1.0f);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = -1;
    int32_t hist[5] = {0, 1, 0, 0, 4};
    float l[5] = {2, -2, 1, 0.5f, 0};
    gg_sampler *s = gg_sampler_new(&p, 5);
    REQUIRE(s != NULL, "new");
    int32_t ids[5];
    float probs[5];
    size_t n = gg_sampler_dist(s, l, hist, 5, ids, probs, 5);
    /* 2 → 1 (divided once, though it occurs 3 times), -2 → -4, 0 → 0 */
    CHECK(l[0] == 1.0f && l[1] == -4.0f && l[2] == 1.0f && l[3] == 0.5f && l[4] == 0.0f, "penalised logits %g %g %g %g %g",
          (double)l[0], (double)l[1], (double)l[2], (double)l[3], (double)l[4]);
    double want[5];
    softmax(l, 5, 1.0, want);
    CHECK(n == 5, "n %zu", n);
    for (size_t k = 0; k < n; k++)
        CHECK(fabs(probs[k] - want[ids[k]]) < 1e-6, "token %d p %g, expected %g", ids[k], (double)probs[k],
              want[ids[k]]);
    gg_sampler_free(s);

    /* window: last 2 tokens {0, 4} only */
    p.repeat_last_n = 2;
    s = gg_sampler_new(&p, 5);
    float l2[5] = {2, -2, 1, 0.5f, 0};
    gg_sampler_dist(s, l2, hist, 5, ids, probs, 5);
    CHECK(l2[0] == 1.0f && l2[1] == -2.0f, "window 2: %g %g", (double)l2[0], (double)l2[1]);
    gg_sampler_free(s);
    p.repeat_last_n = 0;
    s = gg_sampler_new(&p, 5);
    float l3[5] = {2, -2, 1, 0.5f, 0};
    gg_sampler_dist(s, l3, hist, 5, ids, probs, 5);
    CHECK(l3[0] == 2.0f && l3[1] == -2.0f, "window 0: no penalty");
    gg_sampler_free(s);

    /* greedy decisions flip: positive logits shrink, negative ones grow */
    p = plain(0);
    p.repeat_penalty = 1.1f;
    s = gg_sampler_new(&p, 2);
    int32_t h0[1] = {0}, hbad[3] = {-1, 7, 1 << 30};
    float a[2] = {3.0f, 2.9f};
    CHECK(gg_sampler_next(s, a, h0, 1) == 1, "3/1.1 < 2.9");
    float b[2] = {-1.0f, -1.05f};
    CHECK(gg_sampler_next(s, b, h0, 1) == 1, "-1*1.1 < -1.05");
    float c[2] = {3.0f, 2.9f};
    CHECK(gg_sampler_next(s, c, hbad, 3) == 0 && c[0] == 3.0f, "out-of-range history ids are ignored");
    p.repeat_penalty = 1.0f;
    gg_sampler_free(s);
    s = gg_sampler_new(&p, 2);
    float d[2] = {3.0f, 2.9f};
    CHECK(gg_sampler_next(s, d, h0, 1) == 0, "penalty 1 is off");
    gg_sampler_free(s);
}

static void test_nonfinite(void) {
    gg_sample_params p;
    gg_sample_params_default(&p);
    p.seed = 3;
    gg_sampler *s = gg_sampler_new(&p, 10);
    REQUIRE(s != NULL, "new");
    int bad = 0, hit[10] = {0};
    for (int k = 0; k < 2000; k++) {
        float l[10] = {0, 1, NAN, 0.5f, -INFINITY, 1, 0.2f, NAN, 0, 0.9f};
        int32_t t = gg_sampler_next(s, l, NULL, 0);
        if (t == 2 || t == 7 || t == 4 || t < 0 || t >= 10) bad++;
    }
    CHECK(bad == 0, "NaN / -inf chosen %d times", bad);
    gg_sampler_free(s);
    p = plain(1.0f);
    s = gg_sampler_new(&p, 10);
    for (int k = 0; k < 4000; k++) {
        float l[10] = {0, 1e30f, NAN, INFINITY, 5, 1, 0, 0, 0, INFINITY};
        hit[gg_sampler_next(s, l, NULL, 0)]++;
    }
    CHECK(hit[3] + hit[9] == 4000 && hit[3] > 1800 && hit[9] > 1800, "+inf tokens share: %d %d", hit[3], hit[9]);
    float all[10];
    for (int i = 0; i < 10; i++) all[i] = -INFINITY;
    CHECK(gg_sampler_next(s, all, NULL, 0) == 0, "all -inf: argmax fallback");
    for (int i = 0; i < 10; i++) all[i] = i == 6 ? -INFINITY : NAN;
    CHECK(gg_sampler_next(s, all, NULL, 0) == 6, "NaN + -inf: the -inf one");
    int32_t ids[3];
    for (int i = 0; i < 10; i++) all[i] = NAN;
    CHECK(gg_sampler_dist(s, all, NULL, 0, ids, NULL, 3) == 1 && ids[0] == 0, "all NaN: 0");
    gg_sampler_free(s);
}

static void test_speed(void) {
    enum { V = 151936, R = 60 };
    static float base[V], l[V];
    for (int i = 0; i < V; i++) base[i] = nrand() * 2.5f;
    int32_t hist[256];
    for (int i = 0; i < 256; i++) hist[i] = (i * 7919) % V;
    const struct {
        const char *name;
        int k;
        float top_p, min_p, temp, pen;
    } cases[] = {
        {"defaults (k 40, p 0.95, min_p 0.05)", 40, 0.95f, 0.05f, 0.8f, 1.0f},
        {"top_p 0.9 only", 0, 0.9f, 0, 1.0f, 1.0f},
        {"top_p 0.9 at temp 3 (flat)", 0, 0.9f, 0, 3.0f, 1.0f},
        {"plain softmax", 0, 1.0f, 0, 1.0f, 1.0f},
        {"greedy + penalty", 0, 1.0f, 0, 0.0f, 1.3f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        gg_sample_params p = plain(cases[c].temp);
        p.top_k = cases[c].k;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        p.repeat_penalty = cases[c].pen;
        gg_sampler *s = gg_sampler_new(&p, V);
        REQUIRE(s != NULL, "new");
        double t = 0;
        for (int r = 0; r < R; r++) {
            memcpy(l, base, sizeof l);
            l[r * 101 % V] += 0.5f;
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            int32_t tok = gg_sampler_next(s, l, hist, 256);
            clock_gettime(CLOCK_MONOTONIC, &b);
            t += (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
            CHECK(tok >= 0 && tok < V, "token %d", tok);
        }
        double ms = 1e3 * t / R;
        printf("# vocab %d, %s: %.3f ms per token\n", V, cases[c].name, ms);
        CHECK(ms < 100, "%s: %.1f ms per token", cases[c].name, ms);
        gg_sampler_free(s);
    }
}

int main(void) {
    RUN(test_defaults);
    RUN(test_greedy);
    RUN(test_top_k1);
    RUN(test_determinism);
    RUN(test_frequencies);
    RUN(test_top_p);
    RUN(test_min_p);
    RUN(test_top_k_ties);
    RUN(test_large_reference);
    RUN(test_repeat_penalty);
    RUN(test_freq_presence);
    RUN(test_nonfinite);
    RUN(test_speed);
    return check_done();
}
