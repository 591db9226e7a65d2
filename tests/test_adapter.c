/* test_adapter.c — LoRA adapters (convert/adapter.h): the PEFT fixtures load
 * for their converted bases (counts, r, alpha, scale, values equal to the
 * safetensors), .gg save/reload is exact, rank_pattern / alpha_pattern and
 * rslora are honoured, Falcon's fused query_key_value B splits into the
 * same rows as the converted base weight (7B and 40B layouts), and every
 * kind of bad input (mismatched base, fingerprint, malformed or unsupported
 * adapter_config.json, stray tensors, damaged .gg adapters) is refused with
 * one line naming what is wrong. */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/adapter.h"
#include "convert/convert.h"
#include "convert/hf_model.h"
#include "convert/safetensors.h"
#include "ggfmt/ggfmt.h"
#include "tests/check.h"

static char tmpdir[] = "/tmp/gg_test_adapter_XXXXXX";
static char base_llama[600], base_qwen[600], base_llama_pert[600], base_f7[600], base_f40[600];

/* ---- helpers ------------------------------------------------------------ */

static void fix_path(char *buf, size_t cap, const char *name, const char *file) {
    snprintf(buf, cap, "%s/hf/%s%s%s", check_fixtures(), name, file ? "/" : "", file ? file : "");
}

static int convert_to(const char *hf_dir, const char *out, gg_err *err) {
    gg_convert_opts o = {.hf_dir = hf_dir, .out_path = out, .type = GG_TYPE_F32, .embed_rule = GG_RULE_DEFAULT,
                         .fallback_rule = GG_RULE_SOURCE, .threads = 2};
    gg_convert_stats s;
    return gg_convert(&o, &s, err);
}

static int has(const char *msg, const char *needle) { return strstr(msg, needle) != NULL; }

static int one_line(const char *msg) { return msg[0] && !strchr(msg, '\n'); }

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    if (!a || !b) {
        if (a) fclose(a);
        return -1;
    }
    char buf[1 << 15];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    return fclose(b);
}

static int link_abs(const char *target, const char *linkpath) {
    char abs[PATH_MAX];
    if (!realpath(target, abs)) return -1;
    return symlink(abs, linkpath);
}

/* A PEFT folder tmpdir/NAME: the fixture's adapter_config.json with the
 * keys of `patch` (a JSON object) set and `del` removed (may be NULL), and
 * the fixture's adapter_model.safetensors linked in. */
static void make_variant(char *out, size_t cap, const char *fixture, const char *name, const char *patch,
                         const char *del) {
    char src[600], dst[700];
    snprintf(out, cap, "%s/%s", tmpdir, name);
    mkdir(out, 0755);
    fix_path(src, sizeof src, fixture, "lora/adapter_config.json");
    json_error_t je;
    json_t *cfg = json_load_file(src, 0, &je);
    if (patch) {
        json_t *p = json_loads(patch, 0, &je);
        if (p) json_object_update(cfg, p);
        json_decref(p);
    }
    if (del) json_object_del(cfg, del);
    snprintf(dst, sizeof dst, "%s/adapter_config.json", out);
    json_dump_file(cfg, dst, JSON_INDENT(2));
    json_decref(cfg);
    fix_path(src, sizeof src, fixture, "lora/adapter_model.safetensors");
    snprintf(dst, sizeof dst, "%s/adapter_model.safetensors", out);
    unlink(dst);
    link_abs(src, dst);
}

/* Minimal safetensors writer for synthetic adapters. */
typedef struct st_ent {
    const char *name, *dtype;
    uint64_t rows, cols;
    const void *data;
    size_t nbytes;
} st_ent;

static int write_st(const char *path, const st_ent *e, size_t n) {
    size_t cap = 256 + n * 400, o = 0;
    char *h = malloc(cap);
    uint64_t off = 0;
    o += (size_t)snprintf(h + o, cap - o, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < n; i++) {
        o += (size_t)snprintf(h + o, cap - o, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu,%llu],\"data_offsets\":[%llu,%llu]}",
                              e[i].name, e[i].dtype, (unsigned long long)e[i].rows, (unsigned long long)e[i].cols,
                              (unsigned long long)off, (unsigned long long)(off + e[i].nbytes));
        off += e[i].nbytes;
    }
    o += (size_t)snprintf(h + o, cap - o, "}");
    while (o % 8) h[o++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(h);
        return -1;
    }
    uint64_t hl = o;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(hl >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(h, 1, o, f);
    for (size_t i = 0; i < n; i++) fwrite(e[i].data, 1, e[i].nbytes, f);
    free(h);
    return fclose(f);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static const char *LLAMA_HF[GG_LT_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                            "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                            "mlp.down_proj"};

static int open_base(gg_file **f, const char *path) {
    gg_err err;
    if (gg_file_open(f, path, 0, &err)) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    return 0;
}

/* Every module equals the fixture's safetensors exactly (f32 fixtures). */
static void check_values(const gg_adapter *a, const char *fixture) {
    char p[600];
    gg_err err;
    gg_st_set *st;
    fix_path(p, sizeof p, fixture, "lora/adapter_model.safetensors");
    if (gg_st_open_file(&st, p, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        const gg_adapter_tensor *t = &a->t[i];
        char nm[256];
        for (int ab = 0; ab < 2; ab++) {
            snprintf(nm, sizeof nm, "base_model.model.model.layers.%lld.%s.lora_%c.weight", (long long)t->layer,
                     LLAMA_HF[t->target], ab ? 'B' : 'A');
            const gg_st_tensor *s = gg_st_find(st, nm);
            if (!s) {
                CHECK(0, "no %s", nm);
                continue;
            }
            CHECK(s->type == GG_TYPE_F32, "%s dtype %s", nm, s->dtype);
            uint64_t n = (uint64_t)t->r * (uint64_t)(ab ? t->out : t->in);
            CHECK(s->nbytes == n * 4, "%s: %llu bytes", nm, (unsigned long long)s->nbytes);
            if (s->nbytes == n * 4)
                CHECK(memcmp(s->data, ab ? t->b : t->a, n * 4) == 0, "%s: values differ", nm);
        }
    }
    /* spot check one value by hand: element [1][3] of layer 1 up_proj A */
    for (size_t i = 0; i < a->n; i++) {
        if (a->t[i].layer != 1 || a->t[i].target != GG_LT_UP) continue;
        snprintf(p, sizeof p, "base_model.model.model.layers.1.mlp.up_proj.lora_A.weight");
        const gg_st_tensor *s = gg_st_find(st, p);
        float v;
        memcpy(&v, (const uint8_t *)s->data + 4 * (1 * s->shape[1] + 3), 4);
        CHECK(a->t[i].a[1 * a->t[i].in + 3] == v, "spot value %g vs %g", (double)a->t[i].a[1 * a->t[i].in + 3],
              (double)v);
    }
    gg_st_close(st);
}

static int same_adapter(const gg_adapter *x, const gg_adapter *y) {
    if (strcmp(x->arch, y->arch) || x->r != y->r || x->alpha != y->alpha || x->rslora != y->rslora ||
        x->base_fingerprint != y->base_fingerprint || x->n != y->n || strcmp(x->source, y->source))
        return 0;
    for (size_t i = 0; i < x->n; i++) {
        const gg_adapter_tensor *a = &x->t[i], *b = &y->t[i];
        if (a->layer != b->layer || a->target != b->target || a->r != b->r || a->in != b->in || a->out != b->out ||
            a->alpha != b->alpha || a->scale != b->scale)
            return 0;
        if (memcmp(a->a, b->a, (size_t)(a->r * a->in) * 4) || memcmp(a->b, b->b, (size_t)(a->out * a->r) * 4))
            return 0;
    }
    return 1;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_setup(void) {
    gg_err err;
    REQUIRE(mkdtemp(tmpdir) != NULL, "mkdtemp: %s", strerror(errno));
    char hf[600];
    snprintf(base_llama, sizeof base_llama, "%s/llama2.gg", tmpdir);
    snprintf(base_qwen, sizeof base_qwen, "%s/qwen2.gg", tmpdir);
    snprintf(base_f7, sizeof base_f7, "%s/falcon7b.gg", tmpdir);
    snprintf(base_f40, sizeof base_f40, "%s/falcon40b.gg", tmpdir);
    snprintf(base_llama_pert, sizeof base_llama_pert, "%s/llama2-perturbed.gg", tmpdir);
    fix_path(hf, sizeof hf, "llama2-mha", NULL);
    REQUIRE(convert_to(hf, base_llama, &err) == 0, "%s", err.msg);
    fix_path(hf, sizeof hf, "qwen2-bias-tied", NULL);
    REQUIRE(convert_to(hf, base_qwen, &err) == 0, "%s", err.msg);
    fix_path(hf, sizeof hf, "falcon7b-style", NULL);
    REQUIRE(convert_to(hf, base_f7, &err) == 0, "%s", err.msg);
    fix_path(hf, sizeof hf, "falcon40b-style", NULL);
    REQUIRE(convert_to(hf, base_f40, &err) == 0, "%s", err.msg);

    /* llama2 with one weight's last mantissa bit flipped: same shapes,
     * another fingerprint */
    char pd[600], src[700], dst[700];
    snprintf(pd, sizeof pd, "%s/llama2-perturbed", tmpdir);
    REQUIRE(mkdir(pd, 0755) == 0, "mkdir");
    const char *links[] = {"config.json", "model.safetensors.index.json", "model-00002-of-00004.safetensors",
                           "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"};
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        fix_path(src, sizeof src, "llama2-mha", links[i]);
        snprintf(dst, sizeof dst, "%s/%s", pd, links[i]);
        REQUIRE(link_abs(src, dst) == 0, "link %s", src);
    }
    fix_path(src, sizeof src, "llama2-mha", "model-00001-of-00004.safetensors");
    snprintf(dst, sizeof dst, "%s/model-00001-of-00004.safetensors", pd);
    REQUIRE(copy_file(src, dst) == 0, "copy");
    FILE *f = fopen(dst, "r+b");
    REQUIRE(f != NULL, "open %s", dst);
    fseek(f, -2, SEEK_END);
    int c = fgetc(f);
    fseek(f, -2, SEEK_END);
    fputc(c ^ 1, f);
    fclose(f);
    REQUIRE(convert_to(pd, base_llama_pert, &err) == 0, "%s", err.msg);
}

static void test_names(void) {
    char b[96];
    CHECK(strcmp(gg_lora_target_name(GG_LT_GATE), "gate") == 0, "gate");
    CHECK(strcmp(gg_lora_target_name(GG_LT_COUNT), "?") == 0, "out of range");
    gg_lora_target t;
    CHECK(gg_lora_target_from_name("down", &t) == 0 && t == GG_LT_DOWN, "down");
    CHECK(gg_lora_target_from_name("qkv", &t) == -1, "qkv is not a target");
    CHECK(strcmp(gg_lora_weight_name(b, sizeof b, 3, GG_LT_O), "layers.3.attn.o.weight") == 0, "%s", b);
    CHECK(strcmp(gg_lora_module_name(b, sizeof b, 12, GG_LT_UP), "layers.12.mlp.up") == 0, "%s", b);
    CHECK(gg_lora_scale(8, 4, 0) == 2.0f && gg_lora_scale(8, 4, 1) == 4.0f, "scale");
}

static void load_fixture(const char *fixture, const char *base_path, int64_t hidden) {
    gg_err err;
    gg_file *base;
    char dir[600];
    if (open_base(&base, base_path)) return;
    fix_path(dir, sizeof dir, fixture, "lora");
    gg_adapter *a = NULL;
    int rc = gg_adapter_load_peft(&a, dir, base, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) {
        uint64_t fp = 0;
        CHECK(gg_meta_get_u64(base, "model.fingerprint", &fp, &err) == 0, "%s", err.msg);
        CHECK(a->n == 14, "%zu modules, expected 7 targets x 2 layers", a->n);
        CHECK(a->r == 4 && a->alpha == 8.0 && !a->rslora, "r %lld alpha %g", (long long)a->r, a->alpha);
        CHECK(strcmp(a->arch, strcmp(fixture, "llama2-mha") == 0 ? "llama" : "qwen2") == 0, "arch %s", a->arch);
        CHECK(a->base_fingerprint == fp && fp != 0, "fingerprint %llx vs %llx", (unsigned long long)a->base_fingerprint,
              (unsigned long long)fp);
        CHECK(gg_adapter_target_mask(a) == 0x7f, "mask %x", gg_adapter_target_mask(a));
        CHECK(has(a->source, "peft 0.21.0"), "source '%s'", a->source);
        for (size_t i = 0; i < a->n; i++) {
            const gg_adapter_tensor *t = &a->t[i];
            CHECK(t->layer == (int64_t)(i / 7) && t->target == (gg_lora_target)(i % 7), "order at %zu", i);
            CHECK(t->r == 4 && t->alpha == 8.0 && t->scale == 2.0f, "module %zu: r %lld alpha %g scale %g", i,
                  (long long)t->r, t->alpha, (double)t->scale);
            if (t->target != GG_LT_DOWN) CHECK(t->in == hidden, "in %lld", (long long)t->in);
            if (t->target == GG_LT_O || t->target == GG_LT_DOWN || t->target == GG_LT_Q)
                CHECK(t->out == hidden, "out %lld", (long long)t->out);
        }
        check_values(a, fixture);
        CHECK(gg_adapter_check_base(a, base, &err) == 0, "%s", err.msg);

        /* save → reload: identical */
        char out[700];
        snprintf(out, sizeof out, "%s/%s.adapter.gg", tmpdir, fixture);
        rc = gg_adapter_save_gg(a, out, &err);
        CHECK(rc == 0, "%s", err.msg);
        gg_adapter *b = NULL;
        if (rc == 0) {
            rc = gg_adapter_load_gg(&b, out, &err);
            CHECK(rc == 0, "%s", err.msg);
        }
        if (b) {
            CHECK(same_adapter(a, b), "reloaded adapter differs");
            CHECK(strcmp(b->label, out) == 0, "label %s", b->label);
            CHECK(gg_adapter_check_base(b, base, &err) == 0, "%s", err.msg);
            gg_file *g;
            if (gg_file_open(&g, out, 0, &err) == 0) {
                gg_str s;
                CHECK(gg_meta_get_str(g, "gg.kind", &s, &err) == 0 && s.len == 7 && !memcmp(s.ptr, "adapter", 7),
                      "gg.kind");
                const gg_value *tv = gg_meta_find(g, "adapter.targets");
                CHECK(tv && tv->type == GG_V_ARR && tv->count == 7, "adapter.targets");
                const gg_tensor *ta = gg_tensor_find(g, "layers.1.mlp.down.lora_a");
                CHECK(ta && ta->type == GG_TYPE_F32 && ta->shape[0] == 4 && ta->shape[1] != (uint64_t)hidden,
                      "lora_a tensor");
                CHECK(gg_tensor_find(g, "layers.0.attn.q.lora_b") != NULL, "lora_b tensor");
                CHECK(gg_meta_find(g, "adapter.alpha.layers.0.attn.q") == NULL, "no per-module alpha");
                CHECK(gg_file_verify(g, &err) == 0, "%s", err.msg);
                gg_file_close(g);
            } else {
                CHECK(0, "%s", err.msg);
            }
        }
        gg_adapter_free(b);
    }
    gg_adapter_free(a);
    gg_file_close(base);
}

static void test_peft_llama2(void) { load_fixture("llama2-mha", base_llama, 64); }
static void test_peft_qwen2(void) { load_fixture("qwen2-bias-tied", base_qwen, 96); }

static void test_mismatched_base(void) {
    gg_err err;
    gg_file *qwen, *llama;
    char dir[600], out[700];
    if (open_base(&qwen, base_qwen)) return;
    if (open_base(&llama, base_llama)) {
        gg_file_close(qwen);
        return;
    }
    fix_path(dir, sizeof dir, "llama2-mha", "lora");
    gg_adapter *a = NULL;
    CHECK(gg_adapter_load_peft(&a, dir, qwen, &err) == -1, "llama2 adapter loaded on a qwen2 base");
    CHECK(a == NULL, "out set on failure");
    CHECK(has(err.msg, "mismatch") && has(err.msg, "qwen2.gg") && one_line(err.msg), "%s", err.msg);

    /* a .gg adapter for llama on qwen2 */
    snprintf(out, sizeof out, "%s/llama2-mha.adapter.gg", tmpdir);
    int rc = gg_adapter_load_gg(&a, out, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(gg_adapter_check_base(a, qwen, &err) == -1, "llama adapter accepted by qwen2");
        CHECK(has(err.msg, "architecture mismatch") && has(err.msg, "qwen2"), "%s", err.msg);
        /* same arch but another shape */
        snprintf(a->arch, sizeof a->arch, "qwen2");
        a->base_fingerprint = 0;
        CHECK(gg_adapter_check_base(a, qwen, &err) == -1, "shape mismatch accepted");
        CHECK(has(err.msg, "shape mismatch") && has(err.msg, "layers.0.attn.q"), "%s", err.msg);
        snprintf(a->arch, sizeof a->arch, "llama");
        CHECK(gg_adapter_check_base(a, llama, &err) == 0, "%s", err.msg);
        /* the base passed as an adapter / an adapter passed as a base */
        gg_file *ad;
        if (gg_file_open(&ad, out, 0, &err) == 0) {
            CHECK(gg_adapter_check_base(a, ad, &err) == -1 && has(err.msg, "gg.kind"), "%s", err.msg);
            gg_file_close(ad);
        }
        gg_adapter *b = NULL;
        CHECK(gg_adapter_load_gg(&b, base_llama, &err) == -1 && has(err.msg, "model file"), "%s", err.msg);
    }
    gg_adapter_free(a);
    gg_file_close(qwen);
    gg_file_close(llama);
}

static void test_fingerprint(void) {
    gg_err err;
    gg_file *pert, *llama;
    char out[700], dir[600];
    if (open_base(&pert, base_llama_pert)) return;
    if (open_base(&llama, base_llama)) {
        gg_file_close(pert);
        return;
    }
    uint64_t f1 = 0, f2 = 0;
    gg_meta_get_u64(pert, "model.fingerprint", &f1, &err);
    gg_meta_get_u64(llama, "model.fingerprint", &f2, &err);
    CHECK(f1 != f2, "perturbed base has the same fingerprint");
    snprintf(out, sizeof out, "%s/llama2-mha.adapter.gg", tmpdir);
    gg_adapter *a = NULL;
    int rc = gg_adapter_load_gg(&a, out, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(gg_adapter_check_base(a, pert, &err) == -1, "fingerprint mismatch accepted");
        CHECK(has(err.msg, "fingerprint mismatch") && one_line(err.msg), "%s", err.msg);
        uint64_t keep = a->base_fingerprint;
        a->base_fingerprint = 0; /* unknown: shapes only */
        CHECK(gg_adapter_check_base(a, pert, &err) == 0, "%s", err.msg);
        a->base_fingerprint = keep;
    }
    gg_adapter_free(a);
    /* The PEFT folder itself names no base: it takes the fingerprint of the
     * base it is converted for. */
    fix_path(dir, sizeof dir, "llama2-mha", "lora");
    a = NULL;
    rc = gg_adapter_load_peft(&a, dir, pert, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(a->base_fingerprint == f1, "fingerprint of the perturbed base");
        CHECK(gg_adapter_check_base(a, llama, &err) == -1 && has(err.msg, "fingerprint"), "%s", err.msg);
    }
    gg_adapter_free(a);
    gg_file_close(pert);
    gg_file_close(llama);
}

static void expect_peft_error(gg_file *base, const char *dir, const char *needle) {
    gg_err err;
    gg_adapter *a = NULL;
    memset(&err, 0, sizeof err);
    int rc = gg_adapter_load_peft(&a, dir, base, &err);
    CHECK(rc == -1, "%s: loaded, expected an error with '%s'", dir, needle);
    CHECK(a == NULL, "out set on failure");
    CHECK(has(err.msg, needle) && one_line(err.msg), "%s: got '%s', expected '%s'", dir, err.msg, needle);
    gg_adapter_free(a);
}

static void test_bad_configs(void) {
    gg_file *base;
    if (open_base(&base, base_llama)) return;
    char d[700], p[800];
    const char *fx = "llama2-mha";
    make_variant(d, sizeof d, fx, "no_r", NULL, "r");
    expect_peft_error(base, d, "missing 'r'");
    make_variant(d, sizeof d, fx, "no_alpha", NULL, "lora_alpha");
    expect_peft_error(base, d, "missing 'lora_alpha'");
    make_variant(d, sizeof d, fx, "r_str", "{\"r\": \"4\"}", NULL);
    expect_peft_error(base, d, "'r' is a string");
    make_variant(d, sizeof d, fx, "r_zero", "{\"r\": 0}", NULL);
    expect_peft_error(base, d, "'r' = 0");
    make_variant(d, sizeof d, fx, "r_8", "{\"r\": 8}", NULL);
    expect_peft_error(base, d, "gives r=8");
    make_variant(d, sizeof d, fx, "dora", "{\"use_dora\": true}", NULL);
    expect_peft_error(base, d, "DoRA");
    make_variant(d, sizeof d, fx, "bias_all", "{\"bias\": \"all\"}", NULL);
    expect_peft_error(base, d, "'bias' is 'all'");
    make_variant(d, sizeof d, fx, "ia3", "{\"peft_type\": \"IA3\"}", NULL);
    expect_peft_error(base, d, "only LORA");
    make_variant(d, sizeof d, fx, "no_type", NULL, "peft_type");
    expect_peft_error(base, d, "missing 'peft_type'");
    make_variant(d, sizeof d, fx, "fifo", "{\"fan_in_fan_out\": true}", NULL);
    expect_peft_error(base, d, "fan_in_fan_out");
    make_variant(d, sizeof d, fx, "rslora_str", "{\"use_rslora\": \"yes\"}", NULL);
    expect_peft_error(base, d, "'use_rslora' is a string");
    make_variant(d, sizeof d, fx, "mts", "{\"modules_to_save\": [\"lm_head\"]}", NULL);
    expect_peft_error(base, d, "modules_to_save");
    make_variant(d, sizeof d, fx, "lora_bias", "{\"lora_bias\": true}", NULL);
    expect_peft_error(base, d, "lora_bias");
    make_variant(d, sizeof d, fx, "rank_pat", "{\"rank_pattern\": {\"q_proj\": 8}}", NULL);
    expect_peft_error(base, d, "rank_pattern 'q_proj'");
    make_variant(d, sizeof d, fx, "rank_pat_type", "{\"rank_pattern\": [1]}", NULL);
    expect_peft_error(base, d, "'rank_pattern' is an array");
    make_variant(d, sizeof d, fx, "bad_regex", "{\"alpha_pattern\": {\"q_proj(\": 8}}", NULL);
    expect_peft_error(base, d, "not a valid regular expression");
    make_variant(d, sizeof d, fx, "alpha_nan", "{\"alpha_pattern\": {\"q_proj\": \"x\"}}", NULL);
    expect_peft_error(base, d, "expected a number");

    make_variant(d, sizeof d, fx, "bad_json", NULL, NULL);
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    write_text(p, "{\"r\": 4, ");
    expect_peft_error(base, d, "invalid JSON");
    write_text(p, "[1, 2]");
    expect_peft_error(base, d, "top level is an array");

    /* adapter_model.bin only */
    make_variant(d, sizeof d, fx, "bin_only", NULL, NULL);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
    unlink(p);
    snprintf(p, sizeof p, "%s/adapter_model.bin", d);
    write_text(p, "PK");
    expect_peft_error(base, d, "convert to safetensors");
    unlink(p);
    expect_peft_error(base, d, "no adapter_model.safetensors");
    snprintf(p, sizeof p, "%s/nope", tmpdir);
    expect_peft_error(base, p, "nope");
    snprintf(p, sizeof p, "%s", tmpdir);
    expect_peft_error(base, p, "no adapter_config.json");
    gg_file_close(base);
}

static void test_rslora(void) {
    gg_err err;
    gg_file *base;
    char d[700], out[800];
    if (open_base(&base, base_llama)) return;
    make_variant(d, sizeof d, "llama2-mha", "rslora", "{\"use_rslora\": true}", NULL);
    gg_adapter *a = NULL, *b = NULL;
    int rc = gg_adapter_load_peft(&a, d, base, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(a->rslora == 1, "rslora");
        for (size_t i = 0; i < a->n; i++)
            CHECK(a->t[i].scale == (float)(8.0 / sqrt(4.0)) && a->t[i].scale == 4.0f, "scale %g",
                  (double)a->t[i].scale);
        snprintf(out, sizeof out, "%s/rslora.gg", tmpdir);
        CHECK(gg_adapter_save_gg(a, out, &err) == 0, "%s", err.msg);
        CHECK(gg_adapter_load_gg(&b, out, &err) == 0, "%s", err.msg);
        if (b) CHECK(same_adapter(a, b) && b->rslora && b->t[0].scale == 4.0f, "reloaded rslora differs");
    }
    gg_adapter_free(a);
    gg_adapter_free(b);
    gg_file_close(base);
}

static void test_patterns(void) {
    gg_err err;
    gg_file *base;
    char d[700], out[800];
    if (open_base(&base, base_llama)) return;
    /* First key in file order wins; keys match a dotted suffix of the module
     * name or a regex over it, as PEFT's get_pattern_key. */
    make_variant(d, sizeof d, "llama2-mha", "patterns",
                 "{\"alpha_pattern\": {\"layers.0.self_attn.q_proj\": 16, \"mlp\\\\..*_proj\": 2, "
                 "\"self_attn.q_proj\": 32, \"elf_attn.k_proj\": 64},"
                 " \"rank_pattern\": {\"k_proj\": 4, \"model.layers.1.mlp.down_proj\": 4}}",
                 NULL);
    gg_adapter *a = NULL, *b = NULL;
    int rc = gg_adapter_load_peft(&a, d, base, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) {
        for (size_t i = 0; i < a->n; i++) {
            const gg_adapter_tensor *t = &a->t[i];
            double want = 8;
            if (t->target == GG_LT_Q) want = t->layer == 0 ? 16 : 32;
            if (t->target >= GG_LT_GATE) want = 2;
            /* "elf_attn.k_proj" is not a dotted suffix: no match */
            CHECK(t->alpha == want, "layer %lld %s: alpha %g, expected %g", (long long)t->layer,
                  gg_lora_target_name(t->target), t->alpha, want);
            CHECK(t->scale == (float)(want / 4), "scale %g", (double)t->scale);
        }
        snprintf(out, sizeof out, "%s/patterns.gg", tmpdir);
        CHECK(gg_adapter_save_gg(a, out, &err) == 0, "%s", err.msg);
        CHECK(gg_adapter_load_gg(&b, out, &err) == 0, "%s", err.msg);
        if (b) CHECK(same_adapter(a, b), "per-module alphas lost in the round trip");
        gg_file *g;
        if (gg_file_open(&g, out, 0, &err) == 0) {
            double v = 0;
            CHECK(gg_meta_get_f64(g, "adapter.alpha.layers.0.attn.q", &v, &err) == 0 && v == 16, "alpha key");
            CHECK(gg_meta_get_f64(g, "adapter.alpha.layers.1.mlp.down", &v, &err) == 0 && v == 2, "alpha key");
            CHECK(gg_meta_find(g, "adapter.alpha.layers.0.attn.k") == NULL, "k uses the global alpha");
            gg_file_close(g);
        }
    }
    gg_adapter_free(a);
    gg_adapter_free(b);
    gg_file_close(base);
}

/* Synthetic PEFT adapter on a Falcon base: B of query_key_value holds the
 * first r columns of the checkpoint's own fused weight, so after the split
 * q/k/v B must equal the first r columns of the converted base's
 * attn.{q,k,v}.weight. A in F16, B in BF16, named lora_X.default.weight. */
static void falcon_case(const char *fixture, const char *base_path) {
    gg_err err;
    char hf[600], d[700], p[800];
    gg_file *base;
    gg_st_set *src;
    gg_hf_config cfg;
    if (open_base(&base, base_path)) return;
    fix_path(hf, sizeof hf, fixture, "config.json");
    if (gg_hf_config_load(&cfg, hf, &err) || (fix_path(hf, sizeof hf, fixture, NULL), gg_st_open_dir(&src, hf, &err))) {
        CHECK(0, "%s", err.msg);
        gg_file_close(base);
        return;
    }
    const uint64_t r = 4, H = (uint64_t)cfg.hidden_size, F = (uint64_t)cfg.ffn_size;
    const uint64_t QKV = (uint64_t)(cfg.n_heads + 2 * cfg.n_kv_heads) * (uint64_t)cfg.head_dim;
    size_t nl = (size_t)cfg.n_layers;
    st_ent e[64];
    size_t ne = 0;
    char names[64][160];
    void *bufs[64];
    size_t nb = 0;
    for (size_t L = 0; L < nl; L++) {
        /* query_key_value */
        char wn[128];
        snprintf(wn, sizeof wn, "transformer.h.%zu.self_attention.query_key_value.weight", L);
        const gg_st_tensor *w = gg_st_find(src, wn);
        REQUIRE(w && w->type == GG_TYPE_BF16 && w->shape[0] == QKV && w->shape[1] == H, "%s", wn);
        uint16_t *A = malloc(r * H * 2), *B = malloc(QKV * r * 2);
        for (uint64_t i = 0; i < r * H; i++) A[i] = gg_f32_to_f16((float)((int)((i * 37 + L * 11) % 97) - 48) / 64.0f);
        for (uint64_t row = 0; row < QKV; row++)
            memcpy(&B[row * r], (const uint8_t *)w->data + 2 * row * H, r * 2);
        bufs[nb++] = A;
        bufs[nb++] = B;
        snprintf(names[ne], sizeof names[ne], "base_model.model.transformer.h.%zu.self_attention.query_key_value.lora_A.default.weight", L);
        e[ne] = (st_ent){names[ne], "F16", r, H, A, r * H * 2};
        ne++;
        snprintf(names[ne], sizeof names[ne], "base_model.model.transformer.h.%zu.self_attention.query_key_value.lora_B.default.weight", L);
        e[ne] = (st_ent){names[ne], "BF16", QKV, r, B, QKV * r * 2};
        ne++;
        const struct {
            const char *m;
            uint64_t in, out;
        } others[] = {{"self_attention.dense", H, H}, {"mlp.dense_h_to_4h", H, F}, {"mlp.dense_4h_to_h", F, H}};
        for (size_t k = 0; k < 3; k++) {
            float *a = malloc(r * others[k].in * 4), *b = malloc(others[k].out * r * 4);
            for (uint64_t i = 0; i < r * others[k].in; i++) a[i] = (float)i * 0.001f;
            for (uint64_t i = 0; i < others[k].out * r; i++) b[i] = -(float)i * 0.002f;
            bufs[nb++] = a;
            bufs[nb++] = b;
            snprintf(names[ne], sizeof names[ne], "base_model.model.transformer.h.%zu.%s.lora_A.default.weight", L,
                     others[k].m);
            e[ne] = (st_ent){names[ne], "F32", r, others[k].in, a, r * others[k].in * 4};
            ne++;
            snprintf(names[ne], sizeof names[ne], "base_model.model.transformer.h.%zu.%s.lora_B.default.weight", L,
                     others[k].m);
            e[ne] = (st_ent){names[ne], "F32", others[k].out, r, b, others[k].out * r * 4};
            ne++;
        }
    }
    snprintf(d, sizeof d, "%s/%s-lora", tmpdir, fixture);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
    CHECK(write_st(p, e, ne) == 0, "write %s", p);
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    write_text(p, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16, \"bias\": \"none\", "
                  "\"target_modules\": [\"query_key_value\", \"dense\", \"dense_h_to_4h\", \"dense_4h_to_h\"]}");

    gg_adapter *a = NULL;
    int rc = gg_adapter_load_peft(&a, d, base, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(a->n == 6 * nl, "%zu modules, expected 6 x %zu", a->n, nl);
        CHECK(gg_adapter_target_mask(a) == 0x7f - (1u << GG_LT_GATE), "mask %x", gg_adapter_target_mask(a));
        CHECK(strcmp(a->arch, "falcon") == 0, "arch %s", a->arch);
        size_t checked = 0;
        for (size_t i = 0; i < a->n; i++) {
            const gg_adapter_tensor *t = &a->t[i];
            CHECK(t->scale == 4.0f, "scale");
            if (t->target > GG_LT_V) continue;
            char wn[96];
            gg_lora_weight_name(wn, sizeof wn, t->layer, t->target);
            const gg_tensor *bw = gg_tensor_find(base, wn);
            REQUIRE(bw && bw->type == GG_TYPE_F32, "%s", wn);
            CHECK((uint64_t)t->out == bw->shape[0] && (uint64_t)t->in == H && t->r == 4, "%s shape", wn);
            const float *wv = bw->data;
            int bad = 0;
            for (uint64_t row = 0; row < bw->shape[0]; row++)
                for (uint64_t c = 0; c < r; c++)
                    if (t->b[row * r + c] != wv[row * H + c]) bad++;
            CHECK(bad == 0, "%s: %d B values differ from the base's own rows", wn, bad);
            const uint16_t *A = bufs[4 * 2 * (size_t)t->layer];
            for (uint64_t k = 0; k < r * H; k++)
                if (t->a[k] != gg_f16_to_f32(A[k])) bad++;
            CHECK(bad == 0, "%s: A differs from the F16 source", wn);
            checked++;
        }
        CHECK(checked == 3 * nl, "checked %zu", checked);
        snprintf(p, sizeof p, "%s/%s.adapter.gg", tmpdir, fixture);
        gg_adapter *b = NULL;
        CHECK(gg_adapter_save_gg(a, p, &err) == 0, "%s", err.msg);
        CHECK(gg_adapter_load_gg(&b, p, &err) == 0, "%s", err.msg);
        if (b) CHECK(same_adapter(a, b) && gg_adapter_check_base(b, base, &err) == 0, "falcon round trip");
        gg_adapter_free(b);
    }
    gg_adapter_free(a);
    /* The llama fixture's adapter on a Falcon base: names do not fit. */
    fix_path(hf, sizeof hf, "llama2-mha", "lora");
    expect_peft_error(base, hf, "not a linear layer of the falcon decoder");
    for (size_t i = 0; i < nb; i++) free(bufs[i]);
    gg_st_close(src);
    gg_file_close(base);
}

static void test_falcon7b(void) { falcon_case("falcon7b-style", base_f7); }
static void test_falcon40b(void) { falcon_case("falcon40b-style", base_f40); }

/* Synthetic adapters on the llama2 base with one odd tensor each. */
static void test_bad_tensors(void) {
    gg_file *base;
    if (open_base(&base, base_llama)) return;
    float a[4 * 1000], b[1000 * 4];
    for (size_t i = 0; i < 4000; i++) a[i] = b[i] = 0.01f * (float)(i % 7);
    char d[700], p[800];
    static const struct {
        const char *dir, *name, *dtype;
        uint64_t rows, cols;
        const char *needle;
    } cases[] = {
        {"lm_head", "base_model.model.lm_head.lora_A.weight", "F32", 4, 64, "module 'lm_head' is not a linear layer"},
        {"embed", "base_model.model.model.embed_tokens.lora_embedding_A.weight", "F32", 4, 64, "embedding"},
        {"mts", "base_model.model.lm_head.modules_to_save.default.weight", "F32", 4, 64, "unexpected tensor"},
        {"dora", "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector.default.weight", "F32", 1, 64,
         "DoRA"},
        {"bias", "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", "F32", 1, 64, "lora_bias"},
        {"layer", "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", "F32", 4, 64, "layer 7 is out of range"},
        {"rotary", "base_model.model.model.layers.0.self_attn.rotary_emb.lora_A.weight", "F32", 4, 64,
         "'model.layers.0.self_attn.rotary_emb' is not a linear layer"},
        {"i8", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "I8", 4, 64, "dtype I8"},
        {"lonely", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32", 4, 64, "has lora_A but no lora_B"},
        {"rank", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32", 3, 64, "rank 3"},
        {"inshape", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32", 4, 32, "shape mismatch"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        snprintf(d, sizeof d, "%s/bad-%s", tmpdir, cases[c].dir);
        mkdir(d, 0755);
        snprintf(p, sizeof p, "%s/adapter_config.json", d);
        write_text(p, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8}");
        uint64_t es = strcmp(cases[c].dtype, "I8") == 0 ? 1 : 4;
        st_ent e[3] = {
            {"base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight", "F32", 4, 64, a, 4 * 64 * 4},
            {"base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight", "F32", 64, 4, b, 64 * 4 * 4},
            {cases[c].name, cases[c].dtype, cases[c].rows, cases[c].cols, a, cases[c].rows * cases[c].cols * es},
        };
        size_t n = 3;
        st_ent pair = {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", "F32", 64, 4, b, 64 * 4 * 4};
        st_ent all[4] = {e[0], e[1], e[2], pair};
        if (strcmp(cases[c].dir, "rank") == 0 || strcmp(cases[c].dir, "inshape") == 0) {
            if (strcmp(cases[c].dir, "rank") == 0) all[3] = (st_ent){pair.name, "F32", 64, 3, b, 64 * 3 * 4};
            n = 4;
        }
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
        CHECK(write_st(p, all, n) == 0, "write %s", p);
        expect_peft_error(base, d, cases[c].needle);
    }
    gg_file_close(base);
}

/* Hand-made .gg adapters, each with one defect. */
enum {
    V_OK, V_KIND, V_NO_B, V_RANK, V_R0, V_ALPHA_NAN, V_UNKNOWN, V_F16, V_TARGETS, V_ALPHA_KEY, V_NAN_VALUE,
    V_NO_TARGETS, V_ARCH, V_ALPHA_TYPE, V_EMPTY
};

static int write_variant(const char *path, int v, gg_err *err) {
    gg_writer *w = gg_writer_new();
    const char *tg[] = {"q", "up"};
    float A[4 * 8], B[16 * 4];
    for (int i = 0; i < 32; i++) A[i] = (float)i;
    for (int i = 0; i < 64; i++) B[i] = -(float)i;
    if (v == V_NAN_VALUE) B[5] = NAN;
    int rc = gg_writer_set_str(w, "gg.kind", v == V_KIND ? "model" : "adapter", v == V_KIND ? 5 : 7, err) ||
             gg_writer_set_str(w, "general.architecture", v == V_ARCH ? "gpt2" : "llama", v == V_ARCH ? 4 : 5, err) ||
             gg_writer_set_i64(w, "adapter.r", v == V_R0 ? 0 : 4, err) ||
             gg_writer_set_f64(w, "adapter.alpha", v == V_ALPHA_NAN ? NAN : 8.0, err) ||
             gg_writer_set_bool(w, "adapter.rslora", 0, err) || gg_writer_set_u64(w, "adapter.base_fingerprint", 0, err);
    if (!rc && v != V_NO_TARGETS) rc = gg_writer_set_arr_str(w, "adapter.targets", tg, NULL, v == V_TARGETS ? 1 : 2, err);
    if (!rc && v == V_ALPHA_KEY) rc = gg_writer_set_f64(w, "adapter.alpha.layers.3.attn.q", 4, err);
    if (!rc && v == V_ALPHA_TYPE) rc = gg_writer_set_i64(w, "adapter.alpha.layers.0.attn.q", 4, err);
    const struct {
        const char *name;
        uint64_t r, c;
    } ts[] = {{"layers.0.attn.q.lora_a", 4, 8}, {"layers.0.attn.q.lora_b", 16, 4}, {"layers.1.mlp.up.lora_a", 4, 8},
              {"layers.1.mlp.up.lora_b", 16, 4}};
    size_t idx[5];
    size_t nt = v == V_EMPTY ? 0 : 4;
    for (size_t i = 0; !rc && i < nt; i++) {
        if (v == V_NO_B && i == 3) continue;
        uint64_t sh[2] = {ts[i].r, v == V_RANK && i == 3 ? 3 : ts[i].c};
        const char *nm = v == V_UNKNOWN && i == 2 ? "layers.1.mlp.upx.lora_a" : ts[i].name;
        rc = gg_writer_add_tensor(w, nm, v == V_F16 && i == 0 ? GG_TYPE_F16 : GG_TYPE_F32, 2, sh, &idx[i], err);
    }
    if (!rc) rc = gg_writer_begin(w, path, 0, err);
    for (size_t i = 0; !rc && i < nt; i++) {
        if (v == V_NO_B && i == 3) continue;
        const void *data = i % 2 ? (const void *)B : (const void *)A;
        size_t n = (i % 2 ? (v == V_RANK && i == 3 ? 16 * 3 : 64) : 32) * 4;
        if (v == V_F16 && i == 0) n = 32 * 2;
        rc = gg_writer_write(w, idx[i], data, n, err);
    }
    if (!rc) rc = gg_writer_finish(w, err);
    gg_writer_free(w);
    return rc ? -1 : 0;
}

static void test_bad_gg(void) {
    static const struct {
        int v;
        const char *needle;
    } cases[] = {
        {V_KIND, "this is a model file"},
        {V_NO_B, "'layers.1.mlp.up.lora_b' is missing"},
        {V_RANK, "layers.1.mlp.up.lora_b"},
        {V_R0, "adapter.r = 0"},
        {V_ALPHA_NAN, "adapter.alpha is not finite"},
        {V_UNKNOWN, "unexpected tensor 'layers.1.mlp.upx.lora_a'"},
        {V_F16, "'layers.0.attn.q.lora_a' is f16, expected f32"},
        {V_TARGETS, "adapter.targets lists [ q ] but the tensors adapt [ q up ]"},
        {V_ALPHA_KEY, "adapter.alpha.layers.3.attn.q"},
        {V_NAN_VALUE, "layers.0.attn.q.lora_b: element 5 is not finite"},
        {V_NO_TARGETS, "'adapter.targets' is missing"},
        {V_ARCH, "'gpt2'"},
        {V_ALPHA_TYPE, "'adapter.alpha.layers.0.attn.q' is i64, expected f64"},
        {V_EMPTY, "no LoRA tensors"},
    };
    gg_err err;
    char p[700];
    snprintf(p, sizeof p, "%s/variant-ok.gg", tmpdir);
    gg_adapter *a = NULL;
    CHECK(write_variant(p, V_OK, &err) == 0, "%s", err.msg);
    CHECK(gg_adapter_load_gg(&a, p, &err) == 0, "%s", err.msg);
    if (a) CHECK(a->n == 2 && a->t[1].target == GG_LT_UP && a->t[1].layer == 1 && a->t[0].scale == 2.0f, "variant ok");
    gg_adapter_free(a);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        snprintf(p, sizeof p, "%s/variant-%d.gg", tmpdir, cases[c].v);
        if (write_variant(p, cases[c].v, &err)) {
            CHECK(0, "writing variant %d: %s", cases[c].v, err.msg);
            continue;
        }
        a = NULL;
        memset(&err, 0, sizeof err);
        CHECK(gg_adapter_load_gg(&a, p, &err) == -1, "variant %d loaded", cases[c].v);
        CHECK(a == NULL, "out set on failure");
        CHECK(has(err.msg, cases[c].needle) && one_line(err.msg), "variant %d: got '%s', expected '%s'", cases[c].v,
              err.msg, cases[c].needle);
        gg_adapter_free(a);
    }
    /* truncated file */
    snprintf(p, sizeof p, "%s/variant-ok.gg", tmpdir);
    CHECK(truncate(p, 300) == 0, "truncate");
    a = NULL;
    CHECK(gg_adapter_load_gg(&a, p, &err) == -1 && one_line(err.msg), "truncated adapter loaded");
    snprintf(p, sizeof p, "%s/does-not-exist.gg", tmpdir);
    CHECK(gg_adapter_load_gg(&a, p, &err) == -1 && has(err.msg, "does-not-exist"), "%s", err.msg);
}

static void test_save_validates(void) {
    gg_err err;
    char p[700], tmp[720];
    snprintf(p, sizeof p, "%s/llama2-mha.adapter.gg", tmpdir);
    gg_adapter *a = NULL;
    int rc = gg_adapter_load_gg(&a, p, &err);
    REQUIRE(rc == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/invalid.gg", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    gg_adapter_tensor t0 = a->t[0];
    a->t[0] = a->t[1];
    a->t[1] = t0;
    CHECK(gg_adapter_save_gg(a, p, &err) == -1 && has(err.msg, "not sorted"), "%s", err.msg);
    a->t[1] = a->t[0];
    a->t[0] = t0;
    float keep = a->t[2].b[0];
    a->t[2].b[0] = INFINITY;
    CHECK(gg_adapter_save_gg(a, p, &err) == -1 && has(err.msg, "layers.0.attn.v.lora_b"), "%s", err.msg);
    a->t[2].b[0] = keep;
    a->t[3].alpha = NAN;
    CHECK(gg_adapter_save_gg(a, p, &err) == -1 && has(err.msg, "alpha"), "%s", err.msg);
    a->t[3].alpha = a->alpha;
    CHECK(access(p, F_OK) != 0 && access(tmp, F_OK) != 0, "a failed save left a file");
    CHECK(gg_adapter_save_gg(a, p, &err) == 0, "%s", err.msg);
    gg_adapter_free(a);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) {
    if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    RUN(test_setup);
    if (check_fail_) return check_done();
    RUN(test_names);
    RUN(test_peft_llama2);
    RUN(test_peft_qwen2);
    RUN(test_mismatched_base);
    RUN(test_fingerprint);
    RUN(test_bad_configs);
    RUN(test_rslora);
    RUN(test_patterns);
    RUN(test_falcon7b);
    RUN(test_falcon40b);
    RUN(test_bad_tensors);
    RUN(test_bad_gg);
    RUN(test_save_validates);
    if (!check_fail_) rm_rf(tmpdir);
    else fprintf(stderr, "kept %s\n", tmpdir);
    return check_done();
}
