/* test_adapter_peft.c — PEFT export (gg_adapter_save_peft[_base]) and the
 * safetensors writer (gg_st_write): the fixture PEFT adapters (llama2,
 * qwen2) exported and loaded back are bit-identical, with the same tensor
 * names and bytes as the fixture's own file; the safetensors header is what
 * the Python/Rust libraries write (8-byte LE length, space-padded JSON
 * header, "__metadata__" {"format":"pt"}, contiguous data_offsets) and
 * adapter_config.json has every field PEFT needs; rank_pattern /
 * alpha_pattern / rslora and partial adapters round-trip; Falcon's q/k/v
 * fuse back into query_key_value (exactly when they share A, as the same
 * ΔW otherwise; 7B and 40B layouts) and the cases that cannot be exported
 * fail with one clear line; gg_st_write's files read back with the
 * existing reader, field for field. */
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
#include "convert/safetensors.h"
#include "ggfmt/ggfmt.h"
#include "tests/check.h"
#include "tests/rng.h"

static char tmpdir[] = "/tmp/gg_test_adapter_peft_XXXXXX";
static char base_llama[600], base_qwen[600], base_f7[600], base_f40[600];

static const char *LLAMA_SHORT[GG_LT_COUNT] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                               "gate_proj", "up_proj", "down_proj"};

/* ---- helpers ------------------------------------------------------------ */

static int has(const char *msg, const char *needle) { return strstr(msg, needle) != NULL; }
static int one_line(const char *msg) { return msg[0] && !strchr(msg, '\n'); }

static void fix_path(char *buf, size_t cap, const char *name, const char *file) {
    snprintf(buf, cap, "%s/hf/%s%s%s", check_fixtures(), name, file ? "/" : "", file ? file : "");
}

static int convert_to(const char *hf_dir, const char *out, gg_err *err) {
    gg_convert_opts o = {.hf_dir = hf_dir,
                         .out_path = out,
                         .type = GG_TYPE_F32,
                         .embed_rule = GG_RULE_DEFAULT,
                         .fallback_rule = GG_RULE_SOURCE,
                         .threads = 2};
    gg_convert_stats s;
    return gg_convert(&o, &s, err);
}

static int open_base(gg_file **f, const char *path) {
    gg_err err;
    if (gg_file_open(f, path, 0, &err)) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    return 0;
}

static int link_abs(const char *target, const char *linkpath) {
    char abs[PATH_MAX];
    if (!realpath(target, abs)) return -1;
    return symlink(abs, linkpath);
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Same values, shapes, r / alpha / scale / rslora / fingerprint (labels and
 * provenance differ by design). */
static int same_adapter(const gg_adapter *x, const gg_adapter *y, char *why, size_t cap) {
    if (strcmp(x->arch, y->arch) || x->r != y->r || x->alpha != y->alpha || x->rslora != y->rslora ||
        x->base_fingerprint != y->base_fingerprint || x->n != y->n) {
        snprintf(why, cap, "globals: arch %s/%s r %lld/%lld alpha %g/%g rslora %d/%d n %zu/%zu", x->arch, y->arch,
                 (long long)x->r, (long long)y->r, x->alpha, y->alpha, x->rslora, y->rslora, x->n, y->n);
        return 0;
    }
    for (size_t i = 0; i < x->n; i++) {
        const gg_adapter_tensor *a = &x->t[i], *b = &y->t[i];
        if (a->layer != b->layer || a->target != b->target || a->r != b->r || a->in != b->in || a->out != b->out ||
            a->alpha != b->alpha || a->scale != b->scale) {
            snprintf(why, cap, "module %zu: layer %lld/%lld target %d/%d r %lld/%lld alpha %g/%g scale %g/%g", i,
                     (long long)a->layer, (long long)b->layer, a->target, b->target, (long long)a->r, (long long)b->r,
                     a->alpha, b->alpha, (double)a->scale, (double)b->scale);
            return 0;
        }
        if (memcmp(a->a, b->a, (size_t)(a->r * a->in) * 4) || memcmp(a->b, b->b, (size_t)(a->out * a->r) * 4)) {
            snprintf(why, cap, "module %zu: values differ", i);
            return 0;
        }
    }
    return 1;
}

/* No NAME.tmp is left in dir. */
static int no_tmp(const char *dir) {
    char p[800];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors.tmp", dir);
    if (access(p, F_OK) == 0) return 0;
    snprintf(p, sizeof p, "%s/adapter_config.json.tmp", dir);
    return access(p, F_OK) != 0;
}

/* The raw layout of a .safetensors file: header length multiple of 8,
 * padding is spaces, "__metadata__" == {"format":"pt"} and first, every
 * tensor F32 with contiguous data_offsets in header order, the file ends
 * at the last tensor. Returns the parsed header (caller frees) or NULL. */
static json_t *check_st_layout(const char *path) {
    size_t len;
    uint8_t *buf = read_all(path, &len);
    if (!buf || len < 8) {
        CHECK(0, "%s: unreadable", path);
        free(buf);
        return NULL;
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    CHECK(hl % 8 == 0 && 8 + hl <= len, "%s: header length %llu", path, (unsigned long long)hl);
    if (8 + hl > len) {
        free(buf);
        return NULL;
    }
    size_t end = (size_t)hl;
    while (end && buf[8 + end - 1] == ' ') end--;
    CHECK(buf[8] == '{' && end && buf[8 + end - 1] == '}' && (size_t)hl - end < 8, "%s: header framing", path);
    json_error_t je;
    json_t *h = json_loadb((const char *)buf + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    CHECK(h != NULL, "%s: header JSON: %s", path, je.text);
    if (!h) {
        free(buf);
        return NULL;
    }
    void *it = json_object_iter(h);
    CHECK(it && strcmp(json_object_iter_key(it), "__metadata__") == 0, "__metadata__ first");
    json_t *md = json_object_get(h, "__metadata__");
    CHECK(md && json_object_size(md) == 1 && json_is_string(json_object_get(md, "format")) &&
              strcmp(json_string_value(json_object_get(md, "format")), "pt") == 0,
          "__metadata__ is {\"format\":\"pt\"}");
    uint64_t off = 0;
    const char *prev = "";
    for (it = json_object_iter_next(h, it); it; it = json_object_iter_next(h, it)) {
        const char *k = json_object_iter_key(it);
        json_t *v = json_object_iter_value(it);
        CHECK(strcmp(prev, k) < 0, "%s: tensors not sorted ('%s' after '%s')", path, k, prev);
        prev = k;
        json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
               *dof = json_object_get(v, "data_offsets");
        CHECK(json_is_string(dt) && strcmp(json_string_value(dt), "F32") == 0, "%s dtype", k);
        CHECK(json_is_array(sh) && json_array_size(sh) == 2 && json_is_array(dof) && json_array_size(dof) == 2,
              "%s shape/offsets", k);
        if (!json_is_array(sh) || json_array_size(sh) != 2 || !json_is_array(dof) || json_array_size(dof) != 2)
            continue;
        uint64_t n =
            (uint64_t)json_integer_value(json_array_get(sh, 0)) * (uint64_t)json_integer_value(json_array_get(sh, 1));
        uint64_t b = (uint64_t)json_integer_value(json_array_get(dof, 0)),
                 e = (uint64_t)json_integer_value(json_array_get(dof, 1));
        CHECK(b == off && e == off + 4 * n, "%s: data_offsets [%llu,%llu], expected [%llu,%llu]", k,
              (unsigned long long)b, (unsigned long long)e, (unsigned long long)off, (unsigned long long)(off + 4 * n));
        off = e;
    }
    CHECK(8 + hl + off == len, "%s: %zu bytes, header says %llu", path, len, (unsigned long long)(8 + hl + off));
    free(buf);
    return h;
}

static json_t *load_cfg(const char *dir) {
    char p[800];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    json_error_t je;
    json_t *c = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
    CHECK(c && json_is_object(c), "%s: %s", p, je.text);
    return c;
}

static const char *jstr(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Every field PEFT needs, with the values every export has. */
static void check_cfg_common(const json_t *c, const char *base_name) {
    CHECK(strcmp(jstr(c, "peft_type"), "LORA") == 0, "peft_type");
    CHECK(strcmp(jstr(c, "task_type"), "CAUSAL_LM") == 0, "task_type");
    CHECK(strcmp(jstr(c, "bias"), "none") == 0, "bias");
    CHECK(json_is_integer(json_object_get(c, "r")), "r is an integer");
    CHECK(json_is_number(json_object_get(c, "lora_alpha")), "lora_alpha");
    CHECK(json_is_real(json_object_get(c, "lora_dropout")) && json_real_value(json_object_get(c, "lora_dropout")) == 0,
          "lora_dropout");
    CHECK(json_is_false(json_object_get(c, "fan_in_fan_out")), "fan_in_fan_out");
    CHECK(json_is_true(json_object_get(c, "init_lora_weights")), "init_lora_weights");
    CHECK(json_is_true(json_object_get(c, "inference_mode")), "inference_mode");
    CHECK(json_is_null(json_object_get(c, "modules_to_save")), "modules_to_save");
    CHECK(json_is_null(json_object_get(c, "layers_to_transform")), "layers_to_transform");
    CHECK(json_is_null(json_object_get(c, "layers_pattern")), "layers_pattern");
    CHECK(json_is_boolean(json_object_get(c, "use_rslora")), "use_rslora");
    CHECK(json_is_object(json_object_get(c, "rank_pattern")) && json_is_object(json_object_get(c, "alpha_pattern")),
          "patterns");
    CHECK(json_is_array(json_object_get(c, "target_modules")), "target_modules");
    json_t *bm = json_object_get(c, "base_model_name_or_path");
    if (base_name)
        CHECK(json_is_string(bm) && strcmp(json_string_value(bm), base_name) == 0, "base model name");
    else
        CHECK(json_is_null(bm), "base model name null");
}

/* target_modules == want[0..n) in order. */
static void check_targets(const json_t *c, const char *const *want, size_t n) {
    json_t *tm = json_object_get(c, "target_modules");
    CHECK(json_array_size(tm) == n, "target_modules has %zu entries, expected %zu", json_array_size(tm), n);
    for (size_t i = 0; i < n && i < json_array_size(tm); i++)
        CHECK(strcmp(json_string_value(json_array_get(tm, i)), want[i]) == 0, "target_modules[%zu] = %s, expected %s",
              i, json_string_value(json_array_get(tm, i)), want[i]);
}

/* ---- setup --------------------------------------------------------------- */

static void test_setup(void) {
    gg_err err;
    REQUIRE(mkdtemp(tmpdir) != NULL, "mkdtemp: %s", strerror(errno));
    char hf[600];
    snprintf(base_llama, sizeof base_llama, "%s/llama2.gg", tmpdir);
    snprintf(base_qwen, sizeof base_qwen, "%s/qwen2.gg", tmpdir);
    snprintf(base_f7, sizeof base_f7, "%s/falcon7b.gg", tmpdir);
    snprintf(base_f40, sizeof base_f40, "%s/falcon40b.gg", tmpdir);
    fix_path(hf, sizeof hf, "llama2-mha", NULL);
    REQUIRE(convert_to(hf, base_llama, &err) == 0, "%s", err.msg);
    fix_path(hf, sizeof hf, "qwen2-bias-tied", NULL);
    REQUIRE(convert_to(hf, base_qwen, &err) == 0, "%s", err.msg);
    fix_path(hf, sizeof hf, "falcon7b-style", NULL);
    REQUIRE(convert_to(hf, base_f7, &err) == 0, "%s", err.msg);
    fix_path(hf, sizeof hf, "falcon40b-style", NULL);
    REQUIRE(convert_to(hf, base_f40, &err) == 0, "%s", err.msg);
}

/* ---- the fixtures round trip ---------------------------------------------- */

static void fixture_roundtrip(const char *fixture, const char *base_path) {
    gg_err err;
    gg_file *base;
    if (open_base(&base, base_path)) return;
    char src[600], dir[700], why[300];
    fix_path(src, sizeof src, fixture, "lora");
    gg_adapter *a = NULL, *b = NULL, *c = NULL;
    REQUIRE(gg_adapter_load_peft(&a, src, base, &err) == 0, "%s", err.msg);

    /* with the base (a nested folder that does not exist yet) */
    snprintf(dir, sizeof dir, "%s/%s-export/nested/peft", tmpdir, fixture);
    int rc = gg_adapter_save_peft_base(a, dir, "meta-llama/Llama-2-7b-hf", base, &err);
    CHECK(rc == 0, "%s", err.msg);
    CHECK(no_tmp(dir), "a .tmp file is left in %s", dir);
    if (rc == 0) {
        rc = gg_adapter_load_peft(&b, dir, base, &err);
        CHECK(rc == 0, "%s", err.msg);
        if (b) CHECK(same_adapter(a, b, why, sizeof why), "%s: reloaded export differs: %s", fixture, why);

        /* same tensor names and bytes as the fixture's file */
        char p1[800], p2[800];
        snprintf(p1, sizeof p1, "%s/adapter_model.safetensors", src);
        snprintf(p2, sizeof p2, "%s/adapter_model.safetensors", dir);
        gg_st_set *s1 = NULL, *s2 = NULL;
        CHECK(gg_st_open_file(&s1, p1, &err) == 0, "%s", err.msg);
        CHECK(gg_st_open_file(&s2, p2, &err) == 0, "%s", err.msg);
        if (s1 && s2) {
            CHECK(gg_st_count(s1) == gg_st_count(s2) && gg_st_count(s2) == 28, "%zu vs %zu tensors", gg_st_count(s1),
                  gg_st_count(s2));
            for (size_t i = 0; i < gg_st_count(s2); i++) {
                const gg_st_tensor *x = gg_st_at(s2, i), *y = gg_st_find(s1, x->name);
                CHECK(y != NULL, "export has '%s', the fixture does not", x->name);
                if (!y) continue;
                CHECK(strcmp(x->dtype, "F32") == 0 && x->ndim == 2 && y->ndim == 2 && x->shape[0] == y->shape[0] &&
                          x->shape[1] == y->shape[1] && x->nbytes == y->nbytes,
                      "%s: dtype/shape", x->name);
                if (x->nbytes == y->nbytes)
                    CHECK(memcmp(x->data, y->data, x->nbytes) == 0, "%s: bytes differ", x->name);
            }
            CHECK(gg_st_find(s2, "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight") != NULL,
                  "PEFT key names");
        }
        gg_st_close(s1);
        gg_st_close(s2);
        json_t *h = check_st_layout(p2);
        json_decref(h);

        json_t *cfg = load_cfg(dir);
        if (cfg) {
            check_cfg_common(cfg, "meta-llama/Llama-2-7b-hf");
            check_targets(cfg, LLAMA_SHORT, 7);
            CHECK(json_integer_value(json_object_get(cfg, "r")) == 4, "r");
            CHECK(json_is_integer(json_object_get(cfg, "lora_alpha")) &&
                      json_integer_value(json_object_get(cfg, "lora_alpha")) == 8,
                  "lora_alpha 8");
            CHECK(json_is_false(json_object_get(cfg, "use_rslora")), "use_rslora");
            CHECK(json_object_size(json_object_get(cfg, "rank_pattern")) == 0 &&
                      json_object_size(json_object_get(cfg, "alpha_pattern")) == 0,
                  "empty patterns");
            json_decref(cfg);
        }
    }

    /* without the base: the same files; over an existing export: replaced */
    rc = gg_adapter_save_peft(a, dir, NULL, &err);
    CHECK(rc == 0, "%s", err.msg);
    CHECK(no_tmp(dir), "a .tmp file is left in %s", dir);
    if (rc == 0) {
        CHECK(gg_adapter_load_peft(&c, dir, base, &err) == 0, "%s", err.msg);
        if (c) CHECK(same_adapter(a, c, why, sizeof why), "%s", why);
        json_t *cfg = load_cfg(dir);
        if (cfg) {
            check_cfg_common(cfg, NULL);
            check_targets(cfg, LLAMA_SHORT, 7);
            json_decref(cfg);
        }
    }
    gg_adapter_free(a);
    gg_adapter_free(b);
    gg_adapter_free(c);
    gg_file_close(base);
}

static void test_llama2(void) { fixture_roundtrip("llama2-mha", base_llama); }
static void test_qwen2(void) { fixture_roundtrip("qwen2-bias-tied", base_qwen); }

/* .gg → PEFT → gg: the path ggtrain takes. */
static void test_gg_then_peft(void) {
    gg_err err;
    gg_file *base;
    if (open_base(&base, base_llama)) return;
    char src[600], p[700], dir[700], why[300];
    fix_path(src, sizeof src, "llama2-mha", "lora");
    gg_adapter *a = NULL, *g = NULL, *b = NULL;
    REQUIRE(gg_adapter_load_peft(&a, src, base, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/via.adapter.gg", tmpdir);
    snprintf(dir, sizeof dir, "%s/via-peft", tmpdir);
    CHECK(gg_adapter_save_gg(a, p, &err) == 0, "%s", err.msg);
    CHECK(gg_adapter_load_gg(&g, p, &err) == 0, "%s", err.msg);
    if (g) {
        CHECK(gg_adapter_save_peft_base(g, dir, "x", base, &err) == 0, "%s", err.msg);
        CHECK(gg_adapter_load_peft(&b, dir, base, &err) == 0, "%s", err.msg);
        if (b) CHECK(same_adapter(g, b, why, sizeof why), "%s", why);
    }
    gg_adapter_free(a);
    gg_adapter_free(g);
    gg_adapter_free(b);
    gg_file_close(base);
}

/* alpha_pattern / rank_pattern / rslora; and a partial adapter (some
 * layers, some targets, one with another rank). */
static void test_patterns(void) {
    gg_err err;
    gg_file *base;
    if (open_base(&base, base_llama)) return;
    char src[600], d[700], p[800], out[700], why[300];
    /* a PEFT folder: the fixture's tensors, a config with patterns */
    snprintf(d, sizeof d, "%s/patterns-src", tmpdir);
    mkdir(d, 0755);
    fix_path(src, sizeof src, "llama2-mha", "lora/adapter_model.safetensors");
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
    CHECK(link_abs(src, p) == 0, "link");
    snprintf(p, sizeof p, "%s/adapter_config.json", d);
    FILE *f = fopen(p, "w");
    REQUIRE(f, "%s", p);
    fputs("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_rslora\": true, \"target_modules\": "
          "[\"q_proj\"], \"alpha_pattern\": {\"layers.0.self_attn.q_proj\": 16, \"mlp\\\\..*_proj\": 2.5, "
          "\"self_attn.q_proj\": 32}}",
          f);
    fclose(f);
    gg_adapter *a = NULL, *b = NULL;
    REQUIRE(gg_adapter_load_peft(&a, d, base, &err) == 0, "%s", err.msg);
    snprintf(out, sizeof out, "%s/patterns-out", tmpdir);
    CHECK(gg_adapter_save_peft_base(a, out, NULL, base, &err) == 0, "%s", err.msg);
    CHECK(gg_adapter_load_peft(&b, out, base, &err) == 0, "%s", err.msg);
    if (b) CHECK(same_adapter(a, b, why, sizeof why) && b->rslora, "%s", why);
    json_t *cfg = load_cfg(out);
    if (cfg) {
        check_cfg_common(cfg, NULL);
        CHECK(json_is_true(json_object_get(cfg, "use_rslora")), "use_rslora");
        json_t *ap = json_object_get(cfg, "alpha_pattern");
        /* q differs by layer: full names; gate/up/down agree: short names */
        CHECK(json_object_size(ap) == 5, "alpha_pattern has %zu keys", json_object_size(ap));
        CHECK(json_integer_value(json_object_get(ap, "model.layers.0.self_attn.q_proj")) == 16 &&
                  json_integer_value(json_object_get(ap, "model.layers.1.self_attn.q_proj")) == 32,
              "q alphas");
        CHECK(json_real_value(json_object_get(ap, "gate_proj")) == 2.5 &&
                  json_real_value(json_object_get(ap, "up_proj")) == 2.5 &&
                  json_real_value(json_object_get(ap, "down_proj")) == 2.5,
              "mlp alphas");
        CHECK(json_object_size(json_object_get(cfg, "rank_pattern")) == 0, "rank_pattern");
        json_decref(cfg);
    }
    gg_adapter_free(b);
    b = NULL;

    /* partial: layer 1 only, q and v, v with rank 2 (first rows of A, first
     * columns of B) */
    gg_adapter_tensor keep[2];
    size_t nk = 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->t[i].layer == 1 && (a->t[i].target == GG_LT_Q || a->t[i].target == GG_LT_V)) keep[nk++] = a->t[i];
    REQUIRE(nk == 2, "found %zu modules", nk);
    gg_adapter part = *a;
    part.n = 2;
    part.t = keep;
    gg_adapter_tensor *v = &keep[1];
    float *vb = malloc((size_t)(v->out * 2) * 4);
    for (int64_t row = 0; row < v->out; row++) memcpy(vb + row * 2, v->b + row * v->r, 2 * 4);
    v->b = vb;
    v->r = 2; /* A's first 2 rows are its first 2*in floats */
    v->scale = gg_lora_scale(v->alpha, 2, part.rslora);
    snprintf(out, sizeof out, "%s/partial-out", tmpdir);
    CHECK(gg_adapter_save_peft_base(&part, out, NULL, base, &err) == 0, "%s", err.msg);
    CHECK(gg_adapter_load_peft(&b, out, base, &err) == 0, "%s", err.msg);
    if (b) CHECK(same_adapter(&part, b, why, sizeof why), "%s", why);
    cfg = load_cfg(out);
    if (cfg) {
        static const char *const want[] = {"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"};
        check_targets(cfg, want, 2);
        json_t *rp = json_object_get(cfg, "rank_pattern");
        CHECK(json_object_size(rp) == 1 && json_integer_value(json_object_get(rp, "v_proj")) == 2, "rank_pattern");
        json_decref(cfg);
    }
    /* without the base: layers 0..1 are not all adapted either */
    gg_adapter_free(b);
    b = NULL;
    CHECK(gg_adapter_save_peft(&part, out, NULL, &err) == 0, "%s", err.msg);
    cfg = load_cfg(out);
    if (cfg) {
        CHECK(json_array_size(json_object_get(cfg, "target_modules")) == 2, "full names");
        json_decref(cfg);
    }
    free(vb);
    gg_adapter_free(a);
    gg_file_close(base);
}

/* ---- falcon ----------------------------------------------------------------- */

static float *rand_floats(size_t n) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(rng_gauss() * 0.05);
    return p;
}

/* A synthetic falcon adapter: per layer q, k, v (A shared or not), o, up,
 * down; shapes from the base. layer0_qv_only: layer 0 adapts only q and v. */
static gg_adapter *falcon_adapter(const gg_file *base, int shared, int layer0_qv_only) {
    gg_err err;
    int64_t nl = 0;
    if (gg_meta_get_i64(base, "model.n_layers", &nl, &err)) return NULL;
    uint64_t fp = 0;
    gg_meta_get_u64(base, "model.fingerprint", &fp, &err);
    gg_adapter *a = calloc(1, sizeof *a);
    a->t = calloc((size_t)nl * GG_LT_COUNT, sizeof *a->t);
    snprintf(a->label, sizeof a->label, "synthetic-falcon");
    snprintf(a->arch, sizeof a->arch, "falcon");
    a->r = 4;
    a->alpha = 16;
    a->base_fingerprint = fp;
    for (int64_t L = 0; L < nl; L++) {
        float *sa = NULL;
        for (int tg = 0; tg < GG_LT_COUNT; tg++) {
            if (tg == GG_LT_GATE) continue;
            if (L == 0 && layer0_qv_only && tg == GG_LT_K) continue;
            char wn[96];
            gg_lora_weight_name(wn, sizeof wn, L, (gg_lora_target)tg);
            const gg_tensor *w = gg_tensor_find(base, wn);
            if (!w) continue;
            gg_adapter_tensor *t = &a->t[a->n++];
            t->layer = L;
            t->target = (gg_lora_target)tg;
            t->r = 4;
            t->in = (int64_t)w->shape[1];
            t->out = (int64_t)w->shape[0];
            t->alpha = 16;
            t->scale = gg_lora_scale(16, 4, 0);
            if (tg <= GG_LT_V && shared) {
                if (!sa) sa = rand_floats((size_t)(t->r * t->in));
                t->a = malloc((size_t)(t->r * t->in) * 4);
                memcpy(t->a, sa, (size_t)(t->r * t->in) * 4);
            } else {
                t->a = rand_floats((size_t)(t->r * t->in));
            }
            t->b = rand_floats((size_t)(t->out * t->r));
        }
        free(sa);
    }
    return a;
}

static const gg_adapter_tensor *find_mod(const gg_adapter *a, int64_t L, gg_lora_target t) {
    for (size_t i = 0; i < a->n; i++)
        if (a->t[i].layer == L && a->t[i].target == t) return &a->t[i];
    return NULL;
}

/* max |scale·B·A (x) − scale·B·A (y)| over a module; y may be NULL (ΔW 0). */
static double delta_diff(const gg_adapter_tensor *x, const gg_adapter_tensor *y, double *maxabs) {
    double worst = 0;
    const gg_adapter_tensor *ref = x ? x : y;
    for (int64_t o = 0; o < ref->out; o++)
        for (int64_t i = 0; i < ref->in; i++) {
            double dx = 0, dy = 0;
            if (x) {
                for (int64_t k = 0; k < x->r; k++) dx += (double)x->b[o * x->r + k] * x->a[k * x->in + i];
                dx *= x->scale;
            }
            if (y) {
                for (int64_t k = 0; k < y->r; k++) dy += (double)y->b[o * y->r + k] * y->a[k * y->in + i];
                dy *= y->scale;
            }
            if (fabs(dx) > *maxabs) *maxabs = fabs(dx);
            if (fabs(dx - dy) > worst) worst = fabs(dx - dy);
        }
    return worst;
}

static void falcon_case(const char *base_path, const char *tag) {
    gg_err err;
    gg_file *base;
    if (open_base(&base, base_path)) return;
    char dir[700], why[300];
    static const char *const FALCON_SHORT[] = {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"};

    /* shared A: exact round trip */
    gg_adapter *a = falcon_adapter(base, 1, 0), *b = NULL;
    REQUIRE(a, "adapter");
    snprintf(dir, sizeof dir, "%s/%s-shared", tmpdir, tag);
    memset(&err, 0, sizeof err);
    CHECK(gg_adapter_save_peft(a, dir, NULL, &err) == -1 && has(err.msg, "query_key_value") &&
              has(err.msg, "gg_adapter_save_peft_base") && one_line(err.msg),
          "%s", err.msg);
    CHECK(gg_adapter_save_peft_base(a, dir, "tiiuae/falcon-7b", base, &err) == 0, "%s", err.msg);
    CHECK(no_tmp(dir), "tmp left");
    CHECK(gg_adapter_load_peft(&b, dir, base, &err) == 0, "%s", err.msg);
    if (b) CHECK(same_adapter(a, b, why, sizeof why), "%s: shared-A falcon round trip: %s", tag, why);
    json_t *cfg = load_cfg(dir);
    if (cfg) {
        check_cfg_common(cfg, "tiiuae/falcon-7b");
        check_targets(cfg, FALCON_SHORT, 4);
        CHECK(json_object_size(json_object_get(cfg, "rank_pattern")) == 0, "no rank_pattern");
        json_decref(cfg);
    }
    char p[800];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    json_decref(check_st_layout(p));
    gg_st_set *st = NULL;
    if (gg_st_open_file(&st, p, &err) == 0) {
        const gg_st_tensor *t =
            gg_st_find(st, "base_model.model.transformer.h.1.self_attention.query_key_value.lora_B.weight");
        const gg_adapter_tensor *q = find_mod(a, 1, GG_LT_Q), *k = find_mod(a, 1, GG_LT_K),
                                *v = find_mod(a, 1, GG_LT_V);
        CHECK(t && t->shape[1] == 4 && t->shape[0] == (uint64_t)(q->out + k->out + v->out), "fused B shape");
        CHECK(gg_st_count(st) == 2 * 4 * 2, "%zu tensors", gg_st_count(st));
        gg_st_close(st);
    } else {
        CHECK(0, "%s", err.msg);
    }
    gg_adapter_free(a);
    gg_adapter_free(b);
    b = NULL;

    /* independent A per part, layer 0 without k: rank R fused, same ΔW */
    a = falcon_adapter(base, 0, 1);
    snprintf(dir, sizeof dir, "%s/%s-block", tmpdir, tag);
    CHECK(gg_adapter_save_peft_base(a, dir, NULL, base, &err) == 0, "%s", err.msg);
    CHECK(gg_adapter_load_peft(&b, dir, base, &err) == 0, "%s", err.msg);
    if (b) {
        CHECK(b->n == a->n + 1, "%zu modules back, expected %zu (+ layer 0 k)", b->n, a->n + 1);
        for (size_t i = 0; i < b->n; i++) {
            const gg_adapter_tensor *y = &b->t[i], *x = find_mod(a, y->layer, y->target);
            int64_t want_r = y->target <= GG_LT_V ? (y->layer == 0 ? 8 : 12) : 4;
            CHECK(y->r == want_r, "layer %lld %s: r %lld, expected %lld", (long long)y->layer,
                  gg_lora_target_name(y->target), (long long)y->r, (long long)want_r);
            CHECK(y->scale == 4.0f, "scale %g", (double)y->scale);
            double big = 0, d = delta_diff(x, y, &big);
            if (!x)
                CHECK(d == 0, "layer 0 k: ΔW should be 0 (%g)", d);
            else
                CHECK(d <= 1e-6 * (big > 1 ? big : 1), "layer %lld %s: ΔW differs by %g (max %g)", (long long)y->layer,
                      gg_lora_target_name(y->target), d, big);
        }
    }
    cfg = load_cfg(dir);
    if (cfg) {
        json_t *rp = json_object_get(cfg, "rank_pattern"), *ap = json_object_get(cfg, "alpha_pattern");
        CHECK(json_object_size(rp) == 2 &&
                  json_integer_value(json_object_get(rp, "transformer.h.0.self_attention.query_key_value")) == 8 &&
                  json_integer_value(json_object_get(rp, "transformer.h.1.self_attention.query_key_value")) == 12,
              "rank_pattern per module");
        CHECK(json_integer_value(json_object_get(ap, "transformer.h.0.self_attention.query_key_value")) == 32 &&
                  json_integer_value(json_object_get(ap, "transformer.h.1.self_attention.query_key_value")) == 48,
              "alpha_pattern keeps the scale");
        json_decref(cfg);
    }
    gg_adapter_free(b);
    b = NULL;

    /* parts of one layer with different scales cannot share one fused module */
    gg_adapter_tensor *k1 = (gg_adapter_tensor *)find_mod(a, 1, GG_LT_K);
    k1->alpha = 8;
    k1->scale = 2;
    snprintf(dir, sizeof dir, "%s/%s-bad", tmpdir, tag);
    memset(&err, 0, sizeof err);
    CHECK(gg_adapter_save_peft_base(a, dir, NULL, base, &err) == -1 && has(err.msg, "layers.1.attn.k") &&
              has(err.msg, "scale") && one_line(err.msg),
          "%s", err.msg);
    k1->alpha = 16;
    /* gate on falcon (up retargeted: the order stays valid) */
    gg_adapter_tensor *u1 = (gg_adapter_tensor *)find_mod(a, 1, GG_LT_UP);
    u1->target = GG_LT_GATE;
    memset(&err, 0, sizeof err);
    CHECK(gg_adapter_save_peft_base(a, dir, NULL, base, &err) == -1 && has(err.msg, "layers.1.mlp.gate") &&
              has(err.msg, "no gate") && one_line(err.msg),
          "%s", err.msg);
    u1->target = GG_LT_UP;
    CHECK(access(dir, F_OK) != 0, "a failed export created %s", dir);
    gg_adapter_free(a);
    gg_file_close(base);
}

static void test_falcon7b(void) { falcon_case(base_f7, "falcon7b"); }
static void test_falcon40b(void) { falcon_case(base_f40, "falcon40b"); }

static void test_export_errors(void) {
    gg_err err;
    gg_file *base, *qwen;
    if (open_base(&base, base_llama)) return;
    if (open_base(&qwen, base_qwen)) {
        gg_file_close(base);
        return;
    }
    char src[600], dir[700];
    fix_path(src, sizeof src, "llama2-mha", "lora");
    gg_adapter *a = NULL;
    REQUIRE(gg_adapter_load_peft(&a, src, base, &err) == 0, "%s", err.msg);
    /* a file where the folder should be */
    snprintf(dir, sizeof dir, "%s/llama2.gg/sub", tmpdir);
    memset(&err, 0, sizeof err);
    CHECK(gg_adapter_save_peft(a, dir, NULL, &err) == -1 && has(err.msg, "not a directory") && one_line(err.msg), "%s",
          err.msg);
    /* the wrong base */
    snprintf(dir, sizeof dir, "%s/wrong-base", tmpdir);
    CHECK(gg_adapter_save_peft_base(a, dir, NULL, qwen, &err) == -1 && has(err.msg, "mismatch"), "%s", err.msg);
    CHECK(access(dir, F_OK) != 0, "a failed export created %s", dir);
    /* an invalid adapter */
    float keep = a->t[3].a[0];
    a->t[3].a[0] = NAN;
    CHECK(gg_adapter_save_peft(a, dir, NULL, &err) == -1 && has(err.msg, "layers.0.attn.o.lora_a"), "%s", err.msg);
    a->t[3].a[0] = keep;
    CHECK(gg_adapter_save_peft(a, dir, "bad \xff name", &err) == -1 && has(err.msg, "UTF-8"), "%s", err.msg);
    gg_adapter_free(a);
    gg_file_close(base);
    gg_file_close(qwen);
}

/* ---- the safetensors writer ---------------------------------------------------- */

static void test_st_write(void) {
    gg_err err;
    char p[700], tmp[800];
    snprintf(p, sizeof p, "%s/w.safetensors", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    float f32[6] = {1, -2, 3.5f, 0, 1e-30f, -7};
    uint16_t bf16[4] = {0x3f80, 0xbf80, 0x4000, 0x0001};
    int64_t i64 = -1234567890123LL;
    uint8_t u8[3] = {1, 2, 255};
    gg_st_wtensor t[5] = {
        {"z.weight", "F32", 2, {2, 3}, f32}, {"a.bf16", "BF16", 1, {4}, bf16},        {"m.scalar", "I64", 0, {0}, &i64},
        {"b.empty", "F16", 2, {0, 5}, NULL}, {"\xc3\xa9t\xc3\xa9", "U8", 1, {3}, u8},
    };
    const char *meta[] = {"format", "pt", "note", "gg \"test\""};
    REQUIRE(gg_st_write(p, t, 5, meta, 2, &err) == 0, "%s", err.msg);
    CHECK(access(tmp, F_OK) != 0, "tmp left");
    gg_st_set *s = NULL;
    REQUIRE(gg_st_open_file(&s, p, &err) == 0, "%s", err.msg);
    CHECK(gg_st_count(s) == 5, "%zu tensors", gg_st_count(s));
    for (size_t i = 0; i < 5; i++) {
        const gg_st_tensor *x = gg_st_find(s, t[i].name);
        CHECK(x != NULL, "'%s' missing", t[i].name);
        if (!x) continue;
        CHECK(strcmp(x->dtype, t[i].dtype) == 0 && x->ndim == t[i].ndim, "%s: dtype %s ndim %u", t[i].name, x->dtype,
              x->ndim);
        for (uint32_t d = 0; d < x->ndim; d++) CHECK(x->shape[d] == t[i].shape[d], "%s: shape[%u]", t[i].name, d);
        static const size_t sz[5] = {24, 8, 8, 0, 3};
        CHECK(x->nbytes == sz[i], "%s: %llu bytes", t[i].name, (unsigned long long)x->nbytes);
        if (x->nbytes == sz[i] && sz[i]) CHECK(memcmp(x->data, t[i].data, sz[i]) == 0, "%s: bytes", t[i].name);
    }
    CHECK(gg_st_find(s, "a.bf16")->type == GG_TYPE_BF16 && gg_st_find(s, "z.weight")->type == GG_TYPE_F32, "types");
    gg_st_close(s);
    /* header: length multiple of 8, metadata first, tensors by name */
    size_t len;
    uint8_t *buf = read_all(p, &len);
    REQUIRE(buf, "read");
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    CHECK(hl % 8 == 0 && 8 + hl + 24 + 8 + 8 + 3 == len, "header %llu, file %zu", (unsigned long long)hl, len);
    json_t *h = json_loadb((const char *)buf + 8, (size_t)hl, 0, NULL);
    CHECK(h && strcmp(json_object_iter_key(json_object_iter(h)), "__metadata__") == 0, "metadata first");
    CHECK(h && strcmp(jstr(json_object_get(h, "__metadata__"), "note"), "gg \"test\"") == 0, "metadata value");
    const char *order[] = {"__metadata__", "a.bf16", "b.empty", "m.scalar", "z.weight", "\xc3\xa9t\xc3\xa9"};
    size_t k = 0;
    for (void *it = h ? json_object_iter(h) : NULL; it; it = json_object_iter_next(h, it), k++)
        CHECK(k < 6 && strcmp(json_object_iter_key(it), order[k]) == 0, "header order at %zu", k);
    json_decref(h);
    free(buf);
    /* no metadata: no "__metadata__" key */
    REQUIRE(gg_st_write(p, t, 1, NULL, 0, &err) == 0, "%s", err.msg);
    buf = read_all(p, &len);
    CHECK(buf && !memmem(buf, len, "__metadata__", 12), "metadata written when none given");
    free(buf);

    /* errors: nothing written, the old file untouched */
    gg_st_wtensor bad[2] = {{"x", "F32", 1, {1}, f32}, {"x", "F32", 1, {1}, f32}};
    memset(&err, 0, sizeof err);
    CHECK(gg_st_write(p, bad, 2, NULL, 0, &err) == -1 && has(err.msg, "'x' appears twice"), "%s", err.msg);
    bad[1].name = "y";
    bad[1].dtype = "F31";
    CHECK(gg_st_write(p, bad, 2, NULL, 0, &err) == -1 && has(err.msg, "unknown dtype 'F31'"), "%s", err.msg);
    bad[1].dtype = "F32";
    bad[1].name = "__metadata__";
    CHECK(gg_st_write(p, bad, 2, NULL, 0, &err) == -1 && has(err.msg, "reserved"), "%s", err.msg);
    bad[1].name = "";
    CHECK(gg_st_write(p, bad, 2, NULL, 0, &err) == -1 && has(err.msg, "empty name"), "%s", err.msg);
    bad[1].name = "y";
    bad[1].ndim = 9;
    CHECK(gg_st_write(p, bad, 2, NULL, 0, &err) == -1 && has(err.msg, "dims"), "%s", err.msg);
    bad[1].ndim = 2;
    bad[1].shape[0] = 1ull << 40, bad[1].shape[1] = 1ull << 40;
    CHECK(gg_st_write(p, bad, 2, NULL, 0, &err) == -1 && has(err.msg, "overflows"), "%s", err.msg);
    bad[1].ndim = 1;
    bad[1].shape[0] = 1;
    bad[1].data = NULL;
    CHECK(gg_st_write(p, bad, 2, NULL, 0, &err) == -1 && has(err.msg, "no data"), "%s", err.msg);
    const char *dup_meta[] = {"k", "1", "k", "2"};
    CHECK(gg_st_write(p, bad, 1, dup_meta, 2, &err) == -1 && has(err.msg, "'k' appears twice"), "%s", err.msg);
    CHECK(access(tmp, F_OK) != 0, "tmp left after errors");
    REQUIRE(gg_st_open_file(&s, p, &err) == 0, "%s", err.msg);
    CHECK(gg_st_count(s) == 1 && gg_st_find(s, "z.weight"), "old file changed");
    gg_st_close(s);
    char nodir[800];
    snprintf(nodir, sizeof nodir, "%s/none/x.safetensors", tmpdir);
    CHECK(gg_st_write(nodir, t, 1, NULL, 0, &err) == -1 && has(err.msg, "x.safetensors.tmp") &&
              has(err.msg, strerror(ENOENT)),
          "%s", err.msg);
    unlink(p);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int main(void) {
    RUN(test_setup);
    if (check_fail_) return check_done();
    RUN(test_llama2);
    RUN(test_qwen2);
    RUN(test_gg_then_peft);
    RUN(test_patterns);
    RUN(test_falcon7b);
    RUN(test_falcon40b);
    RUN(test_export_errors);
    RUN(test_st_write);
    if (!check_fail_) {
        if (nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    } else {
        fprintf(stderr, "kept %s\n", tmpdir);
    }
    return check_done();
}
