/* test_ggfmt.c — the .gg container: write→read round trip of every metadata
 * type and of tensors, checksums, the atomic writer, and rejection of
 * damaged files (truncation at every length, every flipped byte, bad magic,
 * huge counts, bad UTF-8, overlapping tensors). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "ggfmt/ggfmt.h"
#include "ggfmt/utf8.h"
#include "tests/check.h"

static char tmpdir[] = "/tmp/gg_test_ggfmt_XXXXXX";

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* A small file with every metadata type and three tensors. */
static float t_vec[5] = {1.5f, -2.25f, 3.0f, 0.125f, -7.0f};
static uint16_t t_h[2 * 3];
static int write_sample(const char *path, gg_err *err) {
    gg_writer *w = gg_writer_new();
    const int bools[3] = {1, 0, 1};
    const int64_t ints[4] = {-1, 0, 42, INT64_MIN};
    const uint64_t us[2] = {0, UINT64_MAX};
    const double fs[3] = {3.5, -0.0, 1e300};
    const char *strs[3] = {"a", "", "h\xc3\xa9llo \xe2\x82\xac"};
    int rc = gg_writer_set_bool(w, "k.bool", 1, err) || gg_writer_set_i64(w, "k.i64", -1234567890123LL, err) ||
             gg_writer_set_u64(w, "k.u64", 0xFEDCBA9876543210ull, err) ||
             gg_writer_set_f64(w, "k.f64", 2.718281828459045, err) ||
             gg_writer_set_str(w, "k.str", "with\0nul", 8, err) ||
             gg_writer_set_str(w, "k.empty", "", 0, err) ||
             gg_writer_set_arr_bool(w, "a.bool", bools, 3, err) ||
             gg_writer_set_arr_i64(w, "a.i64", ints, 4, err) ||
             gg_writer_set_arr_u64(w, "a.u64", us, 2, err) ||
             gg_writer_set_arr_f64(w, "a.f64", fs, 3, err) ||
             gg_writer_set_arr_str(w, "a.str", strs, NULL, 3, err) ||
             gg_writer_set_arr_i64(w, "a.none", NULL, 0, err);
    if (rc) {
        gg_writer_free(w);
        return -1;
    }
    uint64_t s1[1] = {5}, s2[2] = {2, 3}, s3[2] = {1, 64};
    size_t i1, i2, i3;
    if (gg_writer_add_tensor(w, "vec", GG_TYPE_F32, 1, s1, &i1, err) ||
        gg_writer_add_tensor(w, "mat.h", GG_TYPE_F16, 2, s2, &i2, err) ||
        gg_writer_add_tensor(w, "q", GG_TYPE_Q8, 2, s3, &i3, err) ||
        gg_writer_begin(w, path, 64, err)) {
        gg_writer_free(w);
        return -1;
    }
    for (int i = 0; i < 6; i++) t_h[i] = gg_f32_to_f16((float)i - 2.5f);
    float qsrc[64];
    for (int i = 0; i < 64; i++) qsrc[i] = sinf((float)i);
    uint8_t qbuf[66];
    rc = gg_quantize(GG_TYPE_Q8, qbuf, GG_TYPE_F32, qsrc, 1, 64, err);
    /* Write out of order and in chunks. */
    rc = rc || gg_writer_write(w, i3, qbuf, 66, err) || gg_writer_write(w, i1, t_vec, 8, err) ||
         gg_writer_write(w, i2, t_h, sizeof t_h, err) ||
         gg_writer_write(w, i1, (char *)t_vec + 8, 12, err) || gg_writer_finish(w, err);
    gg_writer_free(w);
    return rc ? -1 : 0;
}

static char sample_path[256];

static void test_roundtrip(void) {
    gg_err err;
    snprintf(sample_path, sizeof sample_path, "%s/sample.gg", tmpdir);
    REQUIRE(write_sample(sample_path, &err) == 0, "%s", err.msg);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", sample_path);
    CHECK(access(tmp, F_OK) != 0, "tmp file left behind");
    gg_file *f;
    REQUIRE(gg_file_open(&f, sample_path, 0, &err) == 0, "%s", err.msg);
    CHECK(gg_meta_count(f) == 12, "meta count %zu", gg_meta_count(f));
    int b;
    int64_t i;
    uint64_t u;
    double d;
    gg_str s;
    CHECK(gg_meta_get_bool(f, "k.bool", &b, &err) == 0 && b == 1, "bool");
    CHECK(gg_meta_get_i64(f, "k.i64", &i, &err) == 0 && i == -1234567890123LL, "i64");
    CHECK(gg_meta_get_u64(f, "k.u64", &u, &err) == 0 && u == 0xFEDCBA9876543210ull, "u64");
    CHECK(gg_meta_get_f64(f, "k.f64", &d, &err) == 0 && d == 2.718281828459045, "f64");
    CHECK(gg_meta_get_str(f, "k.str", &s, &err) == 0 && s.len == 8 && !memcmp(s.ptr, "with\0nul", 8), "str");
    CHECK(gg_meta_get_str(f, "k.empty", &s, &err) == 0 && s.len == 0, "empty str");
    const gg_value *v = gg_meta_find(f, "a.bool");
    CHECK(v && v->type == GG_V_ARR && v->elem == GG_V_BOOL && v->count == 3 &&
              gg_value_arr_bool(v, 0) == 1 && gg_value_arr_bool(v, 1) == 0, "arr bool");
    v = gg_meta_find(f, "a.i64");
    CHECK(v && v->elem == GG_V_I64 && v->count == 4 && gg_value_arr_i64(v, 3) == INT64_MIN &&
              gg_value_arr_i64(v, 0) == -1, "arr i64");
    v = gg_meta_find(f, "a.u64");
    CHECK(v && v->elem == GG_V_U64 && gg_value_arr_u64(v, 1) == UINT64_MAX, "arr u64");
    v = gg_meta_find(f, "a.f64");
    CHECK(v && v->elem == GG_V_F64 && gg_value_arr_f64(v, 2) == 1e300 &&
              signbit(gg_value_arr_f64(v, 1)), "arr f64");
    v = gg_meta_find(f, "a.str");
    CHECK(v && v->elem == GG_V_STR && v->count == 3 && v->strs[1].len == 0 &&
              v->strs[2].len == strlen("h\xc3\xa9llo \xe2\x82\xac") &&
              !memcmp(v->strs[2].ptr, "h\xc3\xa9llo \xe2\x82\xac", v->strs[2].len), "arr str");
    v = gg_meta_find(f, "a.none");
    CHECK(v && v->count == 0, "empty arr");
    CHECK(gg_meta_get_i64(f, "k.str", &i, &err) == -1 && strstr(err.msg, "is str, expected i64"), "%s", err.msg);
    CHECK(gg_meta_get_i64(f, "nope", &i, &err) == -1 && strstr(err.msg, "missing"), "%s", err.msg);

    CHECK(gg_tensor_count(f) == 3, "tensors");
    const gg_tensor *t = gg_tensor_find(f, "vec");
    REQUIRE(t, "vec missing");
    CHECK(t->type == GG_TYPE_F32 && t->ndim == 1 && t->shape[0] == 5 && t->size == 20, "vec shape");
    CHECK(!memcmp(t->data, t_vec, 20), "vec data");
    CHECK(((uintptr_t)t->data - (uintptr_t)gg_tensor_at(f, 0)->data) % 64 == 0, "alignment");
    t = gg_tensor_find(f, "mat.h");
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && !memcmp(t->data, t_h, 12), "mat.h");
    t = gg_tensor_find(f, "q");
    CHECK(t && t->type == GG_TYPE_Q8 && t->size == 66, "q");
    CHECK(gg_file_verify(f, &err) == 0, "%s", err.msg);
    CHECK(gg_tensor_find(f, "zzz") == NULL, "find missing");
    gg_file_close(f);
}

/* Recompute the three section checksums after a deliberate edit, so the
 * validation behind them is what gets tested. */
static void refix(unsigned char *b, size_t len) {
    uint64_t mo, ms, io, is;
    memcpy(&mo, b + 32, 8);
    memcpy(&ms, b + 40, 8);
    memcpy(&io, b + 56, 8);
    memcpy(&is, b + 64, 8);
    if (mo + ms <= len) {
        uint64_t h = XXH64(b + mo, ms, 0);
        memcpy(b + 96, &h, 8);
    }
    if (io + is <= len) {
        uint64_t h = XXH64(b + io, is, 0);
        memcpy(b + 104, &h, 8);
    }
    uint64_t h = XXH64(b, 120, 0);
    memcpy(b + 120, &h, 8);
}

static int open_mem(const unsigned char *b, size_t n, gg_err *err) {
    gg_file *f;
    if (gg_file_open_mem(&f, b, n, "mem", 0, err)) return -1;
    int rc = gg_file_verify(f, err);
    gg_file_close(f);
    return rc;
}

static void test_truncation_every_length(void) {
    size_t n;
    unsigned char *b = read_file(sample_path, &n);
    REQUIRE(b, "read");
    for (size_t k = 0; k < n; k++) {
        gg_err err = {{0}};
        unsigned char *c = malloc(k ? k : 1);
        memcpy(c, b, k);
        int rc = open_mem(c, k, &err);
        CHECK(rc == -1 && err.msg[0], "prefix %zu accepted", k);
        free(c);
    }
    free(b);
}

static void test_every_flipped_byte(void) {
    size_t n;
    unsigned char *b = read_file(sample_path, &n);
    REQUIRE(b, "read");
    uint64_t data_off;
    memcpy(&data_off, b + 80, 8);
    int undetected = 0;
    for (size_t k = 0; k < n; k++) {
        for (int bit = 0; bit < 8; bit += 3) {
            b[k] ^= (unsigned char)(1u << bit);
            gg_err err;
            int rc = open_mem(b, n, &err);
            /* Only padding bytes (between the index and the data, and between
             * tensors) are not covered by a checksum. */
            if (rc == 0) undetected++;
            b[k] ^= (unsigned char)(1u << bit);
        }
    }
    /* Count the padding bytes: not covered by any checksum by design. */
    gg_file *f;
    gg_err err;
    REQUIRE(gg_file_open_mem(&f, b, n, "mem", 0, &err) == 0, "%s", err.msg);
    uint64_t covered = data_off - (data_off - 0); /* header..index end is covered */
    uint64_t io, is;
    memcpy(&io, b + 56, 8);
    memcpy(&is, b + 64, 8);
    covered = io + is;
    for (size_t i = 0; i < gg_tensor_count(f); i++) covered += gg_tensor_at(f, i)->size;
    gg_file_close(f);
    uint64_t padding = n - covered;
    CHECK((uint64_t)undetected == padding * 3, "undetected flips %d, padding bytes %llu", undetected,
          (unsigned long long)padding);
    free(b);
}

static void expect_error(unsigned char *b, size_t n, const char *needle, const char *what) {
    gg_err err = {{0}};
    int rc = open_mem(b, n, &err);
    CHECK(rc == -1, "%s: accepted", what);
    CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
}

static void test_crafted_damage(void) {
    size_t n;
    unsigned char *orig = read_file(sample_path, &n);
    REQUIRE(orig, "read");
    unsigned char *b = malloc(n);

    memcpy(b, orig, n);
    b[1] = 'X';
    expect_error(b, n, "bad magic", "magic");

    memcpy(b, orig, n);
    b[140] ^= 1;
    expect_error(b, n, "metadata checksum", "meta checksum");

    memcpy(b, orig, n);
    b[8] = 9;
    refix(b, n);
    expect_error(b, n, "version 9", "version");

    memcpy(b, orig, n);
    uint64_t huge = UINT64_MAX / 2;
    memcpy(b + 48, &huge, 8); /* metadata count */
    refix(b, n);
    expect_error(b, n, "metadata_count", "huge meta count");

    memcpy(b, orig, n);
    memcpy(b + 72, &huge, 8); /* tensor count */
    refix(b, n);
    expect_error(b, n, "tensor_count", "huge tensor count");

    memcpy(b, orig, n);
    memcpy(b + 40, &huge, 8); /* metadata size */
    refix(b, n);
    expect_error(b, n, "metadata section", "huge meta size");

    /* The first metadata key starts at 128 + 4: make it invalid UTF-8. */
    memcpy(b, orig, n);
    b[132] = 0xFF;
    refix(b, n);
    expect_error(b, n, "not valid UTF-8", "bad utf-8 key");

    /* Make the first tensor name invalid UTF-8 (overlong '/'). */
    memcpy(b, orig, n);
    uint64_t io;
    memcpy(&io, b + 56, 8);
    b[io + 4] = 0xC0;
    b[io + 5] = 0xAF;
    refix(b, n);
    expect_error(b, n, "not valid UTF-8", "bad utf-8 name");

    /* Key length larger than the section. */
    memcpy(b, orig, n);
    uint32_t big = 4000;
    memcpy(b + 128, &big, 4);
    refix(b, n);
    expect_error(b, n, "truncated", "key length");

    /* Tensor type out of range: first entry "vec" (3 bytes) → type at io+7. */
    memcpy(b, orig, n);
    uint32_t ty = 77;
    memcpy(b + io + 7, &ty, 4);
    refix(b, n);
    expect_error(b, n, "unknown type 77", "tensor type");

    /* Tensor size that does not match its shape. */
    memcpy(b, orig, n);
    uint64_t sz = 24;
    memcpy(b + io + 4 + 3 + 4 + 4 + 8 + 8, &sz, 8);
    refix(b, n);
    expect_error(b, n, "does not match", "size vs shape");

    /* Second tensor's offset moved onto the first: overlap. */
    memcpy(b, orig, n);
    size_t e2 = io + 4 + 3 + 4 + 4 + 8 + 24; /* entry 2 ("mat.h", 2-D) */
    uint64_t zero = 0;
    memcpy(b + e2 + 4 + 5 + 4 + 4 + 16, &zero, 8);
    refix(b, n);
    expect_error(b, n, "overlap", "overlap");

    /* Offset beyond the data section. */
    memcpy(b, orig, n);
    uint64_t far = 1ull << 40;
    memcpy(b + e2 + 4 + 5 + 4 + 4 + 16, &far, 8);
    refix(b, n);
    expect_error(b, n, "outside the data section", "offset range");

    /* Tensor data flipped: caught by the spot check at open. */
    memcpy(b, orig, n);
    b[n - 1] ^= 0x10;
    expect_error(b, n, "checksum mismatch", "data flip");

    /* Trailing bytes. */
    unsigned char *longer = malloc(n + 3);
    memcpy(longer, orig, n);
    memset(longer + n, 0, 3);
    expect_error(longer, n + 3, "trailing bytes", "trailing");
    free(longer);

    /* A text file and an empty buffer. */
    const char *txt = "hello, this is not a model file at all; hello, this is not a model file at all; "
                      "hello, this is not a model file at all; hello, this is not a model file at all";
    expect_error((unsigned char *)txt, strlen(txt), "bad magic", "text");
    free(b);
    free(orig);
}

static void test_random_junk(void) {
    unsigned char buf[512];
    for (int r = 0; r < 3000; r++) {
        size_t n = next_u64() % sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)next_u64();
        if (n >= 8 && (r & 1)) memcpy(buf, GG_MAGIC, 8);
        if (n >= 128 && (r & 2)) refix(buf, n);
        gg_err err;
        CHECK(open_mem(buf, n, &err) == -1, "junk %d accepted", r);
    }
}

static void test_writer_rejects(void) {
    gg_err err;
    gg_writer *w = gg_writer_new();
    CHECK(gg_writer_set_i64(w, "x", 1, &err) == 0, "set");
    CHECK(gg_writer_set_i64(w, "x", 2, &err) == -1 && strstr(err.msg, "duplicate"), "dup key");
    CHECK(gg_writer_set_str(w, "bad", "\xff", 1, &err) == -1 && strstr(err.msg, "UTF-8"), "utf8 value");
    CHECK(gg_writer_set_i64(w, "", 2, &err) == -1, "empty key");
    uint64_t sh[2] = {4, 172};
    CHECK(gg_writer_add_tensor(w, "w", GG_TYPE_NF4, 2, sh, NULL, &err) == -1 &&
              strstr(err.msg, "multiple of 64"), "%s", err.msg);
    uint64_t sh1[1] = {4};
    CHECK(gg_writer_add_tensor(w, "v", GG_TYPE_F32, 1, sh1, NULL, &err) == 0, "%s", err.msg);
    CHECK(gg_writer_add_tensor(w, "v", GG_TYPE_F32, 1, sh1, NULL, &err) == -1, "dup tensor");
    char path[300];
    snprintf(path, sizeof path, "%s/incomplete.gg", tmpdir);
    CHECK(gg_writer_begin(w, path, 64, &err) == 0, "%s", err.msg);
    float x[4] = {1, 2, 3, 4};
    CHECK(gg_writer_write(w, 0, x, 8, &err) == 0, "%s", err.msg);
    CHECK(gg_writer_write(w, 0, x, 16, &err) == -1 && strstr(err.msg, "exceed"), "overflow write");
    CHECK(gg_writer_finish(w, &err) == -1 && strstr(err.msg, "8 of 16"), "%s", err.msg);
    gg_writer_free(w);
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(path, F_OK) != 0, "incomplete output exists");
    CHECK(access(tmp, F_OK) != 0, "tmp left behind");

    /* An existing file is only replaced by a complete new one. */
    FILE *keep = fopen(path, "w");
    fputs("precious", keep);
    fclose(keep);
    w = gg_writer_new();
    CHECK(gg_writer_add_tensor(w, "v", GG_TYPE_F32, 1, sh1, NULL, &err) == 0, "%s", err.msg);
    CHECK(gg_writer_begin(w, path, 0, &err) == 0, "%s", err.msg);
    gg_writer_free(w); /* abandoned */
    size_t n;
    unsigned char *c = read_file(path, &n);
    CHECK(c && n == 8 && !memcmp(c, "precious", 8), "existing file damaged");
    free(c);
    unlink(path);
}

static void test_utf8(void) {
    CHECK(gg_utf8_invalid_at("plain ascii text here", 21) == (size_t)-1, "ascii");
    CHECK(gg_utf8_invalid_at("\xe2\x82\xac\xf0\x9f\x98\x80", 7) == (size_t)-1, "euro+emoji");
    CHECK(gg_utf8_invalid_at("ab\xc0\xaf", 4) == 2, "overlong");
    CHECK(gg_utf8_invalid_at("abcdefgh\xed\xa0\x80", 11) == 8, "surrogate");
    CHECK(gg_utf8_invalid_at("\xf4\x90\x80\x80", 4) == 0, "above U+10FFFF");
    CHECK(gg_utf8_invalid_at("\xe2\x82", 2) == 0, "truncated");
    CHECK(gg_utf8_invalid_at("x\x80", 2) == 1, "lone continuation");
}

static void rm_tree(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/sample.gg", tmpdir);
    unlink(p);
    rmdir(tmpdir);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_utf8);
    RUN(test_roundtrip);
    RUN(test_truncation_every_length);
    RUN(test_every_flipped_byte);
    RUN(test_crafted_damage);
    RUN(test_random_junk);
    RUN(test_writer_rejects);
    rm_tree();
    return check_done();
}
