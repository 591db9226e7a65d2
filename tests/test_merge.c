/* test_merge.c — convert/merge.c against the fixtures: the PEFT adapter
 * merged into the f32 base gives lora_logits.f32 (llama2-mha, qwen2-bias-tied;
 * rel < 1e-4, max abs < 1e-3, the fixtures' tolerances), every base key is
 * kept and the fingerprint changes; scale 0 (or B = 0) is the identity
 * (bit-identical tensors); the PEFT folder and its .gg copy merge to the same
 * tensors and fingerprint; two adapters merge additively (at once = one after the other =
 * both applied unmerged); nf4 and q8 merges report lost fractions in [0, 1]
 * and give logits closer to the f32 merge than the unmerged base's; an nf4
 * merge stored as f32 equals the adapter applied unmerged to the nf4 base;
 * mismatched adapters and unwritable outputs fail with one clear line and
 * leave no file. */
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "backend-cpu/cpu_backend.h"
#include "convert/adapter.h"
#include "convert/convert.h"
#include "convert/merge.h"
#include "ggfmt/ggfmt.h"
#include "models/model.h"
#include "tests/check.h"
#include "tests/fixture_gg.h"
#include "tests/rng.h"
#include "tools/engine.h"

static char tmpdir[] = "/tmp/gg_test_merge_XXXXXX";
static gg_backend *be;

typedef struct ref {
    int32_t ids[2][24];
    int64_t vocab;
    float *logits; /* [2, 24, vocab] */
} ref;

static int read_ids(json_t *a, int32_t *out, size_t n) {
    if (!json_is_array(a) || json_array_size(a) != n) return -1;
    for (size_t i = 0; i < n; i++) out[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return 0;
}

static int load_ref(const char *fix, ref *r, const char *logits_file) {
    char p[600];
    snprintf(p, sizeof p, "%s/hf/%s/reference.json", check_fixtures(), fix);
    json_t *j = json_load_file(p, 0, NULL);
    if (!j) return -1;
    json_t *ids = json_object_get(j, "ids"), *shape = json_object_get(j, "logits_shape");
    int bad = read_ids(json_array_get(ids, 0), r->ids[0], 24) || read_ids(json_array_get(ids, 1), r->ids[1], 24);
    r->vocab = json_integer_value(json_array_get(shape, 2));
    json_decref(j);
    if (bad || r->vocab <= 0) return -1;
    size_t n = (size_t)(2 * 24 * r->vocab);
    snprintf(p, sizeof p, "%s/hf/%s/%s", check_fixtures(), fix, logits_file);
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    r->logits = malloc(n * sizeof(float));
    size_t got = r->logits ? fread(r->logits, sizeof(float), n, f) : 0;
    fclose(f);
    if (got != n) {
        free(r->logits);
        return -1;
    }
    return 0;
}

static int convert_to(const char *fix, gg_type t, char *out, size_t len) {
    return fixture_gg(fix, t, tmpdir, out, len);
}

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

/* Collects the per-tensor reports. */
typedef struct seen {
    int n, bad;
    double lost_min, lost_max;
} seen;

static void on_tensor(void *ctx, const gg_merge_tensor *t) {
    seen *s = ctx;
    if (!s) return;
    if (s->n == 0 || t->lost < s->lost_min) s->lost_min = t->lost;
    if (s->n == 0 || t->lost > s->lost_max) s->lost_max = t->lost;
    if (!(t->lost >= 0 && t->lost <= 1) || !(t->delta_norm > 0)) s->bad++;
    s->n++;
}

static int merge(const char *base, const gg_merge_adapter *a, size_t n, const char *out, int set_type, gg_type type,
                 int force, gg_merge_stats *st, seen *sn, gg_err *err) {
    gg_merge_opts o = {.base_path = base, .out_path = out, .adapters = a, .n_adapters = n, .set_type = set_type,
                       .type = type, .force = force, .threads = 2, .on_tensor = on_tensor, .ctx = sn};
    gg_merge_stats dummy;
    return gg_merge(&o, st ? st : &dummy, err);
}

/* Logits [2, 24, vocab] of model file path, with adapters (unmerged) given
 * as paths at scales sc. */
static int logits_of(const char *path, const ref *r, const char *const *ad, const float *sc, size_t nad, float *out) {
    gg_err err;
    gg_file *f;
    gg_model *m;
    gg_lora *l[4] = {0};
    int rc = -1;
    if (gg_file_open(&f, path, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    if (gg_model_load(&m, f, be, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        gg_file_close(f);
        return -1;
    }
    size_t k = 0;
    for (; k < nad; k++)
        if (gg_tool_load_adapter(&l[k], m, f, ad[k], &err)) {
            fprintf(stderr, "%s\n", err.msg);
            goto out;
        }
    int64_t V = gg_model_cfg(m)->vocab;
    for (int sq = 0; sq < 2; sq++) {
        gg_session *s;
        if (gg_session_new(&s, m, 24, 24, &err)) goto out;
        int bad = (nad && gg_session_set_adapters(s, l, sc, nad, &err)) ||
                  gg_session_eval(s, r->ids[sq], 24, out + sq * 24 * V, 1, &err);
        gg_session_free(s);
        if (bad) {
            fprintf(stderr, "eval %s: %s\n", path, err.msg);
            goto out;
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < k; i++) gg_lora_free(l[i]);
    gg_model_free(m);
    gg_file_close(f);
    return rc;
}

static int no_file(const char *path) {
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    return access(path, F_OK) != 0 && access(tmp, F_OK) != 0;
}

static uint64_t meta_u64(const gg_file *f, const char *key) {
    uint64_t v = 0;
    gg_err err;
    gg_meta_get_u64(f, key, &v, &err);
    return v;
}

/* Same metadata (but the fingerprint and merge.*), and the tensors not in
 * the adapter (changed_prefix "") byte-identical. */
static void check_kept(const char *base, const char *merged) {
    gg_err err;
    gg_file *a, *b;
    REQUIRE(gg_file_open(&a, base, 0, &err) == 0 && gg_file_open(&b, merged, 0, &err) == 0, "%s", err.msg);
    int missing = 0;
    for (size_t i = 0; i < gg_meta_count(a); i++) {
        const gg_meta *m = gg_meta_at(a, i);
        const gg_value *v = gg_meta_find(b, m->key);
        if (!v || v->type != m->val.type) missing++;
        else if (v->type == GG_V_STR && (v->v.s.len != m->val.v.s.len || memcmp(v->v.s.ptr, m->val.v.s.ptr, v->v.s.len)))
            missing++;
    }
    CHECK(missing == 0, "%d base keys missing or changed in %s", missing, merged);
    CHECK(gg_meta_count(b) == gg_meta_count(a) + 3, "keys: base %zu, merged %zu", gg_meta_count(a), gg_meta_count(b));
    CHECK(meta_u64(a, "model.fingerprint") != meta_u64(b, "model.fingerprint"), "fingerprint unchanged");
    CHECK(meta_u64(b, "merge.base_fingerprint") == meta_u64(a, "model.fingerprint"), "merge.base_fingerprint");
    const gg_value *ma = gg_meta_find(b, "merge.adapters");
    CHECK(ma && ma->type == GG_V_ARR && ma->elem == GG_V_STR && ma->count == 1, "merge.adapters");
    const gg_tensor *ea = gg_tensor_find(a, "embed.weight"), *eb = gg_tensor_find(b, "embed.weight");
    CHECK(ea && eb && ea->size == eb->size && memcmp(ea->data, eb->data, ea->size) == 0, "embed.weight changed");
    CHECK(gg_file_verify(b, &err) == 0, "%s", err.msg);
    gg_file_close(a);
    gg_file_close(b);
}

static float *lora32[2]; /* the f32-merged logits of llama2-mha (kept for the quantized tests) */

static void merge_peft_one(const char *fix, int idx) {
    ref r;
    char base[600], dir[600], out[700];
    REQUIRE(load_ref(fix, &r, "lora_logits.f32") == 0, "%s: lora_logits.f32", fix);
    REQUIRE(convert_to(fix, GG_TYPE_F32, base, sizeof base) == 0, "%s", fix);
    snprintf(dir, sizeof dir, "%s/hf/%s/lora", check_fixtures(), fix);
    snprintf(out, sizeof out, "%s/%s.merged.gg", tmpdir, fix);
    gg_merge_adapter a = {dir, 1.0f};
    gg_merge_stats st;
    seen sn = {0};
    gg_err err;
    REQUIRE(merge(base, &a, 1, out, 0, GG_TYPE_F32, 0, &st, &sn, &err) == 0, "%s: %s", fix, err.msg);
    CHECK(st.n_merged == 14 && sn.n == 14 && st.lost_max == 0 && sn.bad == 0, "%s: merged %zu, lost %g", fix,
          st.n_merged, st.lost_max);
    size_t N = (size_t)(2 * 24 * r.vocab);
    float *lg = malloc(N * sizeof *lg);
    if (logits_of(out, &r, NULL, NULL, 0, lg) == 0) {
        double rel, mx;
        compare(lg, r.logits, N, &rel, &mx);
        CHECK(rel < 1e-4 && mx < 1e-3, "%s merged: rel %.3g max abs %.3g", fix, rel, mx);
        printf("  %-16s merged f32 vs lora_logits: rel %.2e, max abs %.2e\n", fix, rel, mx);
    } else CHECK(0, "%s: eval", fix);
    check_kept(base, out);
    lora32[idx] = lg;
    free(r.logits);
}

static void test_merge_peft(void) {
    merge_peft_one("llama2-mha", 0);
    merge_peft_one("qwen2-bias-tied", 1);
}

static int make_adapter(const char *base, const char *path, int mode);

/* Scale 0, and an adapter with B = 0 at scale 1: every tensor
 * bit-identical to the base's (f32 and nf4 bases). */
static void test_scale_zero(void) {
    gg_type types[] = {GG_TYPE_F32, GG_TYPE_NF4, GG_TYPE_F32, GG_TYPE_NF4};
    char zb[700];
    snprintf(zb, sizeof zb, "%s/zero-b.adapter.gg", tmpdir);
    for (int ti = 0; ti < 4; ti++) {
        char base[600], dir[600], out[700];
        REQUIRE(convert_to("llama2-mha", types[ti], base, sizeof base) == 0, "convert");
        snprintf(dir, sizeof dir, "%s/hf/llama2-mha/lora", check_fixtures());
        snprintf(out, sizeof out, "%s/zero.%d.gg", tmpdir, ti);
        gg_merge_adapter a = {dir, 0.0f};
        if (ti == 2) REQUIRE(make_adapter(base, zb, 2) == 0, "B = 0 adapter");
        if (ti >= 2) a = (gg_merge_adapter){zb, 1.0f};
        gg_merge_stats st;
        gg_err err;
        REQUIRE(merge(base, &a, 1, out, 0, GG_TYPE_F32, 0, &st, NULL, &err) == 0, "%s", err.msg);
        CHECK(st.n_merged == 0, "merged %zu", st.n_merged);
        gg_file *fa, *fb;
        REQUIRE(gg_file_open(&fa, base, 0, &err) == 0 && gg_file_open(&fb, out, 0, &err) == 0, "%s", err.msg);
        int diff = gg_tensor_count(fa) != gg_tensor_count(fb);
        for (size_t i = 0; !diff && i < gg_tensor_count(fa); i++) {
            const gg_tensor *x = gg_tensor_at(fa, i), *y = gg_tensor_at(fb, i);
            diff += strcmp(x->name, y->name) || x->type != y->type || x->size != y->size ||
                    memcmp(x->data, y->data, x->size) != 0;
        }
        CHECK(!diff, "%s: scale 0 changed %d tensors", gg_type_name(types[ti]), diff);
        gg_file_close(fa);
        gg_file_close(fb);
    }
}

/* An adapter for llama2-mha with the fixture's modules, saved as a .gg
 * adapter for base: mode 0 the fixture's values, 1 new random A and B,
 * 2 B = 0 (as an untrained adapter). */
static int make_adapter(const char *base, const char *path, int mode) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/hf/llama2-mha/lora", check_fixtures());
    gg_err err;
    gg_file *f;
    gg_adapter *a;
    if (gg_file_open(&f, base, 0, &err) || gg_adapter_load_peft(&a, dir, f, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    rng_seed(42);
    for (size_t i = 0; mode && i < a->n; i++) {
        gg_adapter_tensor *t = &a->t[i];
        for (int64_t k = 0; k < t->r * t->in; k++) t->a[k] = (float)(0.2 * rng_gauss());
        for (int64_t k = 0; k < t->out * t->r; k++) t->b[k] = mode == 2 ? 0.0f : (float)(0.2 * rng_gauss());
    }
    int rc = gg_adapter_save_gg(a, path, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    gg_adapter_free(a);
    gg_file_close(f);
    return rc;
}

/* max |x − y| over every tensor of two f32 files, relative to max |y|. */
static double max_tensor_diff(const char *p, const char *q) {
    gg_err err;
    gg_file *a, *b;
    if (gg_file_open(&a, p, 0, &err) || gg_file_open(&b, q, 0, &err)) return INFINITY;
    double mx = 0, my = 0;
    for (size_t i = 0; i < gg_tensor_count(a); i++) {
        const gg_tensor *x = gg_tensor_at(a, i), *y = gg_tensor_find(b, x->name);
        if (!y || x->type != GG_TYPE_F32 || y->type != GG_TYPE_F32 || x->size != y->size) {
            mx = INFINITY;
            break;
        }
        const float *u = x->data, *v = y->data;
        for (size_t k = 0; k < x->size / 4; k++) {
            if (fabs((double)u[k] - v[k]) > mx) mx = fabs((double)u[k] - v[k]);
            if (fabs(v[k]) > my) my = fabs(v[k]);
        }
    }
    gg_file_close(a);
    gg_file_close(b);
    return my > 0 ? mx / my : mx;
}

/* The PEFT folder and its .gg copy merge to the same tensors and fingerprint. */
static void test_gg_adapter(void) {
    char base[600], dir[600], ga[700], o1[700], o2[700];
    REQUIRE(convert_to("llama2-mha", GG_TYPE_F32, base, sizeof base) == 0, "convert");
    snprintf(dir, sizeof dir, "%s/hf/llama2-mha/lora", check_fixtures());
    snprintf(ga, sizeof ga, "%s/fixture.adapter.gg", tmpdir);
    snprintf(o1, sizeof o1, "%s/via-peft.gg", tmpdir);
    snprintf(o2, sizeof o2, "%s/via-gg.gg", tmpdir);
    REQUIRE(make_adapter(base, ga, 0) == 0, "adapter");
    gg_merge_adapter a = {dir, 0.75f}, b = {ga, 0.75f};
    gg_merge_stats s1, s2;
    gg_err err;
    REQUIRE(merge(base, &a, 1, o1, 0, GG_TYPE_F32, 0, &s1, NULL, &err) == 0, "%s", err.msg);
    REQUIRE(merge(base, &b, 1, o2, 0, GG_TYPE_F32, 0, &s2, NULL, &err) == 0, "%s", err.msg);
    CHECK(max_tensor_diff(o1, o2) == 0, "PEFT folder and .gg adapter merge differently");
    CHECK(s1.fingerprint == s2.fingerprint && s1.fingerprint != s1.base_fingerprint, "fingerprints %016llx %016llx",
          (unsigned long long)s1.fingerprint, (unsigned long long)s2.fingerprint);
}

static void test_two_adapters(void) {
    char base[600], dir[600], second[700], ab[700], a1[700], a1b[700];
    REQUIRE(convert_to("llama2-mha", GG_TYPE_F32, base, sizeof base) == 0, "convert");
    snprintf(dir, sizeof dir, "%s/hf/llama2-mha/lora", check_fixtures());
    snprintf(second, sizeof second, "%s/second.adapter.gg", tmpdir);
    snprintf(ab, sizeof ab, "%s/ab.gg", tmpdir);
    snprintf(a1, sizeof a1, "%s/a1.gg", tmpdir);
    snprintf(a1b, sizeof a1b, "%s/a1b.gg", tmpdir);
    REQUIRE(make_adapter(base, second, 1) == 0, "second adapter");
    gg_merge_adapter both[2] = {{dir, 1.0f}, {second, 0.5f}};
    gg_err err;
    REQUIRE(merge(base, both, 2, ab, 0, GG_TYPE_F32, 0, NULL, NULL, &err) == 0, "%s", err.msg);
    REQUIRE(merge(base, both, 1, a1, 0, GG_TYPE_F32, 0, NULL, NULL, &err) == 0, "%s", err.msg);
    /* The merged model is another model: the second adapter (made for the
     * base) is refused on it unless forced. */
    CHECK(merge(a1, both + 1, 1, a1b, 0, GG_TYPE_F32, 0, NULL, NULL, &err) == -1 && strstr(err.msg, "fingerprint") &&
              strstr(err.msg, "--force"),
          "chained merge without --force: %s", err.msg);
    CHECK(no_file(a1b), "a refused merge left a file");
    printf("  refused: %s\n", err.msg);
    REQUIRE(merge(a1, both + 1, 1, a1b, 0, GG_TYPE_F32, 1, NULL, NULL, &err) == 0, "%s", err.msg);
    double d = max_tensor_diff(a1b, ab);
    CHECK(d < 1e-6, "A then B vs A+B: max rel diff %.3g", d);
    printf("  A then B vs both at once: max |diff| / max |W| %.2e\n", d);
    gg_file *f;
    REQUIRE(gg_file_open(&f, a1b, 0, &err) == 0, "%s", err.msg);
    const gg_value *v = gg_meta_find(f, "merge.adapters");
    CHECK(v && v->type == GG_V_ARR && v->count == 2, "chained merge.adapters");
    gg_file_close(f);
    /* Both applied unmerged to the base. */
    ref r;
    REQUIRE(load_ref("llama2-mha", &r, "ref_logits.f32") == 0, "ref");
    size_t N = (size_t)(2 * 24 * r.vocab);
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    const char *paths[2] = {dir, second};
    float sc[2] = {1.0f, 0.5f};
    if (logits_of(ab, &r, NULL, NULL, 0, x) == 0 && logits_of(base, &r, paths, sc, 2, y) == 0) {
        double rel, mx;
        compare(x, y, N, &rel, &mx);
        CHECK(rel < 1e-4 && mx < 1e-3, "merged A+B vs unmerged: rel %.3g max abs %.3g", rel, mx);
        printf("  two adapters merged vs unmerged: rel %.2e, max abs %.2e\n", rel, mx);
    } else CHECK(0, "eval");
    free(x);
    free(y);
    free(r.logits);
}

/* Quantized bases: lost fractions in [0, 1]; the merged model is closer to
 * the f32 merge than the unmerged base; stored as f32 it equals the adapter
 * applied unmerged. */
static void test_quantized(void) {
    REQUIRE(lora32[0], "needs test_merge_peft");
    ref r;
    REQUIRE(load_ref("llama2-mha", &r, "ref_logits.f32") == 0, "ref");
    size_t N = (size_t)(2 * 24 * r.vocab);
    float *m = malloc(N * sizeof *m), *b = malloc(N * sizeof *b);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/hf/llama2-mha/lora", check_fixtures());
    gg_type types[] = {GG_TYPE_NF4, GG_TYPE_Q8};
    for (int ti = 0; ti < 2; ti++) {
        const char *tn = gg_type_name(types[ti]);
        char base[600], out[700];
        REQUIRE(convert_to("llama2-mha", types[ti], base, sizeof base) == 0, "convert");
        snprintf(out, sizeof out, "%s/merged.%s.gg", tmpdir, tn);
        gg_merge_adapter a = {dir, 1.0f};
        gg_merge_stats st;
        seen sn = {0};
        gg_err err;
        REQUIRE(merge(base, &a, 1, out, 0, GG_TYPE_F32, 0, &st, &sn, &err) == 0, "%s", err.msg);
        /* down (in = 172) cannot be blocked: ggconvert stored it as bf16. */
        CHECK(st.n_merged == 14 && st.n_quantized == 12 && sn.bad == 0, "%s: merged %zu quantized %zu bad %d", tn,
              st.n_merged, st.n_quantized, sn.bad);
        CHECK(st.qlost_max <= 1 && st.qlost_mean > 0 && st.lost_max == sn.lost_max, "%s: lost %g", tn, st.qlost_max);
        printf("  %-4s merge: lost fraction of the delta: mean %.4f, worst %.4f (quantized tensors), min %.4f\n", tn,
               st.qlost_mean, st.qlost_max, sn.lost_min);
        double rm, rb, mx;
        if (logits_of(out, &r, NULL, NULL, 0, m) == 0 && logits_of(base, &r, NULL, NULL, 0, b) == 0) {
            compare(m, lora32[0], N, &rm, &mx);
            compare(b, lora32[0], N, &rb, &mx);
            CHECK(rm < rb, "%s: merged rel %.3g vs unmerged base rel %.3g", tn, rm, rb);
            printf("  %-4s vs f32 merge: merged rel %.3e, unmerged base rel %.3e\n", tn, rm, rb);
        } else CHECK(0, "%s: eval", tn);
        /* Stored as f32: the dequantized base plus the exact delta. */
        snprintf(out, sizeof out, "%s/merged.%s-f32.gg", tmpdir, tn);
        REQUIRE(merge(base, &a, 1, out, 1, GG_TYPE_F32, 0, &st, NULL, &err) == 0, "%s", err.msg);
        CHECK(st.lost_max == 0 && st.n_retyped == 14, "%s -t f32: lost %g retyped %zu", tn, st.lost_max, st.n_retyped);
        const char *paths[1] = {dir};
        float one = 1.0f;
        if (logits_of(out, &r, NULL, NULL, 0, m) == 0 && logits_of(base, &r, paths, &one, 1, b) == 0) {
            compare(m, b, N, &rm, &mx);
            CHECK(rm < 1e-4 && mx < 1e-3, "%s -t f32 vs unmerged: rel %.3g max abs %.3g", tn, rm, mx);
            printf("  %-4s base merged -t f32 vs adapter unmerged: rel %.2e\n", tn, rm);
        } else CHECK(0, "%s: eval", tn);
    }
    free(m);
    free(b);
    free(r.logits);
}

static void test_refused(void) {
    char qbase[600], lbase[600], dir[600], out[700], second[700];
    REQUIRE(convert_to("qwen2-bias-tied", GG_TYPE_F32, qbase, sizeof qbase) == 0, "convert");
    REQUIRE(convert_to("llama2-mha", GG_TYPE_F32, lbase, sizeof lbase) == 0, "convert");
    snprintf(dir, sizeof dir, "%s/hf/llama2-mha/lora", check_fixtures());
    snprintf(out, sizeof out, "%s/refused.gg", tmpdir);
    snprintf(second, sizeof second, "%s/second.adapter.gg", tmpdir);
    gg_merge_adapter a = {dir, 1.0f};
    gg_err err;
    /* The llama2 PEFT folder on the qwen2 base (other shapes). */
    CHECK(merge(qbase, &a, 1, out, 0, GG_TYPE_F32, 1, NULL, NULL, &err) == -1 && strstr(err.msg, "lora"), "%s",
          err.msg);
    printf("  llama2 PEFT adapter on qwen2: %s\n", err.msg);
    CHECK(no_file(out), "file left");
    /* The llama2 .gg adapter on the qwen2 base: refused even with --force. */
    if (access(second, F_OK) == 0) {
        a.path = second;
        CHECK(merge(qbase, &a, 1, out, 0, GG_TYPE_F32, 1, NULL, NULL, &err) == -1 &&
                  strstr(err.msg, "second.adapter.gg") && strstr(err.msg, "shape mismatch"),
              "%s", err.msg);
        printf("  llama2 .gg adapter on qwen2 (--force): %s\n", err.msg);
        CHECK(no_file(out), "file left");
    }
    /* An adapter given as the base, a missing adapter, an unwritable output. */
    a.path = dir;
    CHECK(merge(second, &a, 1, out, 0, GG_TYPE_F32, 0, NULL, NULL, &err) == -1 && strstr(err.msg, "model"), "%s",
          err.msg);
    a.path = "/nonexistent/adapter.gg";
    CHECK(merge(lbase, &a, 1, out, 0, GG_TYPE_F32, 0, NULL, NULL, &err) == -1 && strstr(err.msg, "/nonexistent"),
          "%s", err.msg);
    a.path = dir;
    CHECK(merge(lbase, &a, 1, "/nonexistent/dir/out.gg", 0, GG_TYPE_F32, 0, NULL, NULL, &err) == -1 &&
              strstr(err.msg, "/nonexistent/dir/out.gg"),
          "%s", err.msg);
    printf("  unwritable: %s\n", err.msg);
}

static void cleanup(void) { check_rm_tree(tmpdir); }

int main(void) {
    if (!check_have_fixture("hf/llama2-mha/lora/adapter_config.json")) return check_done();
    if (!mkdtemp(tmpdir)) return 1;
    gg_err err;
    be = gg_backend_cpu_new(2, &err);
    if (!be) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    RUN(test_merge_peft);
    RUN(test_scale_zero);
    RUN(test_gg_adapter);
    RUN(test_two_adapters);
    RUN(test_quantized);
    RUN(test_refused);
    free(lora32[0]);
    free(lora32[1]);
    gg_backend_free(be);
    cleanup();
    return check_done();
}
