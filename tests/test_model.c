/* test_model.c — the engine against transformers: every fixture checkpoint
 * converted to f32 gives ref_logits.f32 (relative error < 1e-4, max abs
 * < 1e-3) and greedy_out; prefill in one batch, in small batches and token by
 * token agree; q8/nf4/bf16 models give the logits of the same model
 * dequantized to f32 (quantization is the only difference), and the KL
 * divergence / top-1 agreement of nf4 and q8 against f32 are printed; PEFT
 * adapters (from the folder and from a .gg copy) give lora_logits.f32, and
 * adapters combine linearly (two at 0.5 = one at 1, scale 0 = none); bad
 * input (ids out of vocabulary, past the context) fails with clear errors.
 * With the int8 matmul (be->int8_matmul) the q8 / nf4 logits must stay
 * within mean KL 1e-4 of the float matmul's (measured: at most 5.4e-6). */
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "backend-cpu/cpu_backend.h"
#include "backend-cpu/cpu_internal.h"
#include "convert/convert.h"
#include "ggfmt/ggfmt.h"
#include "models/model.h"
#include "models/model_internal.h"
#include "tests/check.h"
#include "tests/fixture_gg.h"
#include "tools/engine.h"
#include "tests/test_device.h"

static char tmpdir[] = "/tmp/gg_test_model_XXXXXX";
static gg_backend *be;

static const char *fixtures[] = {"llama2-mha", "llama3-gqa", "qwen2-bias-tied", "mistral-gqa-f16",
                                 "falcon7b-style", "falcon40b-style", "gemma-f32"};
#define NFIX (sizeof fixtures / sizeof *fixtures)

typedef struct ref {
    int32_t ids[2][24];
    int32_t greedy_prompt[8], greedy_out[12];
    int64_t vocab;
    float *logits; /* [2, 24, vocab] */
} ref;

static int read_ids(json_t *a, int32_t *out, size_t n) {
    if (!json_is_array(a) || json_array_size(a) != n) return -1;
    for (size_t i = 0; i < n; i++) out[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return 0;
}

static float *read_f32(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *p = malloc(n * sizeof *p);
    size_t got = p ? fread(p, sizeof *p, n, f) : 0;
    fclose(f);
    if (got != n) {
        free(p);
        return NULL;
    }
    return p;
}

static int load_ref(const char *fix, ref *r, const char *logits_file) {
    char p[600];
    snprintf(p, sizeof p, "%s/hf/%s/reference.json", check_fixtures(), fix);
    json_t *j = json_load_file(p, 0, NULL);
    if (!j) return -1;
    json_t *ids = json_object_get(j, "ids"), *shape = json_object_get(j, "logits_shape");
    int bad = read_ids(json_array_get(ids, 0), r->ids[0], 24) || read_ids(json_array_get(ids, 1), r->ids[1], 24) ||
              read_ids(json_object_get(j, "greedy_prompt"), r->greedy_prompt, 8) ||
              read_ids(json_object_get(j, "greedy_out"), r->greedy_out, 12);
    r->vocab = json_integer_value(json_array_get(shape, 2));
    json_decref(j);
    if (bad || r->vocab <= 0) return -1;
    snprintf(p, sizeof p, "%s/hf/%s/%s", check_fixtures(), fix, logits_file);
    r->logits = read_f32(p, (size_t)(2 * 24 * r->vocab));
    return r->logits ? 0 : -1;
}

static int convert_to(const char *fix, gg_type t, char *out, size_t len) {
    return fixture_gg(fix, t, tmpdir, out, len);
}

/* Relative L2 error and max abs error of a against b. */
static void compare(const float *a, const float *b, size_t n, double *rel, double *maxabs) {
    double num = 0, den = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
        if (fabs(d) > mx || isnan(d)) mx = isnan(d) ? INFINITY : fabs(d);
    }
    *rel = den > 0 ? sqrt(num / den) : sqrt(num);
    *maxabs = mx;
}

/* Logits [2, 24, vocab] of both sequences; batch = tokens per eval call. */
static int run_logits(gg_model *m, const ref *r, int64_t batch, float *out) {
    gg_err err;
    int64_t V = gg_model_cfg(m)->vocab;
    for (int sq = 0; sq < 2; sq++) {
        gg_session *s;
        if (gg_session_new(&s, m, 24, batch, &err)) {
            fprintf(stderr, "session: %s\n", err.msg);
            return -1;
        }
        for (int64_t i = 0; i < 24; i += batch) {
            int64_t n = 24 - i < batch ? 24 - i : batch;
            if (gg_session_eval(s, r->ids[sq] + i, n, out + (sq * 24 + i) * V, 1, &err)) {
                fprintf(stderr, "eval: %s\n", err.msg);
                gg_session_free(s);
                return -1;
            }
        }
        gg_session_free(s);
    }
    return 0;
}

static int argmax(const float *x, int64_t n) {
    int best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int)i;
    return best;
}

static void parity_one(const char *fix) {
    ref r;
    char path[600];
    REQUIRE(load_ref(fix, &r, "ref_logits.f32") == 0, "%s: reference files", fix);
    REQUIRE(convert_to(fix, GG_TYPE_F32, path, sizeof path) == 0, "%s", fix);
    gg_err err;
    gg_file *f;
    gg_model *m;
    REQUIRE(gg_file_open(&f, path, 0, &err) == 0, "%s", err.msg);
    if (gg_model_load(&m, f, be, &err)) {
        CHECK(0, "%s: %s", fix, err.msg);
        gg_file_close(f);
        free(r.logits);
        return;
    }
    size_t N = (size_t)(2 * 24 * r.vocab);
    float *out = malloc(N * sizeof *out);
    /* Tolerances from the fixtures' README: rel < 1e-4, max abs < 1e-3. */
    int64_t batches[] = {24, 5, 1};
    for (int b = 0; b < 3; b++) {
        memset(out, 0, N * sizeof *out);
        if (run_logits(m, &r, batches[b], out)) {
            CHECK(0, "%s: eval failed", fix);
            break;
        }
        double rel, mx;
        compare(out, r.logits, N, &rel, &mx);
        CHECK(rel < 1e-4 && mx < 1e-3, "%s batch %lld: rel %.3g max abs %.3g", fix, (long long)batches[b], rel, mx);
        if (b == 0) printf("  %-16s f32 logits: rel %.2e, max abs %.2e\n", fix, rel, mx);
    }
    /* Greedy decoding: 8 prompt tokens, then 12 generated one at a time. */
    gg_session *s;
    REQUIRE(gg_session_new(&s, m, 20, 8, &err) == 0, "%s", err.msg);
    float *lg = malloc((size_t)r.vocab * sizeof *lg);
    int ok = gg_session_eval(s, r.greedy_prompt, 8, lg, 0, &err) == 0;
    int32_t got[12];
    for (int i = 0; ok && i < 12; i++) {
        got[i] = argmax(lg, r.vocab);
        ok = i == 11 || gg_session_eval(s, &got[i], 1, lg, 0, &err) == 0;
    }
    CHECK(ok, "%s: %s", fix, err.msg);
    CHECK(ok && memcmp(got, r.greedy_out, sizeof got) == 0, "%s: greedy output differs", fix);
    /* Past the context: a clear error, nothing evaluated. */
    CHECK(gg_session_eval(s, r.greedy_prompt, 8, lg, 0, &err) == -1 && strstr(err.msg, "context"), "%s", err.msg);
    int32_t badid = (int32_t)r.vocab;
    gg_session_truncate(s, 0);
    CHECK(gg_session_eval(s, &badid, 1, lg, 0, &err) == -1 && strstr(err.msg, "vocabulary"), "%s", err.msg);
    gg_session_free(s);
    free(lg);
    free(out);
    free(r.logits);
    gg_model_free(m);
    gg_file_close(f);
}

static void test_parity_f32(void) {
    for (size_t i = 0; i < NFIX; i++) parity_one(fixtures[i]);
}

/* Replace every quantized weight of m by its f32 dequantization. */
static void **dequantize_model(gg_model *m, size_t *nbufs) {
    size_t cap = (size_t)m->cfg.n_layers * GG_LIN_COUNT + 2, n = 0;
    void **bufs = calloc(cap, sizeof *bufs);
    gg_weight *ws[cap];
    size_t nw = 0;
    for (int64_t i = 0; i < m->cfg.n_layers; i++)
        for (int l = 0; l < GG_LIN_COUNT; l++)
            if (m->layers[i].w[l].data) ws[nw++] = &m->layers[i].w[l];
    ws[nw++] = &m->embed;
    if (m->lm_head == &m->lm_head_w) ws[nw++] = &m->lm_head_w;
    gg_err err;
    for (size_t i = 0; i < nw; i++) {
        gg_weight *w = ws[i];
        float *d = malloc((size_t)(w->rows * w->cols) * sizeof *d);
        gg_dequantize_rows_ref(w->type, w->data, (uint64_t)w->rows, (uint64_t)w->cols, 0, (uint64_t)w->rows, d, &err);
        int64_t rows = w->rows, cols = w->cols;
        be->weight_free(be, w);
        be->weight_init(be, w, GG_TYPE_F32, rows, cols, d, &err);
        bufs[n++] = d;
    }
    *nbufs = n;
    return bufs;
}

static double kl_div(const float *p_logits, const float *q_logits, int64_t V) {
    /* KL(P || Q) with P = softmax(p_logits) (the f32 model). */
    double mp = -INFINITY, mq = -INFINITY, sp = 0, sq = 0, kl = 0;
    for (int64_t i = 0; i < V; i++) {
        if (p_logits[i] > mp) mp = p_logits[i];
        if (q_logits[i] > mq) mq = q_logits[i];
    }
    for (int64_t i = 0; i < V; i++) {
        sp += exp(p_logits[i] - mp);
        sq += exp(q_logits[i] - mq);
    }
    for (int64_t i = 0; i < V; i++) {
        double lp = p_logits[i] - mp - log(sp), lq = q_logits[i] - mq - log(sq);
        kl += exp(lp) * (lp - lq);
    }
    return kl;
}

static void test_quantized(void) {
    gg_type types[] = {GG_TYPE_BF16, GG_TYPE_Q8, GG_TYPE_NF4};
    for (size_t fi = 0; fi < NFIX; fi++) {
        const char *fix = fixtures[fi];
        ref r;
        REQUIRE(load_ref(fix, &r, "ref_logits.f32") == 0, "%s", fix);
        size_t N = (size_t)(2 * 24 * r.vocab);
        float *ref32 = malloc(N * sizeof(float)), *q = malloc(N * sizeof(float)), *dq = malloc(N * sizeof(float));
        float *q8i = malloc(N * sizeof(float));
        gg_err err;
        char path[600];
        /* The f32 model's logits (already proven equal to transformers). */
        gg_file *f;
        gg_model *m;
        REQUIRE(convert_to(fix, GG_TYPE_F32, path, sizeof path) == 0, "%s", fix);
        REQUIRE(gg_file_open(&f, path, 0, &err) == 0 && gg_model_load(&m, f, be, &err) == 0, "%s", err.msg);
        REQUIRE(run_logits(m, &r, 24, ref32) == 0, "%s", fix);
        gg_model_free(m);
        gg_file_close(f);
        for (size_t ti = 0; ti < 3; ti++) {
            REQUIRE(convert_to(fix, types[ti], path, sizeof path) == 0, "%s", fix);
            REQUIRE(gg_file_open(&f, path, 0, &err) == 0 && gg_model_load(&m, f, be, &err) == 0, "%s", err.msg);
            int ok = run_logits(m, &r, 24, q) == 0;
            int i8 = types[ti] != GG_TYPE_BF16 && test_device_is_cpu() && cpu_int8_supported();
            if (i8) { /* the int8 matmul (24 tokens take it): its own rounding on top */
                be->int8_matmul = 1;
                ok = ok && run_logits(m, &r, 24, q8i) == 0;
                be->int8_matmul = 0;
            }
            size_t nb = 0;
            void **bufs = NULL;
            double rel = 0, mx = 0;
            if (test_device_is_cpu()) { /* the dequantized weights are read on the host */
                bufs = dequantize_model(m, &nb);
                ok = ok && run_logits(m, &r, 24, dq) == 0;
                compare(q, dq, N, &rel, &mx);
            }
            CHECK(ok, "%s %s: eval", fix, gg_type_name(types[ti]));
            /* Same tolerance as f32 parity: only the summation order differs. */
            CHECK(rel < 1e-4 && mx < 1e-3, "%s %s vs dequantized: rel %.3g max abs %.3g", fix,
                  gg_type_name(types[ti]), rel, mx);
            double kl = 0;
            int agree = 0;
            for (int64_t p = 0; p < 48; p++) {
                kl += kl_div(ref32 + p * r.vocab, q + p * r.vocab, r.vocab);
                agree += argmax(ref32 + p * r.vocab, r.vocab) == argmax(q + p * r.vocab, r.vocab);
            }
            printf("  %-16s %-4s vs dequantized: rel %.1e; vs f32: mean KL %.2e, top-1 agreement %d/48\n", fix,
                   gg_type_name(types[ti]), rel, kl / 48, agree);
            if (i8) {
                double kl8 = 0, klq = 0;
                int agree8 = 0;
                for (int64_t p = 0; p < 48; p++) {
                    kl8 += kl_div(ref32 + p * r.vocab, q8i + p * r.vocab, r.vocab);
                    klq += kl_div(q + p * r.vocab, q8i + p * r.vocab, r.vocab);
                    agree8 += argmax(ref32 + p * r.vocab, r.vocab) == argmax(q8i + p * r.vocab, r.vocab);
                }
                printf("  %-16s %-4s int8 matmul: vs f32: mean KL %.2e, top-1 %d/48; vs float matmul: KL %.2e\n",
                       fix, gg_type_name(types[ti]), kl8 / 48, agree8, klq / 48);
                CHECK(klq / 48 < 1e-4, "%s %s: int8 matmul moves the logits too much (KL %.3g)", fix,
                      gg_type_name(types[ti]), klq / 48);
            }
            gg_model_free(m);
            for (size_t i = 0; i < nb; i++) free(bufs[i]);
            free(bufs);
            gg_file_close(f);
        }
        free(ref32);
        free(q);
        free(dq);
        free(q8i);
        free(r.logits);
    }
}

/* Logits of both sequences with adapters l[0..n) at scales sc. */
static int run_lora(gg_model *m, const ref *r, gg_lora **l, const float *sc, size_t n, float *out) {
    gg_err err;
    int64_t V = gg_model_cfg(m)->vocab;
    for (int sq = 0; sq < 2; sq++) {
        gg_session *s;
        if (gg_session_new(&s, m, 24, 24, &err)) return -1;
        int rc = gg_session_set_adapters(s, l, sc, n, &err) || gg_session_eval(s, r->ids[sq], 24, out + sq * 24 * V, 1, &err);
        if (rc) fprintf(stderr, "lora eval: %s\n", err.msg);
        gg_session_free(s);
        if (rc) return -1;
    }
    return 0;
}

static void lora_one(const char *fix) {
    ref r, base;
    char path[600], dir[600], ggpath[700];
    REQUIRE(load_ref(fix, &r, "lora_logits.f32") == 0, "%s: lora_logits.f32", fix);
    REQUIRE(load_ref(fix, &base, "ref_logits.f32") == 0, "%s", fix);
    REQUIRE(convert_to(fix, GG_TYPE_F32, path, sizeof path) == 0, "%s", fix);
    snprintf(dir, sizeof dir, "%s/hf/%s/lora", check_fixtures(), fix);
    gg_err err;
    gg_file *f;
    gg_model *m;
    REQUIRE(gg_file_open(&f, path, 0, &err) == 0 && gg_model_load(&m, f, be, &err) == 0, "%s", err.msg);
    gg_lora *peft = NULL, *gg = NULL;
    CHECK(gg_tool_load_adapter(&peft, m, f, dir, &err) == 0, "%s: %s", fix, err.msg);
    /* The same adapter through a .gg adapter file. */
    gg_adapter *a = NULL;
    snprintf(ggpath, sizeof ggpath, "%s/%s.adapter.gg", tmpdir, fix);
    CHECK(gg_adapter_load_peft(&a, dir, f, &err) == 0 && gg_adapter_save_gg(a, ggpath, &err) == 0, "%s", err.msg);
    gg_adapter_free(a);
    CHECK(gg_tool_load_adapter(&gg, m, f, ggpath, &err) == 0, "%s: %s", fix, err.msg);
    size_t N = (size_t)(2 * 24 * r.vocab);
    float *out = malloc(N * sizeof *out);
    double rel, mx;
    float one = 1.0f, halves[2] = {0.5f, 0.5f}, zero = 0.0f;
    gg_lora *pair[2] = {peft, gg};
    /* Tolerances from the fixtures' README: rel < 1e-4, max abs < 1e-3. */
    if (peft && run_lora(m, &r, &peft, &one, 1, out) == 0) {
        compare(out, r.logits, N, &rel, &mx);
        CHECK(rel < 1e-4 && mx < 1e-3, "%s PEFT folder: rel %.3g max abs %.3g", fix, rel, mx);
        printf("  %-16s LoRA logits: rel %.2e, max abs %.2e\n", fix, rel, mx);
    } else CHECK(0, "%s: PEFT run", fix);
    if (gg && run_lora(m, &r, &gg, &one, 1, out) == 0) {
        compare(out, r.logits, N, &rel, &mx);
        CHECK(rel < 1e-4 && mx < 1e-3, "%s .gg adapter: rel %.3g max abs %.3g", fix, rel, mx);
    } else CHECK(0, "%s: .gg adapter run", fix);
    if (peft && gg && run_lora(m, &r, pair, halves, 2, out) == 0) {
        compare(out, r.logits, N, &rel, &mx);
        CHECK(rel < 1e-4 && mx < 1e-3, "%s two adapters at 0.5: rel %.3g max abs %.3g", fix, rel, mx);
    } else CHECK(0, "%s: two adapters", fix);
    if (peft && run_lora(m, &r, &peft, &zero, 1, out) == 0) {
        compare(out, base.logits, N, &rel, &mx);
        CHECK(rel < 1e-4 && mx < 1e-3, "%s scale 0: rel %.3g max abs %.3g", fix, rel, mx);
    } else CHECK(0, "%s: scale 0", fix);
    free(out);
    gg_lora_free(peft);
    gg_lora_free(gg);
    gg_model_free(m);
    gg_file_close(f);
    free(r.logits);
    free(base.logits);
}

static void test_lora(void) {
    lora_one("llama2-mha");
    lora_one("qwen2-bias-tied");
}

/* An adapter made for another base is refused with a clear message. */
static void test_lora_wrong_base(void) {
    char path[600], dir[600];
    REQUIRE(convert_to("llama3-gqa", GG_TYPE_F32, path, sizeof path) == 0, "convert");
    snprintf(dir, sizeof dir, "%s/hf/llama2-mha/lora", check_fixtures());
    gg_err err;
    gg_file *f;
    gg_model *m;
    REQUIRE(gg_file_open(&f, path, 0, &err) == 0 && gg_model_load(&m, f, be, &err) == 0, "%s", err.msg);
    gg_lora *l = NULL;
    CHECK(gg_tool_load_adapter(&l, m, f, dir, &err) == -1, "llama2 adapter loaded onto llama3");
    printf("  wrong base: %s\n", err.msg);
    gg_lora_free(l);
    gg_model_free(m);
    gg_file_close(f);
}

static void cleanup(void) { check_rm_tree(tmpdir); }

int main(void) {
    if (!check_have_fixture("hf/llama2-mha/config.json")) return check_done();
    if (!mkdtemp(tmpdir)) return 1;
    be = test_backend();
    if (!be) return 1;
    if (!test_device_is_cpu()) printf("# device %s\n", test_device());
    RUN(test_parity_f32);
    RUN(test_quantized);
    RUN(test_lora);
    RUN(test_lora_wrong_base);
    gg_backend_free(be);
    cleanup();
    return check_done();
}
