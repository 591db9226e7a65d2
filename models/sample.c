/* sample.c — next-token selection (sample.h): repetition penalty,
 * temperature, top-k, top-p, min-p and a seeded draw, in Hugging Face's
 * order, in O(V) for the usual settings.
 *
 * Candidates are (value, id) pairs under one total order: larger value
 * first, lower id first on equal values. Every sort uses it and the
 * filters keep or drop tokens by value only, so the result never depends
 * on the algorithms' internal order. */
#include "models/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOPP_BUCKETS 4096 /* value buckets of the top-p filter */

typedef struct cand {
    float v;
    int32_t i;
} cand;

struct gg_sampler {
    gg_sample_params p;
    int64_t vocab;
    uint64_t rng[4];
    uint32_t *stamp; /* [vocab]: == gen when the token was counted this call */
    uint32_t *count; /* [vocab]: its count in the history window (valid when stamp == gen) */
    uint32_t gen;
    cand *c;         /* [vocab] candidates */
    float *heap;     /* [vocab] top-k heap of values */
    double *w;       /* [vocab] weights of the survivors */
    double *mass;    /* [TOPP_BUCKETS] top-p bucket masses */
};

void gg_sample_params_default(gg_sample_params *p) {
    memset(p, 0, sizeof *p);
    p->temp = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0;
}

int gg_sample_params_check(const gg_sample_params *p, gg_err *err) {
    if (!isfinite(p->temp)) return gg_errf(err, "sampling: temp %g is not finite", (double)p->temp);
    if (isnan(p->top_p)) return gg_errf(err, "sampling: top_p is NaN");
    if (isnan(p->min_p)) return gg_errf(err, "sampling: min_p is NaN");
    if (!isfinite(p->repeat_penalty) || !(p->repeat_penalty > 0))
        return gg_errf(err, "sampling: repeat_penalty %g must be finite and > 0", (double)p->repeat_penalty);
    if (p->repeat_last_n < -1)
        return gg_errf(err, "sampling: repeat_last_n %d must be -1 (all), 0 (none) or positive", p->repeat_last_n);
    if (!isfinite(p->freq_penalty)) return gg_errf(err, "sampling: freq_penalty is not finite");
    if (!isfinite(p->presence_penalty)) return gg_errf(err, "sampling: presence_penalty is not finite");
    return 0;
}

/* ---- PRNG: xoshiro256** seeded by splitmix64 ------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro(uint64_t *s) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rand01(gg_sampler *s) { return (double)(xoshiro(s->rng) >> 11) * 0x1.0p-53; }

void gg_sampler_reseed(gg_sampler *s, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    s->p.seed = seed;
}

gg_sampler *gg_sampler_new(const gg_sample_params *p, int64_t vocab) {
    if (!p || vocab <= 0 || vocab > INT32_MAX || gg_sample_params_check(p, NULL)) return NULL;
    gg_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->vocab = vocab;
    s->stamp = calloc((size_t)vocab, sizeof *s->stamp);
    s->count = calloc((size_t)vocab, sizeof *s->count);
    s->c = malloc((size_t)vocab * sizeof *s->c);
    s->heap = malloc((size_t)vocab * sizeof *s->heap);
    s->w = malloc((size_t)vocab * sizeof *s->w);
    s->mass = malloc(TOPP_BUCKETS * sizeof *s->mass);
    if (!s->stamp || !s->count || !s->c || !s->heap || !s->w || !s->mass) {
        gg_sampler_free(s);
        return NULL;
    }
    gg_sampler_reseed(s, p->seed);
    return s;
}

void gg_sampler_free(gg_sampler *s) {
    if (!s) return;
    free(s->stamp);
    free(s->count);
    free(s->c);
    free(s->heap);
    free(s->w);
    free(s->mass);
    free(s);
}

/* ---- ordering ------------------------------------------------------------- */

static inline int better(cand a, cand b) { return a.v > b.v || (a.v == b.v && a.i < b.i); }

static int cand_cmp(const void *pa, const void *pb) {
    cand a = *(const cand *)pa, b = *(const cand *)pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

static void isort(cand *a, size_t n) {
    for (size_t i = 1; i < n; i++) {
        cand x = a[i];
        size_t j = i;
        while (j > 0 && better(x, a[j - 1])) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

static void sort_desc(cand *a, size_t n) {
    if (n <= 32) isort(a, n);
    else qsort(a, n, sizeof *a, cand_cmp);
}

static inline void swapc(cand *a, size_t i, size_t j) {
    cand t = a[i];
    a[i] = a[j];
    a[j] = t;
}

/* ---- the filters ------------------------------------------------------------ */

/* The repetition penalty (once per distinct token of the window) and the
 * additive frequency / presence penalties (by the token's count in it). */
static void apply_penalty(gg_sampler *s, float *logits, const int32_t *hist, size_t nh) {
    float pen = s->p.repeat_penalty, fp = s->p.freq_penalty, pp = s->p.presence_penalty;
    if ((pen == 1.0f && fp == 0.0f && pp == 0.0f) || !hist || nh == 0 || s->p.repeat_last_n == 0) return;
    size_t from = 0;
    if (s->p.repeat_last_n > 0 && (size_t)s->p.repeat_last_n < nh) from = nh - (size_t)s->p.repeat_last_n;
    if (++s->gen == 0) {
        memset(s->stamp, 0, (size_t)s->vocab * sizeof *s->stamp);
        s->gen = 1;
    }
    for (size_t k = from; k < nh; k++) { /* counts */
        int32_t t = hist[k];
        if (t < 0 || (int64_t)t >= s->vocab) continue;
        if (s->stamp[t] != s->gen) s->stamp[t] = s->gen, s->count[t] = 0;
        s->count[t]++;
    }
    for (size_t k = from; k < nh; k++) { /* each distinct token once */
        int32_t t = hist[k];
        if (t < 0 || (int64_t)t >= s->vocab || s->count[t] == 0) continue;
        float l = logits[t];
        if (pen != 1.0f) l = l > 0 ? l / pen : l * pen;
        logits[t] = l - (float)s->count[t] * fp - pp;
        s->count[t] = 0; /* done */
    }
}

/* The first index of the largest non-NaN value (0 when all are NaN). */
static int32_t argmax(const float *l, int64_t n) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(l[i])) continue;
        if (best < 0 || l[i] > l[best]) best = i;
    }
    return best < 0 ? 0 : (int32_t)best;
}

/* Min-heap of the k largest values seen (the root is the k-th largest). */
static void heap_push(float *h, size_t *n, size_t k, float v) {
    size_t i;
    if (*n < k) {
        i = (*n)++;
        while (i > 0 && h[(i - 1) / 2] > v) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = v;
        return;
    }
    if (!(v > h[0])) return;
    i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        float mv = v;
        if (l < k && h[l] < mv) m = l, mv = h[l];
        if (r < k && h[r] < mv) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = v;
}

/* Bucket 0 holds the largest values; (mx - v) * scale < TOPP_BUCKETS. */
static inline size_t bucket_of(float v, double mx, double scale) {
    double b = (mx - (double)v) * scale;
    return b < TOPP_BUCKETS - 1 ? (size_t)b : TOPP_BUCKETS - 1;
}

/* top-p over c[0..n) with max value mx: keep a token while the mass of the
 * tokens better than it is < top_p of the total. Tokens are bucketed by
 * value; only the bucket where the cumulative mass crosses the target is
 * sorted. Survivors are moved to c[0..returned). */
static size_t top_p_filter(gg_sampler *s, size_t n, double mx, double top_p) {
    cand *c = s->c;
    double *mass = s->mass, z = 0;
    float vmin = c[0].v;
    for (size_t j = 0; j < n; j++) {
        z += (s->w[j] = exp((double)c[j].v - mx));
        if (c[j].v < vmin) vmin = c[j].v;
    }
    double span = mx - (double)vmin, scale = span > 0 ? (TOPP_BUCKETS - 1) / span : 0;
    memset(mass, 0, TOPP_BUCKETS * sizeof *mass);
    for (size_t j = 0; j < n; j++) mass[bucket_of(c[j].v, mx, scale)] += s->w[j];
    double target = top_p * z, cum = 0;
    size_t B = TOPP_BUCKETS - 1;
    for (size_t b = 0; b < TOPP_BUCKETS; b++) {
        if (cum + mass[b] >= target) {
            B = b;
            break;
        }
        cum += mass[b];
    }
    /* c[0..f): buckets above B (kept); c[f..g): bucket B (decided in order) */
    size_t f = 0, g;
    for (size_t j = 0; j < n; j++)
        if (bucket_of(c[j].v, mx, scale) < B) swapc(c, j, f++);
    g = f;
    for (size_t j = f; j < n; j++)
        if (bucket_of(c[j].v, mx, scale) == B) swapc(c, j, g++);
    sort_desc(c + f, g - f);
    size_t cut = g;
    for (size_t j = f; j < g; j++) {
        if (cum >= target) {
            cut = j;
            break;
        }
        cum += exp((double)c[j].v - mx);
    }
    return cut ? cut : 1;
}

/* Penalty, then (sampling mode) temperature, top-k, top-p and min-p: the
 * survivors are s->c[0 .. *n), their max value *mx (all finite).
 * Returns -1 when the choice is already made (greedy or fallback): *tok. */
static int run_filters(gg_sampler *s, float *logits, const int32_t *hist, size_t nh, size_t *n_out, double *mx_out,
                       int32_t *tok) {
    const gg_sample_params *p = &s->p;
    apply_penalty(s, logits, hist, nh);
    if (!(p->temp > 0)) {
        *tok = argmax(logits, s->vocab);
        return -1;
    }
    /* temperature; NaN and -inf never survive; +inf, if any, take
     * everything, uniformly. Pass 1 counts and (top-k) finds the k-th
     * largest value with a k-heap; pass 2 collects the candidates. */
    cand *c = s->c;
    const float temp = p->temp;
    const int64_t V = s->vocab;
    size_t nvalid = 0, ninf = 0, hn = 0, k = p->top_k > 0 ? (size_t)p->top_k : 0;
    if (k >= (size_t)V) k = 0;
    for (int64_t i = 0; i < V; i++) {
        float v = logits[i] / temp;
        if (!(v > -INFINITY)) continue; /* NaN, -inf */
        nvalid++;
        if (v == INFINITY) ninf++;
        else if (k) heap_push(s->heap, &hn, k, v);
    }
    if (nvalid == 0) {
        *tok = argmax(logits, V);
        return -1;
    }
    size_t n = 0;
    if (ninf) {
        for (int64_t i = 0; i < V; i++)
            if (logits[i] / temp == INFINITY) c[n++] = (cand){0.0f, (int32_t)i};
    } else {
        /* top-k: every token >= the k-th largest value (ties survive) */
        float kth = k && hn == k ? s->heap[0] : -INFINITY;
        for (int64_t i = 0; i < V; i++) {
            float v = logits[i] / temp;
            if (v > -INFINITY && v >= kth) c[n++] = (cand){v, (int32_t)i};
        }
    }
    double mx = c[0].v;
    for (size_t j = 1; j < n; j++)
        if (c[j].v > mx) mx = c[j].v;
    /* top-p */
    if (p->top_p < 1.0f && n > 1) n = top_p_filter(s, n, mx, (double)p->top_p);
    /* min-p: drop p < min_p * p_max, i.e. exp(v - max) < min_p; the best
     * token always stays */
    if (p->min_p > 0 && n > 1) {
        double thr = (double)p->min_p;
        size_t m = 0, best = 0;
        for (size_t j = 1; j < n; j++)
            if (better(c[j], c[best])) best = j;
        for (size_t j = 0; j < n; j++)
            if (j == best || exp((double)c[j].v - mx) >= thr) c[m++] = c[j];
        n = m;
    }
    *n_out = n;
    *mx_out = mx;
    return 0;
}

int32_t gg_sampler_next(gg_sampler *s, float *logits, const int32_t *history, size_t n_history) {
    size_t n;
    double mx;
    int32_t tok;
    if (run_filters(s, logits, history, n_history, &n, &mx, &tok)) return tok;
    const cand *c = s->c;
    double *w = s->w, z = 0;
    for (size_t j = 0; j < n; j++) z += (w[j] = exp((double)c[j].v - mx));
    double u = rand01(s) * z, cum = 0; /* one draw per sampled token, whatever survives */
    for (size_t j = 0; j < n; j++) {
        cum += w[j];
        if (u < cum) return c[j].i;
    }
    /* rounding: the last candidate with positive weight */
    for (size_t j = n; j-- > 0;)
        if (w[j] > 0) return c[j].i;
    return c[0].i;
}

size_t gg_sampler_dist(gg_sampler *s, float *logits, const int32_t *history, size_t n_history, int32_t *ids,
                       float *probs, size_t cap) {
    size_t n;
    double mx;
    int32_t tok;
    if (run_filters(s, logits, history, n_history, &n, &mx, &tok)) {
        if (cap > 0) {
            if (ids) ids[0] = tok;
            if (probs) probs[0] = 1.0f;
        }
        return 1;
    }
    sort_desc(s->c, n);
    double z = 0;
    for (size_t j = 0; j < n; j++) z += exp((double)s->c[j].v - mx);
    for (size_t j = 0; j < n && j < cap; j++) {
        if (ids) ids[j] = s->c[j].i;
        if (probs) probs[j] = (float)(exp((double)s->c[j].v - mx) / z);
    }
    return n;
}
