/* test_hf_export.c — .gg → Hugging Face folder (convert/hf_export.c): every
 * fixture round-trips .gg → HF → .gg bit-identically (f32, bf16, f16 and
 * sharded), the exported tensor names are the fixture's own, config.json
 * keeps every field but the dtype, the tokenizer files come back verbatim,
 * quantized models export their dequantized values, and bad input fails
 * with a message naming the key or tensor. */
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/convert.h"
#include "convert/hf_export.h"
#include "convert/safetensors.h"
#include "ggfmt/ggfmt.h"
#include "tests/check.h"
#include "tests/fixture_gg.h"

static char tmpdir[] = "/tmp/gg_test_hf_export_XXXXXX";

static const char *fixtures[] = {"llama2-mha", "llama3-gqa", "qwen2-bias-tied", "mistral-gqa-f16",
                                 "gemma-f32", "falcon7b-style", "falcon40b-style"};
#define NFIX (sizeof fixtures / sizeof *fixtures)

static void fixture_dir(const char *fix, char *out, size_t len) {
    snprintf(out, len, "%s/hf/%s", check_fixtures(), fix);
}

static int convert_dir(const char *dir, const char *out, gg_type t, uint64_t *fp) {
    return fixture_convert_dir(dir, out, t, fp);
}

static int export_to(const char *gg, const char *dir, gg_type t, size_t shard) {
    gg_file *f;
    gg_err err;
    if (gg_file_open(&f, gg, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    int rc = gg_hf_export(f, dir, t, shard, &err);
    if (rc) fprintf(stderr, "export %s: %s\n", gg, err.msg);
    gg_file_close(f);
    return rc;
}

/* Every tensor of a and b: same name, type, shape and bytes. */
static int same_tensors(const char *a, const char *b, const char *what) {
    gg_file *fa, *fb;
    gg_err err;
    if (gg_file_open(&fa, a, 0, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    if (gg_file_open(&fb, b, 0, &err)) {
        gg_file_close(fa);
        return fprintf(stderr, "%s\n", err.msg), -1;
    }
    int bad = gg_tensor_count(fa) != gg_tensor_count(fb);
    for (size_t i = 0; !bad && i < gg_tensor_count(fa); i++) {
        const gg_tensor *x = gg_tensor_at(fa, i), *y = gg_tensor_at(fb, i);
        bad = strcmp(x->name, y->name) || x->type != y->type || x->ndim != y->ndim ||
              memcmp(x->shape, y->shape, sizeof x->shape) || x->size != y->size ||
              memcmp(x->data, y->data, x->size);
        if (bad) fprintf(stderr, "%s: tensor %zu '%s' / '%s' differs\n", what, i, x->name, y->name);
    }
    gg_file_close(fa);
    gg_file_close(fb);
    return bad ? -1 : 0;
}

/* The two folders hold the same tensor names (union over shards); every
 * exported tensor has safetensors dtype want; with bytes, also the same
 * shape and bytes as the fixture's (Falcon: the re-fused query_key_value). */
static int same_names(const char *orig, const char *exp, const char *want, int bytes) {
    gg_st_set *a, *b;
    gg_err err;
    if (gg_st_open_dir(&a, orig, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    if (gg_st_open_dir(&b, exp, &err)) {
        gg_st_close(a);
        return fprintf(stderr, "%s\n", err.msg), -1;
    }
    int bad = gg_st_count(a) != gg_st_count(b);
    for (size_t i = 0; !bad && i < gg_st_count(a); i++) {
        const gg_st_tensor *x = gg_st_at(a, i), *y = gg_st_at(b, i);
        bad = strcmp(x->name, y->name) != 0 || strcmp(y->dtype, want) != 0;
        if (!bad && bytes)
            bad = x->ndim != y->ndim || memcmp(x->shape, y->shape, sizeof x->shape) || x->nbytes != y->nbytes ||
                  memcmp(x->data, y->data, x->nbytes);
        if (bad) fprintf(stderr, "%s: '%s' vs '%s' (%s)\n", exp, gg_st_at(a, i)->name, gg_st_at(b, i)->name,
                         gg_st_at(b, i)->dtype);
    }
    if (gg_st_count(a) != gg_st_count(b))
        fprintf(stderr, "%s: %zu tensors, fixture has %zu\n", exp, gg_st_count(b), gg_st_count(a));
    gg_st_close(a);
    gg_st_close(b);
    return bad ? -1 : 0;
}

/* config.json of exp equals orig's except dtype keys, which say want. */
static int same_config(const char *orig, const char *exp, const char *want) {
    char p[2100];
    snprintf(p, sizeof p, "%s/config.json", orig);
    json_t *a = json_load_file(p, 0, NULL);
    snprintf(p, sizeof p, "%s/config.json", exp);
    json_t *b = json_load_file(p, 0, NULL);
    int bad = !a || !b;
    if (!bad) {
        json_t *d = json_object_get(b, json_object_get(a, "dtype") ? "dtype" : "torch_dtype");
        bad = !json_is_string(d) || strcmp(json_string_value(d), want) != 0;
        json_object_del(a, "dtype"), json_object_del(a, "torch_dtype");
        json_object_del(b, "dtype"), json_object_del(b, "torch_dtype");
        bad |= !json_equal(a, b);
    }
    json_decref(a);
    json_decref(b);
    return bad ? -1 : 0;
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int bad = !fa || !fb;
    while (!bad) {
        int ca = fgetc(fa), cb = fgetc(fb);
        bad = ca != cb;
        if (ca == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return bad ? -1 : 0;
}

static int exists(const char *dir, const char *name) {
    char p[2100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* fixture → .gg (type t) → HF (dtype) → .gg (type t): identical tensors. */
static int roundtrip(const char *fix, gg_type t, gg_type dtype, size_t shard, const char *tag, uint64_t *fp0,
                     uint64_t *fp1, char *hf, size_t hflen) {
    char src[1024], a[2100], b[2100];
    fixture_dir(fix, src, sizeof src);
    snprintf(a, sizeof a, "%s/%s.%s.gg", tmpdir, fix, gg_type_name(t));
    snprintf(hf, hflen, "%s/%s.%s.hf", tmpdir, fix, tag);
    snprintf(b, sizeof b, "%s/%s.%s.back.gg", tmpdir, fix, tag);
    if (convert_dir(src, a, t, fp0) || export_to(a, hf, dtype, shard) || convert_dir(hf, b, t, fp1)) return -1;
    return same_tensors(a, b, hf);
}

static void test_roundtrip_f32(void) {
    for (size_t i = 0; i < NFIX; i++) {
        char src[1024], hf[1024], g0[2100], g1[2100];
        fixture_dir(fixtures[i], src, sizeof src);
        CHECK(roundtrip(fixtures[i], GG_TYPE_F32, GG_TYPE_F32, 0, "f32", NULL, NULL, hf, sizeof hf) == 0, "%s",
              fixtures[i]);
        CHECK(same_names(src, hf, "F32", !strcmp(fixtures[i], "gemma-f32")) == 0, "%s", fixtures[i]);
        CHECK(same_config(src, hf, "float32") == 0, "%s", fixtures[i]);
        snprintf(g0, sizeof g0, "%s/generation_config.json", src);
        snprintf(g1, sizeof g1, "%s/generation_config.json", hf);
        CHECK(same_file(g0, g1) == 0, "%s", fixtures[i]);
        CHECK(exists(hf, "model.safetensors") && !exists(hf, "model.safetensors.index.json"), "%s", fixtures[i]);
    }
}

/* bf16 checkpoints: -t bf16 → bf16 export → -t bf16 is exact (norms are
 * stored f32 but hold bf16 values), and the fingerprint is kept (adapters fit). */
static void test_roundtrip_bf16(void) {
    size_t done = 0;
    for (size_t i = 0; i < NFIX; i++) {
        char src[1024], hf[1024];
        uint64_t fp0 = 0, fp1 = 1;
        gg_st_set *st;
        gg_err err;
        fixture_dir(fixtures[i], src, sizeof src);
        REQUIRE(gg_st_open_dir(&st, src, &err) == 0, "%s", err.msg);
        int bf16 = gg_st_at(st, 0)->type == GG_TYPE_BF16;
        gg_st_close(st);
        if (!bf16) continue;
        CHECK(roundtrip(fixtures[i], GG_TYPE_BF16, GG_TYPE_BF16, 0, "bf16", &fp0, &fp1, hf, sizeof hf) == 0, "%s",
              fixtures[i]);
        CHECK(same_names(src, hf, "BF16", 1) == 0, "%s", fixtures[i]);
        CHECK(same_config(src, hf, "bfloat16") == 0, "%s", fixtures[i]);
        CHECK(fp0 == fp1, "%s: fingerprint %llx vs %llx", fixtures[i], (unsigned long long)fp0,
              (unsigned long long)fp1);
        done++;
    }
    CHECK(done == 5, "%zu bf16 fixtures", done);
}

static void test_roundtrip_f16(void) {
    char src[1024], hf[1024];
    uint64_t fp0 = 0, fp1 = 1;
    fixture_dir("mistral-gqa-f16", src, sizeof src);
    CHECK(roundtrip("mistral-gqa-f16", GG_TYPE_F16, GG_TYPE_F16, 0, "f16", &fp0, &fp1, hf, sizeof hf) == 0, "f16");
    CHECK(same_names(src, hf, "F16", 1) == 0, "f16");
    CHECK(same_config(src, hf, "float16") == 0, "f16");
    CHECK(fp0 == fp1, "fingerprint %llx vs %llx", (unsigned long long)fp0, (unsigned long long)fp1);
}

static int count_shards(const char *dir) {
    int n = 0;
    for (int k = 1; k < 100; k++) {
        char name[64];
        for (int of = 2; of < 100; of++) {
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k, of);
            n += exists(dir, name);
        }
    }
    return n;
}

static void test_roundtrip_sharded(void) {
    static const char *fix[] = {"llama2-mha", "qwen2-bias-tied", "falcon40b-style", "falcon7b-style"};
    for (size_t i = 0; i < sizeof fix / sizeof *fix; i++) {
        char src[1024], hf[1024], tag[32];
        fixture_dir(fix[i], src, sizeof src);
        snprintf(tag, sizeof tag, "shard");
        CHECK(roundtrip(fix[i], GG_TYPE_F32, GG_TYPE_F32, 60000, tag, NULL, NULL, hf, sizeof hf) == 0, "%s", fix[i]);
        CHECK(same_names(src, hf, "F32", 0) == 0, "%s", fix[i]);
        CHECK(exists(hf, "model.safetensors.index.json") && !exists(hf, "model.safetensors"), "%s", fix[i]);
        int ns = count_shards(hf);
        CHECK(ns > 2, "%s: %d shards", fix[i], ns);
        /* the index: total_size = sum of tensor bytes, every name mapped */
        char p[2100];
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", hf);
        json_t *j = json_load_file(p, 0, NULL);
        gg_st_set *st;
        gg_err err;
        REQUIRE(j && gg_st_open_dir(&st, hf, &err) == 0, "%s", fix[i]);
        uint64_t total = 0;
        for (size_t k = 0; k < gg_st_count(st); k++) total += gg_st_at(st, k)->nbytes;
        json_t *map = json_object_get(j, "weight_map");
        CHECK(json_integer_value(json_object_get(json_object_get(j, "metadata"), "total_size")) == (json_int_t)total,
              "%s: total_size", fix[i]);
        CHECK(json_object_size(map) == gg_st_count(st), "%s: weight_map", fix[i]);
        gg_st_close(st);
        json_decref(j);
        /* re-export unsharded into the same folder: the stale index goes */
        char a[2100], b[2100];
        snprintf(a, sizeof a, "%s/%s.f32.gg", tmpdir, fix[i]);
        snprintf(b, sizeof b, "%s/%s.reshard.gg", tmpdir, fix[i]);
        CHECK(export_to(a, hf, GG_TYPE_F32, 0) == 0, "%s", fix[i]);
        CHECK(exists(hf, "model.safetensors") && !exists(hf, "model.safetensors.index.json"), "%s", fix[i]);
        CHECK(convert_dir(hf, b, GG_TYPE_F32, NULL) == 0 && same_tensors(a, b, hf) == 0, "%s", fix[i]);
    }
}

/* A q8 model exports its dequantized values exactly. */
static void test_quantized_source(void) {
    char src[1024], q[1024], hf[1024], back[1024];
    fixture_dir("llama3-gqa", src, sizeof src);
    snprintf(q, sizeof q, "%s/q8.gg", tmpdir);
    snprintf(hf, sizeof hf, "%s/q8.hf", tmpdir);
    snprintf(back, sizeof back, "%s/q8.back.gg", tmpdir);
    REQUIRE(convert_dir(src, q, GG_TYPE_Q8, NULL) == 0 && export_to(q, hf, GG_TYPE_F32, 0) == 0 &&
                convert_dir(hf, back, GG_TYPE_F32, NULL) == 0,
            "q8");
    gg_file *fq, *fb;
    gg_err err;
    REQUIRE(gg_file_open(&fq, q, 0, &err) == 0, "%s", err.msg);
    REQUIRE(gg_file_open(&fb, back, 0, &err) == 0, "%s", err.msg);
    REQUIRE(gg_tensor_count(fq) == gg_tensor_count(fb), "count");
    size_t nq8 = 0;
    for (size_t i = 0; i < gg_tensor_count(fq); i++) {
        const gg_tensor *x = gg_tensor_at(fq, i), *y = gg_tensor_at(fb, i);
        uint64_t rows = x->ndim == 2 ? x->shape[0] : 1, cols = x->ndim == 2 ? x->shape[1] : x->shape[0];
        float *d = malloc(rows * cols * sizeof *d);
        REQUIRE(d, "oom");
        CHECK(gg_dequantize_rows(x->type, x->data, rows, cols, 0, rows, d, &err) == 0, "%s", err.msg);
        CHECK(!strcmp(x->name, y->name) && y->type == GG_TYPE_F32 && y->size == rows * cols * 4 &&
                  !memcmp(d, y->data, y->size),
              "%s", x->name);
        nq8 += x->type == GG_TYPE_Q8;
        free(d);
    }
    CHECK(nq8 > 0, "no q8 tensors");
    gg_file_close(fq);
    gg_file_close(fb);
}

static int write_file(const char *dir, const char *name, const char *text) {
    char p[2100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return -1;
    size_t n = strlen(text), w = fwrite(text, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int copy_file(const char *from_dir, const char *to_dir, const char *name) {
    char a[2100], b[2100], buf[1 << 16];
    snprintf(a, sizeof a, "%s/%s", from_dir, name);
    snprintf(b, sizeof b, "%s/%s", to_dir, name);
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "wb");
    int bad = !fa || !fb;
    size_t n;
    while (!bad && (n = fread(buf, 1, sizeof buf, fa)) > 0) bad = fwrite(buf, 1, n, fb) != n;
    if (fa) fclose(fa);
    if (fb && fclose(fb)) bad = 1;
    return bad ? -1 : 0;
}

/* tokenizer.json, tokenizer_config.json, special_tokens_map.json come back byte for byte. */
static void test_tokenizer_files(void) {
    static const char *tok[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    static const char *text[] = {"{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}\n",
                                 "{\"chat_template\": \"{{ messages }}\", \"eos_token\": \"</s>\"}",
                                 "{\"eos_token\": \"</s>\"}\n"};
    char src[1024], dir[1024], gg[1024], hf[1024];
    fixture_dir("qwen2-bias-tied", src, sizeof src);
    snprintf(dir, sizeof dir, "%s/tokfix", tmpdir);
    snprintf(gg, sizeof gg, "%s/tokfix.gg", tmpdir);
    snprintf(hf, sizeof hf, "%s/tokfix.hf", tmpdir);
    REQUIRE(mkdir(dir, 0777) == 0, "mkdir");
    REQUIRE(copy_file(src, dir, "config.json") == 0 && copy_file(src, dir, "model.safetensors") == 0 &&
                copy_file(src, dir, "generation_config.json") == 0,
            "copy");
    for (int k = 0; k < 3; k++) REQUIRE(write_file(dir, tok[k], text[k]) == 0, "%s", tok[k]);
    REQUIRE(convert_dir(dir, gg, GG_TYPE_F32, NULL) == 0 && export_to(gg, hf, GG_TYPE_BF16, 0) == 0, "export");
    for (int k = 0; k < 3; k++) {
        char a[2100], b[2100];
        snprintf(a, sizeof a, "%s/%s", dir, tok[k]);
        snprintf(b, sizeof b, "%s/%s", hf, tok[k]);
        CHECK(same_file(a, b) == 0, "%s", tok[k]);
    }
}

/* ---- synthetic checkpoints: layouts the fixtures lack -------------------- */

/* Write DIR/config.json and DIR/model.safetensors with random bf16 tensors
 * given as "name:d0[,d1]" (L in a name is replaced by each of nl layers). */
static int make_synth(const char *dir, const char *config, const char *const *spec, size_t ns, int nl) {
    if (mkdir(dir, 0777) != 0 || write_file(dir, "config.json", config)) return -1;
    gg_st_wtensor t[64];
    char names[64][300];
    uint16_t *data[64];
    size_t n = 0;
    uint64_t rng = 12345;
    int bad = 0;
    for (size_t i = 0; i < ns && !bad; i++) {
        for (int L = 0; L < (strchr(spec[i], 'L') ? nl : 1) && !bad; L++) {
            char pat[128], *colon;
            snprintf(pat, sizeof pat, "%s", spec[i]);
            colon = strchr(pat, ':');
            *colon = 0;
            char *lp = strchr(pat, 'L');
            if (lp) *lp = 0;
            snprintf(names[n], sizeof names[n], "%s%s%s", pat, lp ? (L ? "1" : "0") : "", lp ? lp + 1 : "");
            t[n] = (gg_st_wtensor){.name = names[n], .dtype = "BF16", .ndim = 1};
            t[n].shape[0] = strtoull(colon + 1, &colon, 10);
            if (*colon == ',') t[n].ndim = 2, t[n].shape[1] = strtoull(colon + 1, NULL, 10);
            uint64_t ne = t[n].shape[0] * (t[n].ndim == 2 ? t[n].shape[1] : 1);
            bad = !(data[n] = malloc(ne * 2));
            for (uint64_t k = 0; !bad && k < ne; k++) {
                rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
                data[n][k] = gg_f32_to_bf16((float)((double)(rng >> 11) / 9007199254740992.0 - 0.5));
            }
            t[n].data = data[n];
            n++;
        }
    }
    char path[2100];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    gg_err err;
    static const char *const meta[2] = {"format", "pt"};
    if (!bad && gg_st_write(path, t, n, meta, 1, &err)) bad = fprintf(stderr, "%s\n", err.msg) || 1;
    for (size_t i = 0; i < n; i++) free(data[i]);
    return bad ? -1 : 0;
}

/* bf16 synthetic checkpoint → -t bf16 → bf16 export: byte-identical tensors. */
static void synth_roundtrip(const char *tag, const char *config, const char *const *spec, size_t ns, int nl) {
    char dir[1024], a[1024], hf[1024], b[1024];
    snprintf(dir, sizeof dir, "%s/synth-%s", tmpdir, tag);
    snprintf(a, sizeof a, "%s/synth-%s.gg", tmpdir, tag);
    snprintf(hf, sizeof hf, "%s/synth-%s.hf", tmpdir, tag);
    snprintf(b, sizeof b, "%s/synth-%s.back.gg", tmpdir, tag);
    REQUIRE(make_synth(dir, config, spec, ns, nl) == 0, "%s", tag);
    REQUIRE(convert_dir(dir, a, GG_TYPE_BF16, NULL) == 0, "%s", tag);
    CHECK(export_to(a, hf, GG_TYPE_BF16, 20000) == 0, "%s", tag);
    CHECK(same_names(dir, hf, "BF16", 1) == 0, "%s", tag);
    CHECK(convert_dir(hf, b, GG_TYPE_BF16, NULL) == 0 && same_tensors(a, b, hf) == 0, "%s", tag);
}

/* Falcon classic per-head interleaved q/k/v, sequential norms, all biases, untied. */
static void test_synth_falcon_interleaved(void) {
    static const char *spec[] = {
        "transformer.h.L.input_layernorm.weight:64", "transformer.h.L.input_layernorm.bias:64",
        "transformer.h.L.post_attention_layernorm.weight:64", "transformer.h.L.post_attention_layernorm.bias:64",
        "transformer.h.L.self_attention.query_key_value.weight:192,64",
        "transformer.h.L.self_attention.query_key_value.bias:192", "transformer.h.L.self_attention.dense.weight:64,64",
        "transformer.h.L.self_attention.dense.bias:64", "transformer.h.L.mlp.dense_h_to_4h.weight:128,64",
        "transformer.h.L.mlp.dense_h_to_4h.bias:128", "transformer.h.L.mlp.dense_4h_to_h.weight:64,128",
        "transformer.h.L.mlp.dense_4h_to_h.bias:64", "transformer.word_embeddings.weight:100,64",
        "transformer.ln_f.weight:64", "transformer.ln_f.bias:64", "lm_head.weight:100,64"};
    synth_roundtrip("falcon-rw",
                    "{\"architectures\": [\"FalconForCausalLM\"], \"model_type\": \"falcon\", \"hidden_size\": 64, "
                    "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": 100, "
                    "\"ffn_hidden_size\": 128, \"multi_query\": false, \"new_decoder_architecture\": false, "
                    "\"parallel_attn\": false, \"bias\": true, \"tie_word_embeddings\": false, "
                    "\"torch_dtype\": \"bfloat16\"}",
                    spec, sizeof spec / sizeof *spec, 2);
}

/* Falcon new decoder architecture with one norm (num_ln_in_parallel_attn 1). */
static void test_synth_falcon_one_norm(void) {
    static const char *spec[] = {
        "transformer.h.L.input_layernorm.weight:64", "transformer.h.L.input_layernorm.bias:64",
        "transformer.h.L.self_attention.query_key_value.weight:96,64",
        "transformer.h.L.self_attention.dense.weight:64,64", "transformer.h.L.mlp.dense_h_to_4h.weight:128,64",
        "transformer.h.L.mlp.dense_4h_to_h.weight:64,128", "transformer.word_embeddings.weight:100,64",
        "transformer.ln_f.weight:64", "transformer.ln_f.bias:64"};
    synth_roundtrip("falcon-1ln",
                    "{\"architectures\": [\"FalconForCausalLM\"], \"model_type\": \"falcon\", \"hidden_size\": 64, "
                    "\"num_attention_heads\": 8, \"num_kv_heads\": 2, \"num_hidden_layers\": 2, \"vocab_size\": 100, "
                    "\"ffn_hidden_size\": 128, \"new_decoder_architecture\": true, \"num_ln_in_parallel_attn\": 1, "
                    "\"bias\": false, \"dtype\": \"bfloat16\"}",
                    spec, sizeof spec / sizeof *spec, 2);
}

/* Llama with attention_bias (q, k, v, o) and mlp_bias, GQA, tied. */
static void test_synth_llama_bias(void) {
    static const char *spec[] = {
        "model.layers.L.input_layernorm.weight:64", "model.layers.L.post_attention_layernorm.weight:64",
        "model.layers.L.self_attn.q_proj.weight:64,64", "model.layers.L.self_attn.q_proj.bias:64",
        "model.layers.L.self_attn.k_proj.weight:32,64", "model.layers.L.self_attn.k_proj.bias:32",
        "model.layers.L.self_attn.v_proj.weight:32,64", "model.layers.L.self_attn.v_proj.bias:32",
        "model.layers.L.self_attn.o_proj.weight:64,64", "model.layers.L.self_attn.o_proj.bias:64",
        "model.layers.L.mlp.gate_proj.weight:128,64", "model.layers.L.mlp.gate_proj.bias:128",
        "model.layers.L.mlp.up_proj.weight:128,64", "model.layers.L.mlp.up_proj.bias:128",
        "model.layers.L.mlp.down_proj.weight:64,128", "model.layers.L.mlp.down_proj.bias:64",
        "model.embed_tokens.weight:100,64", "model.norm.weight:64"};
    synth_roundtrip("llama-bias",
                    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 64, "
                    "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"num_hidden_layers\": 2, "
                    "\"vocab_size\": 100, \"intermediate_size\": 128, \"attention_bias\": true, \"mlp_bias\": true, "
                    "\"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\"}",
                    spec, sizeof spec / sizeof *spec, 2);
}

/* A minimal model .gg: the given config text (NULL: none) and one tensor. */
static int write_model(const char *path, const char *config, const char *tensor) {
    gg_writer *w = gg_writer_new();
    gg_err err;
    size_t idx;
    uint64_t shape[2] = {1000, 128};
    const char *keys[] = {"model.vocab_size", "model.hidden_size", "model.n_layers", "model.n_heads",
                          "model.n_kv_heads", "model.head_dim", "model.ffn_size"};
    int64_t vals[] = {1000, 128, 2, 8, 2, 16, 256};
    int bad = !w || gg_writer_set_str(w, "gg.kind", "model", 5, &err);
    if (!bad && config) bad = gg_writer_set_str(w, "source.config_json", config, strlen(config), &err);
    for (int k = 0; !bad && k < 7; k++) bad = gg_writer_set_i64(w, keys[k], vals[k], &err);
    bad = bad || gg_writer_add_tensor(w, tensor, GG_TYPE_F32, 2, shape, &idx, &err) ||
          gg_writer_begin(w, path, 0, &err);
    float *z = calloc(1000 * 128, sizeof *z);
    bad = bad || !z || gg_writer_write(w, idx, z, 1000 * 128 * 4, &err) || gg_writer_finish(w, &err);
    free(z);
    gg_writer_free(w);
    return bad ? -1 : 0;
}

static int export_err(const char *gg, gg_type t, const char *needle) {
    gg_file *f;
    gg_err err;
    char dir[2100];
    snprintf(dir, sizeof dir, "%s.hf", gg);
    if (gg_file_open(&f, gg, 0, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    int rc = gg_hf_export(f, dir, t, 0, &err);
    gg_file_close(f);
    if (rc == 0) return fprintf(stderr, "%s: export succeeded\n", gg), -1;
    if (!strstr(err.msg, needle) || strchr(err.msg, '\n'))
        return fprintf(stderr, "%s: message '%s' lacks '%s'\n", gg, err.msg, needle), -1;
    return 0;
}

static void test_errors(void) {
    char src[1024], cfgp[2100], a[1024], b[1024], c[1024];
    fixture_dir("llama3-gqa", src, sizeof src);
    snprintf(cfgp, sizeof cfgp, "%s/config.json", src);
    FILE *f = fopen(cfgp, "rb");
    REQUIRE(f, "%s", cfgp);
    char cfg[8192];
    size_t n = fread(cfg, 1, sizeof cfg - 1, f);
    fclose(f);
    cfg[n] = 0;
    snprintf(a, sizeof a, "%s/noconfig.gg", tmpdir);
    snprintf(b, sizeof b, "%s/unknown.gg", tmpdir);
    snprintf(c, sizeof c, "%s/ok.gg", tmpdir);
    REQUIRE(write_model(a, NULL, "embed.weight") == 0 && write_model(b, cfg, "layers.0.attn.x.weight") == 0 &&
                write_model(c, cfg, "embed.weight") == 0,
            "write");
    CHECK(export_err(a, GG_TYPE_F32, "source.config_json") == 0, "no config");
    CHECK(export_err(b, GG_TYPE_F32, "layers.0.attn.x.weight") == 0, "unknown tensor");
    CHECK(export_err(c, GG_TYPE_Q8, "q8") == 0, "dtype");
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_roundtrip_f32);
    RUN(test_roundtrip_bf16);
    RUN(test_roundtrip_f16);
    RUN(test_roundtrip_sharded);
    RUN(test_quantized_source);
    RUN(test_tokenizer_files);
    RUN(test_synth_falcon_interleaved);
    RUN(test_synth_falcon_one_norm);
    RUN(test_synth_llama_bias);
    RUN(test_errors);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done();
}
