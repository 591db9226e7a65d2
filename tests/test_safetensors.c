/* test_safetensors.c — convert/safetensors.c: the HF fixtures (single and
 * sharded), byte-level agreement with an independent tiny parser, and every
 * kind of corrupt header / data layout / shard index we reject. */
#include "convert/safetensors.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/check.h"

/* ---- helpers ------------------------------------------------------------ */

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

static int write_all(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(buf, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* A safetensors image: u64 LE len(json), json, dlen data bytes (a pattern).
 * Exactly sized malloc, so ASan sees any overread. */
static uint8_t *mkimg(const char *json, size_t dlen, size_t *len) {
    size_t h = strlen(json);
    *len = 8 + h + dlen;
    uint8_t *b = malloc(*len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, json, h);
    for (size_t i = 0; i < dlen; i++) b[8 + h + i] = (uint8_t)(i * 7 + 3);
    return b;
}

static int msg_ok(const gg_err *e) { return e->msg[0] && !strchr(e->msg, '\n'); }

/* Opening json+dlen must fail, with one line containing word (case-insensitive)
 * and the label. */
#define EXPECT_FAIL(json, dlen, word)                                                   \
    do {                                                                                \
        size_t len_;                                                                    \
        uint8_t *b_ = mkimg(json, dlen, &len_);                                         \
        gg_st_set *s_ = (gg_st_set *)1;                                                 \
        gg_err e_ = {{0}};                                                              \
        int rc_ = gg_st_open_mem(&s_, b_, len_, "img.safetensors", &e_);                \
        CHECK(rc_ == -1 && s_ == NULL, "opened: %s", json);                              \
        CHECK(msg_ok(&e_), "bad message '%s'", e_.msg);                                 \
        CHECK(strcasestr(e_.msg, word) != NULL, "'%s' lacks '%s'", e_.msg, word);       \
        CHECK(strstr(e_.msg, "img.safetensors") != NULL, "'%s' lacks the label", e_.msg); \
        if (rc_ == 0) gg_st_close(s_);                                                  \
        free(b_);                                                                       \
    } while (0)

#define EXPECT_OK(json, dlen, nt)                                                       \
    do {                                                                                \
        size_t len_;                                                                    \
        uint8_t *b_ = mkimg(json, dlen, &len_);                                         \
        gg_st_set *s_ = NULL;                                                           \
        gg_err e_ = {{0}};                                                              \
        int rc_ = gg_st_open_mem(&s_, b_, len_, "img.safetensors", &e_);                \
        CHECK(rc_ == 0, "%s: %s", json, e_.msg);                                        \
        if (rc_ == 0) {                                                                 \
            CHECK(gg_st_count(s_) == (size_t)(nt), "count %zu", gg_st_count(s_));       \
            CHECK(gg_st_total_bytes(s_) == len_, "total");                              \
            gg_st_close(s_);                                                            \
        }                                                                               \
        free(b_);                                                                       \
    } while (0)

/* Independent tiny parser: header of a file image as a NUL-terminated string. */
static char *header_str(const uint8_t *b, size_t len, uint64_t *n_out) {
    if (len < 8) return NULL;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    if (n > len - 8) return NULL;
    char *h = malloc((size_t)n + 1);
    memcpy(h, b + 8, (size_t)n);
    h[n] = 0;
    *n_out = n;
    return h;
}

/* data_offsets of tensor `name` from the header text, by plain string search. */
static int find_offsets(const char *hdr, const char *name, unsigned long long *b,
                        unsigned long long *e) {
    char key[512];
    snprintf(key, sizeof key, "\"%s\"", name);
    const char *p = strstr(hdr, key);
    while (p) { /* it must be a key: followed by ':' (spaces allowed) */
        const char *q = p + strlen(key);
        while (*q == ' ') q++;
        if (*q == ':') break;
        p = strstr(p + 1, key);
    }
    if (!p) return -1;
    const char *end = strchr(p, '}');
    const char *d = strstr(p, "\"data_offsets\"");
    if (!d || !end || d > end) return -1;
    return sscanf(d + strlen("\"data_offsets\""), " : [ %llu , %llu ]", b, e) == 2 ? 0 : -1;
}

static size_t count_str(const char *h, const char *needle) {
    size_t n = 0;
    for (const char *p = strstr(h, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static const char *fixture_names[] = {"falcon40b-style", "falcon7b-style", "gemma-f32",
                                      "llama2-mha",      "llama3-gqa",     "mistral-gqa-f16",
                                      "qwen2-bias-tied"};
#define NFIX (sizeof fixture_names / sizeof fixture_names[0])

static gg_st_set *open_fixture(const char *name, gg_err *e) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/hf/%s", check_fixtures(), name);
    gg_st_set *s = NULL;
    if (gg_st_open_dir(&s, dir, e) != 0) return NULL;
    return s;
}

/* ---- fixtures ----------------------------------------------------------- */

/* Every fixture opens; count, offsets and every byte of every tensor agree
 * with the independent parser reading the file with stdio. */
static void test_fixtures_bytes(void) {
    for (size_t f = 0; f < NFIX; f++) {
        gg_err e = {{0}};
        gg_st_set *s = open_fixture(fixture_names[f], &e);
        CHECK(s != NULL, "%s: %s", fixture_names[f], e.msg);
        if (!s) continue;
        size_t expect_n = 0;
        uint64_t total = 0;
        const char *cur_path = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        char *hdr = NULL;
        uint64_t hn = 0;
        /* count tensors per distinct file, independently */
        const char *seen[16];
        size_t nseen = 0;
        for (size_t i = 0; i < gg_st_count(s); i++) {
            const gg_st_tensor *t = gg_st_at(s, i);
            size_t k;
            for (k = 0; k < nseen; k++)
                if (strcmp(seen[k], t->file) == 0) break;
            if (k == nseen && nseen < 16) {
                seen[nseen++] = t->file;
                size_t l2;
                uint8_t *b2 = read_all(t->file, &l2);
                uint64_t n2;
                char *h2 = b2 ? header_str(b2, l2, &n2) : NULL;
                CHECK(h2 != NULL, "read %s", t->file);
                if (h2) expect_n += count_str(h2, "\"data_offsets\"");
                total += l2;
                free(h2);
                free(b2);
            }
        }
        CHECK(gg_st_count(s) == expect_n && expect_n > 0, "%s: count %zu vs %zu",
              fixture_names[f], gg_st_count(s), expect_n);
        CHECK(gg_st_total_bytes(s) == total, "%s: total %llu vs %llu", fixture_names[f],
              (unsigned long long)gg_st_total_bytes(s), (unsigned long long)total);
        for (size_t i = 0; i < gg_st_count(s); i++) {
            const gg_st_tensor *t = gg_st_at(s, i);
            if (!cur_path || strcmp(cur_path, t->file) != 0) {
                free(buf);
                free(hdr);
                buf = read_all(t->file, &len);
                hdr = buf ? header_str(buf, len, &hn) : NULL;
                cur_path = t->file;
            }
            if (!hdr) {
                CHECK(0, "cannot read %s", t->file);
                continue;
            }
            unsigned long long b, en;
            int r = find_offsets(hdr, t->name, &b, &en);
            CHECK(r == 0, "%s: no offsets for %s", t->file, t->name);
            if (r) continue;
            CHECK(en - b == t->nbytes, "%s: nbytes %llu vs %llu", t->name,
                  (unsigned long long)t->nbytes, en - b);
            CHECK(8 + hn + en <= len, "%s: beyond file", t->name);
            if (en - b == t->nbytes && 8 + hn + en <= len)
                CHECK(memcmp(t->data, buf + 8 + hn + b, t->nbytes) == 0, "%s: bytes differ",
                      t->name);
            if (i) CHECK(strcmp(gg_st_at(s, i - 1)->name, t->name) < 0, "not sorted at %zu", i);
            CHECK(gg_st_find(s, t->name) == t, "find %s", t->name);
            CHECK(t->ndim >= 1 && t->ndim <= GG_ST_MAX_DIMS, "%s ndim %u", t->name, t->ndim);
        }
        CHECK(gg_st_find(s, "no.such.tensor") == NULL, "found a ghost");
        CHECK(gg_st_find(s, "") == NULL, "found empty");
        CHECK(gg_st_at(s, gg_st_count(s)) == NULL, "at(n)");
        free(buf);
        free(hdr);
        gg_st_close(s);
    }
}

static void test_llama2_sharded(void) {
    gg_err e = {{0}};
    gg_st_set *s = open_fixture("llama2-mha", &e);
    REQUIRE(s != NULL, "%s", e.msg);
    CHECK(gg_st_count(s) == 21, "count %zu", gg_st_count(s));
    const gg_st_tensor *t = gg_st_find(s, "model.embed_tokens.weight");
    CHECK(t != NULL, "embed");
    if (t) {
        CHECK(strcmp(t->dtype, "BF16") == 0 && t->type == GG_TYPE_BF16, "dtype %s", t->dtype);
        CHECK(t->ndim == 2 && t->shape[0] == 1000 && t->shape[1] == 64, "shape");
        CHECK(t->nbytes == 1000 * 64 * 2, "nbytes");
        CHECK(strstr(t->file, "model-00001-of-00004.safetensors") != NULL, "file %s", t->file);
    }
    t = gg_st_find(s, "lm_head.weight");
    CHECK(t != NULL && strstr(t->file, "model-00004-of-00004.safetensors") != NULL, "lm_head");
    t = gg_st_find(s, "model.norm.weight");
    CHECK(t != NULL && t->ndim == 1 && t->shape[0] == 64 &&
              strstr(t->file, "model-00003-of-00004.safetensors"),
          "norm");
    /* the file pointers are shared per shard, owned by the set */
    const gg_st_tensor *a = gg_st_find(s, "model.layers.0.self_attn.k_proj.weight");
    const gg_st_tensor *b = gg_st_find(s, "model.layers.0.self_attn.q_proj.weight");
    CHECK(a && b && a->file == b->file, "shared file string");
    gg_st_close(s);
}

static void test_fixture_dtypes(void) {
    gg_err e = {{0}};
    gg_st_set *s = open_fixture("mistral-gqa-f16", &e);
    CHECK(s != NULL, "%s", e.msg);
    if (s) {
        const gg_st_tensor *t = gg_st_find(s, "model.embed_tokens.weight");
        CHECK(t && t->type == GG_TYPE_F16 && strcmp(t->dtype, "F16") == 0, "mistral F16");
        CHECK(gg_st_count(s) == 30, "mistral count %zu", gg_st_count(s));
        gg_st_close(s);
    }
    s = open_fixture("gemma-f32", &e);
    CHECK(s != NULL, "%s", e.msg);
    if (s) {
        for (size_t i = 0; i < gg_st_count(s); i++)
            CHECK(gg_st_at(s, i)->type == GG_TYPE_F32, "gemma %s", gg_st_at(s, i)->name);
        CHECK(gg_st_count(s) == 20, "gemma count %zu", gg_st_count(s));
        gg_st_close(s);
    }
    s = open_fixture("qwen2-bias-tied", &e);
    CHECK(s != NULL, "%s", e.msg);
    if (s) {
        CHECK(gg_st_find(s, "model.layers.0.self_attn.q_proj.bias") != NULL, "qwen bias");
        gg_st_close(s);
    }
}

/* open_file and open_mem on the same bytes agree; mem pointers lie in buf. */
static void test_file_vs_mem(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/hf/llama3-gqa/model.safetensors", check_fixtures());
    size_t len;
    uint8_t *buf = read_all(path, &len);
    REQUIRE(buf != NULL, "read %s", path);
    gg_err e = {{0}};
    gg_st_set *a = NULL, *b = NULL;
    CHECK(gg_st_open_file(&a, path, &e) == 0, "%s", e.msg);
    CHECK(gg_st_open_mem(&b, buf, len, "mem", &e) == 0, "%s", e.msg);
    if (a && b) {
        CHECK(gg_st_count(a) == gg_st_count(b) && gg_st_count(a) == 21, "counts");
        CHECK(gg_st_total_bytes(a) == len && gg_st_total_bytes(b) == len, "totals");
        for (size_t i = 0; i < gg_st_count(a) && i < gg_st_count(b); i++) {
            const gg_st_tensor *x = gg_st_at(a, i), *y = gg_st_at(b, i);
            CHECK(strcmp(x->name, y->name) == 0 && x->nbytes == y->nbytes &&
                      strcmp(x->dtype, y->dtype) == 0 && x->ndim == y->ndim,
                  "%s", x->name);
            CHECK((const uint8_t *)y->data >= buf &&
                      (const uint8_t *)y->data + y->nbytes <= buf + len,
                  "%s outside the buffer", y->name);
            CHECK(memcmp(x->data, y->data, x->nbytes) == 0, "%s bytes", x->name);
            CHECK(strcmp(y->file, "mem") == 0, "label %s", y->file);
            CHECK(strcmp(x->file, path) == 0, "path %s", x->file);
        }
    }
    gg_st_close(a);
    gg_st_close(b);
    free(buf);
}

/* ---- valid small images ------------------------------------------------- */

static void test_valid_small(void) {
    EXPECT_OK("{}", 0, 0);
    EXPECT_OK("{\"__metadata__\":{\"format\":\"pt\"}}", 0, 0);
    EXPECT_OK("{\"__metadata__\":{}}     ", 0, 0); /* padded */
    EXPECT_OK("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ", 8, 1);
    /* scalar, zero-sized tensors at the same offset, extra fields ignored */
    EXPECT_OK("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
              "\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
              "\"z2\":{\"dtype\":\"I8\",\"shape\":[3,0],\"data_offsets\":[8,8],\"extra\":1},"
              "\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,3],\"data_offsets\":[8,11]}}",
              11, 4);
    /* a zero dim beside a huge one: 0 elements, no overflow */
    EXPECT_OK("{\"z\":{\"dtype\":\"F64\",\"shape\":[0,9223372036854775807,9223372036854775807],"
              "\"data_offsets\":[0,0]}}",
              0, 1);
    /* only zero-sized tensors and an empty buffer */
    EXPECT_OK("{\"z\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, 1);
}

static void test_all_dtypes(void) {
    static const struct {
        const char *d;
        int size, type;
    } ds[] = {{"F64", 8, -1},     {"F32", 4, GG_TYPE_F32}, {"F16", 2, GG_TYPE_F16},
              {"BF16", 2, GG_TYPE_BF16}, {"I64", 8, -1},   {"I32", 4, -1},
              {"I16", 2, -1},     {"I8", 1, -1},           {"U8", 1, -1},
              {"BOOL", 1, -1},    {"F8_E4M3", 1, -1},      {"F8_E5M2", 1, -1},
              {"U16", 2, -1},     {"U32", 4, -1},          {"U64", 8, -1}};
    char json[4096];
    size_t o = 0, off = 0;
    o += (size_t)snprintf(json + o, sizeof json - o, "{");
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        o += (size_t)snprintf(json + o, sizeof json - o,
                              "%s\"t_%s\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[%zu,%zu]}",
                              i ? "," : "", ds[i].d, ds[i].d, off, off + 3 * (size_t)ds[i].size);
        off += 3 * (size_t)ds[i].size;
    }
    snprintf(json + o, sizeof json - o, "}");
    size_t len;
    uint8_t *b = mkimg(json, off, &len);
    gg_st_set *s = NULL;
    gg_err e = {{0}};
    CHECK(gg_st_open_mem(&s, b, len, "dt", &e) == 0, "%s", e.msg);
    if (s) {
        CHECK(gg_st_count(s) == sizeof ds / sizeof ds[0], "count");
        for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
            char nm[32];
            snprintf(nm, sizeof nm, "t_%s", ds[i].d);
            const gg_st_tensor *t = gg_st_find(s, nm);
            CHECK(t && strcmp(t->dtype, ds[i].d) == 0 && t->type == ds[i].type &&
                      t->nbytes == 3 * (uint64_t)ds[i].size,
                  "%s", nm);
        }
        gg_st_close(s);
    }
    free(b);
}

/* ---- corruption --------------------------------------------------------- */

#define T_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
#define T_B "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}"

static void test_bad_length(void) {
    gg_err e = {{0}};
    gg_st_set *s = NULL;
    uint8_t tiny[7] = {0};
    CHECK(gg_st_open_mem(&s, tiny, 7, "t7", &e) == -1 && strcasestr(e.msg, "truncated"), "%s",
          e.msg);
    CHECK(gg_st_open_mem(&s, tiny, 0, "t0", &e) == -1 && strstr(e.msg, "t0"), "%s", e.msg);
    /* N larger than the file */
    uint8_t b1[16] = {9, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(gg_st_open_mem(&s, b1, 10, "n", &e) == -1 && strcasestr(e.msg, "truncated") &&
              strstr(e.msg, "beyond"),
          "%s", e.msg);
    /* N > 100 MB */
    uint8_t b2[16] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}'}; /* 100000001 */
    CHECK(gg_st_open_mem(&s, b2, 10, "n", &e) == -1 && strcasestr(e.msg, "too large"), "%s",
          e.msg);
    uint8_t b3[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CHECK(gg_st_open_mem(&s, b3, 10, "n", &e) == -1 && strcasestr(e.msg, "too large"), "%s",
          e.msg);
    uint8_t b4[8] = {0};
    CHECK(gg_st_open_mem(&s, b4, 8, "n", &e) == -1 && msg_ok(&e), "%s", e.msg);
    CHECK(s == NULL, "s set on failure");
}

static void test_bad_json(void) {
    EXPECT_FAIL("{\"a\":", 0, "line");
    EXPECT_FAIL("not json at all", 0, "syntax");
    EXPECT_FAIL("{}x", 0, "syntax");
    EXPECT_FAIL("[]", 0, "object");
    EXPECT_FAIL("3", 0, "header JSON"); /* jansson: '[' or '{' expected */
    EXPECT_FAIL("{\"__metadata__\":[]}", 0, "__metadata__");
    EXPECT_FAIL("{\"__metadata__\":{\"k\":3}}", 0, "'k'");
}

static void test_duplicates_and_names(void) {
    EXPECT_FAIL("{" T_A "," T_A "}", 8, "duplicate");
    EXPECT_FAIL("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "empty");
    /* raw 0xff inside the name: jansson rejects invalid UTF-8 */
    EXPECT_FAIL("{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "utf-8");
    /* overlong encoding and a UTF-8-encoded surrogate */
    EXPECT_FAIL("{\"a\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                "utf-8");
    EXPECT_FAIL("{\"a\xed\xa0\x80\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                "utf-8");
    /* embedded NUL via escape */
    EXPECT_FAIL("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                "nul");
    /* a raw control byte in a name: a JSON error, still one line */
    EXPECT_FAIL("{\"a\nb\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "newline");
    EXPECT_FAIL("{\"a\x01\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "control");
    /* a name with a newline is allowed, but the message stays on one line */
    EXPECT_FAIL("{\"a\\nb\":{\"dtype\":\"XX\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "a\\x0ab");
}

static void test_bad_fields(void) {
    EXPECT_FAIL("{\"a\":3}", 0, "object");
    EXPECT_FAIL("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    EXPECT_FAIL("{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "shape");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "shape");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "negative");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "shape[0]");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "shape[0]");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}",
                8, "dims");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "data_offsets");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-1,7]}}", 8, "data_offsets");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", 8, "data_offsets");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{}}}", 8, "data_offsets");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, "begin > end");
    /* integers beyond int64: a JSON error from jansson */
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999]}}",
                8, "integer");
}

static void test_bad_layout(void) {
    /* end beyond the data buffer: names the tensor and the offsets */
    EXPECT_FAIL("{" T_A "," T_B "}", 11, "beyond");
    EXPECT_FAIL("{" T_A "," T_B "}", 11, "'b'");
    EXPECT_FAIL("{" T_A "," T_B "}", 11, "[8, 12]");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[9223372036854775807,"
                "9223372036854775807]}}",
                0, "beyond");
    /* size vs shape */
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "mismatch");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 4, "mismatch");
    /* overflow of the product, and of product * dtype size */
    EXPECT_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
                0, "overflow");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}",
                0, "overflow");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0,4294967296],"
                "\"data_offsets\":[0,1]}}",
                1, "mismatch");
    /* overlap */
    EXPECT_FAIL("{" T_A ",\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8,
                "overlap");
    EXPECT_FAIL("{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                "overlap");
    /* zero-sized tensor inside another one */
    EXPECT_FAIL("{" T_A ",\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8,
                "overlap");
    /* holes: leading, middle, trailing, and data but no tensors */
    EXPECT_FAIL("{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, "hole");
    EXPECT_FAIL("{" T_A ",\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[9,13]}}", 13,
                "hole");
    EXPECT_FAIL("{" T_A "," T_B "}", 13, "hole");
    EXPECT_FAIL("{" T_A "," T_B "}", 13, "trailing");
    EXPECT_FAIL("{}", 1, "hole");
    EXPECT_FAIL("{\"__metadata__\":{\"a\":\"b\"}}", 5, "hole");
}

/* Every proper prefix of a valid image fails cleanly; the whole one opens. */
static void test_truncated_prefixes(void) {
    size_t len;
    uint8_t *full = mkimg("{\"__metadata__\":{\"format\":\"pt\"}," T_A "," T_B
                          ",\"c\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[12,24]}}  ",
                          24, &len);
    for (size_t n = 0; n <= len; n++) {
        uint8_t *b = malloc(n ? n : 1);
        memcpy(b, full, n);
        gg_st_set *s = NULL;
        gg_err e = {{0}};
        int rc = gg_st_open_mem(&s, n ? b : NULL, n, "pre", &e);
        if (n < len) {
            CHECK(rc == -1 && s == NULL && msg_ok(&e), "prefix %zu: rc %d '%s'", n, rc, e.msg);
            if (n >= 8 + 8) /* past the length, the JSON or the data is cut */
                CHECK(strcasestr(e.msg, "truncated") || strcasestr(e.msg, "beyond") ||
                          strcasestr(e.msg, "syntax"),
                      "prefix %zu: '%s'", n, e.msg);
        } else {
            CHECK(rc == 0 && gg_st_count(s) == 3, "full: %s", e.msg);
        }
        gg_st_close(s);
        free(b);
    }
    free(full);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* 2000 images with random bytes flipped: no crash, and any success is sane. */
static void test_random_flips(void) {
    size_t len;
    uint8_t *base = mkimg("{\"__metadata__\":{\"format\":\"pt\"}," T_A "," T_B
                          ",\"c\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[12,24]},"
                          "\"d\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[24,32]}}",
                          32, &len);
    size_t ok = 0;
    uint8_t *b = malloc(len);
    for (int it = 0; it < 2000; it++) {
        memcpy(b, base, len);
        int flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < flips; k++) {
            size_t pos = (size_t)(rng() % len);
            uint64_t r = rng();
            if (r & 1) b[pos] ^= (uint8_t)(1u << ((r >> 1) % 8));
            else b[pos] = (uint8_t)(r >> 8);
        }
        gg_st_set *s = NULL;
        gg_err e = {{0}};
        if (gg_st_open_mem(&s, b, len, "flip", &e) == 0) {
            ok++;
            uint64_t sum = 0;
            for (size_t i = 0; i < gg_st_count(s); i++) {
                const gg_st_tensor *t = gg_st_at(s, i);
                const uint8_t *d = t->data;
                CHECK(d >= b && d + t->nbytes <= b + len, "iteration %d: %s outside", it, t->name);
                if (t->nbytes) sum += d[0] + d[t->nbytes - 1];
                CHECK(gg_st_find(s, t->name) == t, "find");
            }
            (void)sum;
            gg_st_close(s);
        } else {
            CHECK(s == NULL && msg_ok(&e), "iteration %d: '%s'", it, e.msg);
        }
    }
    CHECK(ok > 0 && ok < 2000, "ok %zu of 2000", ok);
    free(b);
    free(base);
}

static void test_null_and_missing(void) {
    gg_err e = {{0}};
    gg_st_set *s = (gg_st_set *)1;
    CHECK(gg_st_open_file(&s, "/nonexistent/x.safetensors", &e) == -1 && s == NULL &&
              strstr(e.msg, "/nonexistent/x.safetensors"),
          "%s", e.msg);
    CHECK(gg_st_open_file(&s, "/tmp", &e) == -1 && strcasestr(e.msg, "regular"), "%s", e.msg);
    CHECK(gg_st_count(NULL) == 0 && gg_st_at(NULL, 0) == NULL && gg_st_find(NULL, "a") == NULL &&
              gg_st_total_bytes(NULL) == 0,
          "NULL set");
    gg_st_close(NULL);
}

/* ---- sharded sets in a temp dir ---------------------------------------- */

static char tdir[256];

static void tput(const char *name, const void *buf, size_t len) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tdir, name);
    CHECK(write_all(p, buf, len) == 0, "write %s", p);
}

static void tput_img(const char *name, const char *json, size_t dlen) {
    size_t len;
    uint8_t *b = mkimg(json, dlen, &len);
    tput(name, b, len);
    free(b);
}

static void tput_str(const char *name, const char *s) { tput(name, s, strlen(s)); }

static void tclean(void) {
    DIR *d = opendir(tdir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", tdir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

static int topen(gg_st_set **s, gg_err *e) {
    *s = NULL;
    return gg_st_open_dir(s, tdir, e);
}

#define SH1 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
#define SH2                                                        \
    "{\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}," \
    "\"c\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[3,5]}}"
#define IDX_GOOD                                                                        \
    "{\"metadata\":{\"total_size\":13},\"weight_map\":{\"a\":\"s-1.safetensors\","     \
    "\"b\":\"s-2.safetensors\",\"c\":\"s-2.safetensors\"}}"

#define EXPECT_DIR_FAIL(word)                                                     \
    do {                                                                          \
        gg_st_set *s_;                                                            \
        gg_err e_ = {{0}};                                                        \
        int rc_ = topen(&s_, &e_);                                                \
        CHECK(rc_ == -1 && s_ == NULL, "opened");                                 \
        CHECK(msg_ok(&e_) && strcasestr(e_.msg, word), "'%s' lacks '%s'", e_.msg, word); \
        if (!rc_) gg_st_close(s_);                                                \
    } while (0)

static void test_dir(void) {
    snprintf(tdir, sizeof tdir, "/tmp/gg_st_test_XXXXXX");
    char *made = mkdtemp(tdir); /* not inside REQUIRE: it evaluates its condition twice */
    REQUIRE(made != NULL, "mkdtemp");
    gg_st_set *s;
    gg_err e = {{0}};

    /* nothing there */
    EXPECT_DIR_FAIL("no model.safetensors or model.safetensors.index.json");
    {
        gg_st_set *s2 = (gg_st_set *)1;
        CHECK(gg_st_open_dir(&s2, "/nonexistent/dir", &e) == -1 && s2 == NULL &&
                  strstr(e.msg, "/nonexistent/dir"),
              "%s", e.msg);
    }

    /* single file */
    tput_img("model.safetensors", SH2, 5);
    CHECK(topen(&s, &e) == 0, "%s", e.msg);
    if (s) {
        CHECK(gg_st_count(s) == 2 && strstr(gg_st_at(s, 0)->file, "model.safetensors"), "single");
        gg_st_close(s);
    }
    tput_img("model.safetensors", "{}", 3);
    EXPECT_DIR_FAIL("hole");
    tclean();

    /* a valid sharded set (and an unrelated model.safetensors: the index wins) */
    tput_img("s-1.safetensors", SH1, 8);
    tput_img("s-2.safetensors", SH2, 5);
    tput_str("model.safetensors", "garbage");
    tput_str("model.safetensors.index.json", IDX_GOOD);
    CHECK(topen(&s, &e) == 0, "%s", e.msg);
    if (s) {
        CHECK(gg_st_count(s) == 3, "count");
        const gg_st_tensor *a = gg_st_find(s, "a"), *b = gg_st_find(s, "b"),
                           *c = gg_st_find(s, "c");
        CHECK(a && b && c, "find");
        if (a && b && c) {
            CHECK(strstr(a->file, "s-1.safetensors") && strstr(b->file, "s-2.safetensors") &&
                      b->file == c->file,
                  "files");
            CHECK(strcmp(c->dtype, "I16") == 0 && c->nbytes == 2, "c");
            const uint8_t *cd = c->data;
            CHECK(cd[0] == (uint8_t)(3 * 7 + 3), "c bytes");
        }
        uint64_t want = (8 + strlen(SH1) + 8) + (8 + strlen(SH2) + 5);
        CHECK(gg_st_total_bytes(s) == want, "total %llu", (unsigned long long)gg_st_total_bytes(s));
        gg_st_close(s);
    }

    /* file names that escape the folder or are not plain */
    tput_str("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"../x\"}}");
    EXPECT_DIR_FAIL("plain file name");
    EXPECT_DIR_FAIL("../x");
    tput_str("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"sub/s-1.safetensors\"}}");
    EXPECT_DIR_FAIL("plain file name");
    tput_str("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"..\"}}");
    EXPECT_DIR_FAIL("plain file name");
    tput_str("model.safetensors.index.json", "{\"weight_map\":{\"a\":\".\"}}");
    EXPECT_DIR_FAIL("plain file name");
    tput_str("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"\"}}");
    EXPECT_DIR_FAIL("plain file name");
    tput_str("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}");
    EXPECT_DIR_FAIL("plain file name");
    tput_str("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s-1\\u0000.x\"}}");
    EXPECT_DIR_FAIL("nul"); /* jansson refuses \u0000 */
    tput_str("model.safetensors.index.json", "{\"weight_map\":{\"a\":3}}");
    EXPECT_DIR_FAIL("file name");

    /* structure of the index */
    tput_str("model.safetensors.index.json", "{\"weight_map\":");
    EXPECT_DIR_FAIL("line");
    tput_str("model.safetensors.index.json", "{\"metadata\":{}}");
    EXPECT_DIR_FAIL("weight_map");
    tput_str("model.safetensors.index.json", "{\"weight_map\":[]}");
    EXPECT_DIR_FAIL("weight_map");
    tput_str("model.safetensors.index.json", "{\"weight_map\":{}}");
    EXPECT_DIR_FAIL("empty");
    tput_str("model.safetensors.index.json", "[]");
    EXPECT_DIR_FAIL("object");
    tput_str("model.safetensors.index.json",
             "{\"weight_map\":{\"a\":\"s-1.safetensors\",\"a\":\"s-1.safetensors\"}}");
    EXPECT_DIR_FAIL("duplicate");

    /* a shard file that is not there */
    tput_str("model.safetensors.index.json",
             "{\"weight_map\":{\"a\":\"s-1.safetensors\",\"q\":\"model-00009.safetensors\"}}");
    EXPECT_DIR_FAIL("model-00009.safetensors: cannot open");

    /* the index names a tensor its shard lacks */
    tput_str("model.safetensors.index.json",
             "{\"weight_map\":{\"a\":\"s-1.safetensors\",\"b\":\"s-2.safetensors\","
             "\"c\":\"s-2.safetensors\",\"zz\":\"s-1.safetensors\"}}");
    EXPECT_DIR_FAIL("s-1.safetensors: tensor 'zz' named by the index is missing");

    /* ... or maps it to the other shard */
    tput_str("model.safetensors.index.json",
             "{\"weight_map\":{\"a\":\"s-2.safetensors\",\"b\":\"s-2.safetensors\","
             "\"c\":\"s-2.safetensors\"}}");
    EXPECT_DIR_FAIL("s-2.safetensors: tensor 'a' named by the index is missing");

    /* a shard holds a tensor the index does not name */
    tput_str("model.safetensors.index.json",
             "{\"weight_map\":{\"a\":\"s-1.safetensors\",\"b\":\"s-2.safetensors\"}}");
    EXPECT_DIR_FAIL("'c' is not in the index");

    /* the same tensor in two shards */
    tput_img("s-3.safetensors", SH1, 8);
    tput_str("model.safetensors.index.json",
             "{\"weight_map\":{\"a\":\"s-1.safetensors\",\"b\":\"s-2.safetensors\","
             "\"c\":\"s-2.safetensors\",\"zz\":\"s-3.safetensors\"}}");
    EXPECT_DIR_FAIL("maps it to s-1.safetensors");

    /* a corrupt shard: the message names it */
    tput_img("s-2.safetensors", SH2, 4);
    tput_str("model.safetensors.index.json", IDX_GOOD);
    EXPECT_DIR_FAIL("s-2.safetensors: tensor 'c'");
    tput_str("s-2.safetensors", "abc");
    EXPECT_DIR_FAIL("s-2.safetensors: file is truncated");
    /* a shard that is a directory */
    {
        char p[512];
        snprintf(p, sizeof p, "%s/s-2.safetensors", tdir);
        unlink(p);
        mkdir(p, 0700);
        EXPECT_DIR_FAIL("regular");
        rmdir(p);
    }

    tclean();
    rmdir(tdir);
}

int main(void) {
    RUN(test_fixtures_bytes);
    RUN(test_llama2_sharded);
    RUN(test_fixture_dtypes);
    RUN(test_file_vs_mem);
    RUN(test_valid_small);
    RUN(test_all_dtypes);
    RUN(test_bad_length);
    RUN(test_bad_json);
    RUN(test_duplicates_and_names);
    RUN(test_bad_fields);
    RUN(test_bad_layout);
    RUN(test_truncated_prefixes);
    RUN(test_random_flips);
    RUN(test_null_and_missing);
    RUN(test_dir);
    return check_done();
}
