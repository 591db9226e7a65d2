/* test_tokenizer.c — the tokenizer (models/tokenizer.h): parity with the
 * Hugging Face `tokenizers` library on tests/fixtures/tokenizers/reference.json
 * for llama2, llama3 and qwen3 (each skipped with a "# skip:" line when its
 * tokenizer.json is not found), and unit tests of the pieces: GPT-2
 * bytes_to_unicode, the merge loop on a hand-made BPE, byte_fallback, added
 * tokens with lstrip/rstrip/single_word, invalid UTF-8, NUL bytes, a 10 MB
 * line, decode errors, load errors, load time and encode throughput. */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "models/tok_internal.h"
#include "models/tokenizer.h"
#include "tests/check.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Finds the folder of tokenizer NAME: the fixtures, ../shared, or the npm download. */
static int find_tokenizer(const char *name, char *dir, size_t n) {
    const char *bases[3] = {check_fixtures(), "../shared/fixtures", NULL};
    for (int i = 0; i < 3; i++) {
        struct stat st;
        if (bases[i]) snprintf(dir, n, "%s/tokenizers/%s", bases[i], name);
        else snprintf(dir, n, "build/npm/tokenizers/%s", name);
        char f[1200];
        snprintf(f, sizeof f, "%s/tokenizer.json", dir);
        if (!stat(f, &st)) return 0;
    }
    return -1;
}

static json_t *load_reference(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/reference.json", check_fixtures());
    json_error_t je;
    json_t *r = json_load_file(path, 0, &je);
    if (!r) fprintf(stderr, "%s: %s\n", path, je.text);
    return r;
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    rewind(f);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

static int ids_equal(const int32_t *ids, size_t n, const json_t *ref) {
    if (!json_is_array(ref) || json_array_size(ref) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(ref, i)) != ids[i]) return 0;
    return 1;
}

static void parity(const char *name) {
    char dir[1024];
    if (find_tokenizer(name, dir, sizeof dir)) {
        printf("# skip: %s tokenizer not found (tests/fixtures/tokenizers/%s, ../shared/fixtures/tokenizers/%s, "
               "build/npm/tokenizers/%s)\n",
               name, name, name, name);
        return;
    }
    json_t *ref = load_reference();
    REQUIRE(ref != NULL, "reference.json");
    gg_tokenizer *t = NULL;
    gg_err err = {{0}};
    /* load time: the best of 3 loads (the machine may be busy) */
    double ms = 1e9;
    int rc = 0;
    for (int k = 0; k < 3 && !rc; k++) {
        if (t) gg_tokenizer_free(t);
        t = NULL;
        double t0 = now_ms();
        rc = gg_tokenizer_load_path(&t, dir, &err);
        double dt = now_ms() - t0;
        if (dt < ms) ms = dt;
    }
    CHECK(rc == 0, "%s", err.msg);
    if (rc) {
        json_decref(ref);
        return;
    }
    printf("# load %s: %.1f ms (best of 3)\n", name, ms);
    json_t *list = json_object_get(ref, name);
    size_t total = json_array_size(list), same = 0;
    for (size_t i = 0; i < total; i++) {
        json_t *e = json_array_get(list, i);
        const char *text = json_string_value(json_object_get(e, "text"));
        size_t tl = json_string_length(json_object_get(e, "text"));
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        char *dec = NULL;
        size_t dl = 0;
        int ok = 1;
        if (gg_tokenizer_encode(t, text, tl, 0, &a, &na, &err) || !ids_equal(a, na, json_object_get(e, "ids_no_special"))) {
            ok = 0;
            CHECK(0, "%s text %zu: ids without special tokens differ (%s)", name, i, err.msg);
        }
        if (gg_tokenizer_encode(t, text, tl, 1, &b, &nb, &err) || !ids_equal(b, nb, json_object_get(e, "ids_with_special"))) {
            ok = 0;
            CHECK(0, "%s text %zu: ids with special tokens differ (%s)", name, i, err.msg);
        }
        const char *want = json_string_value(json_object_get(e, "decoded"));
        size_t wl = json_string_length(json_object_get(e, "decoded"));
        if (b && (gg_tokenizer_decode(t, b, nb, 1, &dec, &dl, &err) || dl != wl || memcmp(dec, want, wl))) {
            ok = 0;
            CHECK(0, "%s text %zu: decoding differs: got \"%s\" want \"%s\" (%s)", name, i, dec ? dec : "", want,
                  err.msg);
        }
        same += ok;
        free(a);
        free(b);
        free(dec);
    }
    printf("# %s: %zu/%zu texts identical\n", name, same, total);
    CHECK(total > 0 && same == total, "%s: %zu/%zu", name, same, total);
    gg_tokenizer_free(t);
    json_decref(ref);
}

static void test_parity_llama2(void) { parity("llama2"); }
static void test_parity_llama3(void) { parity("llama3"); }
static void test_parity_qwen3(void) { parity("qwen3"); }

/* tokenizer_config.json: bos/eos (string or object), chat template. */
static void test_config(void) {
    char dir[1024];
    REQUIRE(find_tokenizer("llama2", dir, sizeof dir) == 0, "llama2 fixture");
    gg_tokenizer *t = NULL;
    gg_err err = {{0}};
    REQUIRE(gg_tokenizer_load_path(&t, dir, &err) == 0, "%s", err.msg);
    CHECK(gg_tokenizer_bos_id(t) == 1, "bos %d", gg_tokenizer_bos_id(t));
    CHECK(gg_tokenizer_eos_id(t) == 2, "eos %d", gg_tokenizer_eos_id(t));
    CHECK(gg_tokenizer_bos_token(t) && !strcmp(gg_tokenizer_bos_token(t), "<s>"), "bos token");
    CHECK(gg_tokenizer_is_special(t, 1) && !gg_tokenizer_is_special(t, 100), "special flags");
    CHECK(gg_tokenizer_vocab_size(t) == 32000, "vocab %zu", gg_tokenizer_vocab_size(t));
    CHECK(gg_tokenizer_find(t, "<0x0A>") == 13, "find <0x0A>");
    CHECK(gg_tokenizer_piece(t, 13) && !strcmp(gg_tokenizer_piece(t, 13), "<0x0A>"), "piece 13");
    CHECK(gg_tokenizer_piece(t, 32000) == NULL && gg_tokenizer_piece(t, -1) == NULL, "piece out of range");
    gg_tokenizer_free(t);

    const char *tj = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"<s>\":2,\"</s>\":3},\"merges\":[]}}";
    const char *cfg = "{\"bos_token\":{\"content\":\"<s>\",\"lstrip\":false},\"eos_token\":\"</s>\","
                      "\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},{\"name\":\"default\",\"template\":\"D\"}]}";
    REQUIRE(gg_tokenizer_load_json(&t, tj, strlen(tj), cfg, strlen(cfg), "mem", &err) == 0, "%s", err.msg);
    CHECK(gg_tokenizer_bos_id(t) == 2 && gg_tokenizer_eos_id(t) == 3, "bos/eos ids");
    CHECK(gg_tokenizer_chat_template(t) && !strcmp(gg_tokenizer_chat_template(t), "D"), "default template");
    gg_tokenizer_free(t);
    REQUIRE(gg_tokenizer_load_json(&t, tj, strlen(tj), NULL, 0, "mem", &err) == 0, "%s", err.msg);
    CHECK(gg_tokenizer_bos_id(t) == -1 && gg_tokenizer_chat_template(t) == NULL, "no config");
    gg_tokenizer_free(t);
}

static void test_bytes_to_unicode(void) {
    int seen[324] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tk_byte_to_cp[b];
        CHECK(cp < 324 && !seen[cp], "byte %d → %u", b, cp);
        if (cp < 324) seen[cp] = 1;
        CHECK(tk_cp_to_byte(cp) == b, "round trip of byte %d", b);
    }
    CHECK(tk_byte_to_cp[' '] == 0x120 && tk_byte_to_cp['\n'] == 0x10A && tk_byte_to_cp['A'] == 'A', "Ġ Ċ A");
    CHECK(tk_cp_to_byte(0x100 + 68) == -1 && tk_cp_to_byte('a') == 'a', "unmapped");
}

static gg_tokenizer *load_str(const char *json) {
    gg_tokenizer *t = NULL;
    gg_err err = {{0}};
    if (gg_tokenizer_load_json(&t, json, strlen(json), NULL, 0, "test", &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        return NULL;
    }
    return t;
}

static int enc_is(const gg_tokenizer *t, const char *text, size_t len, int add_special, const int32_t *want,
                  size_t nw) {
    int32_t *ids = NULL;
    size_t n = 0;
    gg_err err = {{0}};
    int ok = gg_tokenizer_encode(t, text, len, add_special, &ids, &n, &err) == 0 && n == nw &&
             (n == 0 || !memcmp(ids, want, n * sizeof *ids));
    if (!ok) {
        fprintf(stderr, "  encode \"%.*s\": got", (int)(len > 60 ? 60 : len), text);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, " %s\n", err.msg);
    }
    free(ids);
    return ok;
}

static int dec_is(const gg_tokenizer *t, const int32_t *ids, size_t n, int skip, const char *want) {
    char *s = NULL;
    size_t len = 0;
    gg_err err = {{0}};
    int ok = gg_tokenizer_decode(t, ids, n, skip, &s, &len, &err) == 0 && len == strlen(want) && !memcmp(s, want, len);
    if (!ok) fprintf(stderr, "  decode: got \"%s\" want \"%s\" %s\n", s ? s : "", want, err.msg);
    free(s);
    return ok;
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t)

/* The merge loop: ranks decide, not the order of pairs in the word. */
static void test_bpe_merges(void) {
    /* vocab: a b c ab bc abc; merges: "b c" (rank 0), "a b" (rank 1), "a bc" (rank 2) */
    const char *j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5,"
                    "\"d\":6},\"merges\":[\"b c\",[\"a\",\"b\"],\"a bc\"]}}";
    gg_tokenizer *t = load_str(j);
    REQUIRE(t != NULL, "load");
    CHECK(enc_is(t, "abc", 3, 0, IDS(5)), "abc → b+c first, then a+bc");
    CHECK(enc_is(t, "ab", 2, 0, IDS(3)), "ab");
    CHECK(enc_is(t, "abab", 4, 0, IDS(3, 3)), "abab");
    CHECK(enc_is(t, "cab", 3, 0, IDS(2, 3)), "cab");
    CHECK(enc_is(t, "abcd", 4, 0, IDS(5, 6)), "abcd");
    CHECK(enc_is(t, "xa", 2, 0, IDS(0)), "unknown char without unk is dropped");
    CHECK(enc_is(t, "", 0, 1, NULL, 0), "empty");
    CHECK(dec_is(t, IDS(5, 6, 0), 0, "abc d a"), "no decoder: pieces joined by spaces");
    gg_tokenizer_free(t);

    /* leftmost wins among equal ranks: "aaa" with merge "a a" → aa a */
    j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1},\"merges\":[\"a a\"]}}";
    t = load_str(j);
    REQUIRE(t != NULL, "load");
    CHECK(enc_is(t, "aaa", 3, 0, IDS(1, 0)), "aaa");
    CHECK(enc_is(t, "aaaa", 4, 0, IDS(1, 1)), "aaaa");
    gg_tokenizer_free(t);

    /* ignore_merges: a word in the vocabulary is emitted whole */
    j = "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"abc\":4},"
        "\"merges\":[\"a b\"]}}";
    t = load_str(j);
    REQUIRE(t != NULL, "load");
    CHECK(enc_is(t, "abc", 3, 0, IDS(4)), "ignore_merges: abc whole");
    CHECK(enc_is(t, "abcab", 5, 0, IDS(3, 2, 3)), "abcab merged");
    gg_tokenizer_free(t);

    /* unk and fuse_unk, continuing_subword_prefix / end_of_word_suffix */
    j = "{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"vocab\":{\"<unk>\":0,\"a\":1},"
        "\"merges\":[]}}";
    t = load_str(j);
    REQUIRE(t != NULL, "load");
    CHECK(enc_is(t, "axyza", 5, 0, IDS(1, 0, 1)), "fused unk");
    gg_tokenizer_free(t);
    j = "{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":false,\"vocab\":{\"<unk>\":0,\"a\":1},"
        "\"merges\":[]}}";
    t = load_str(j);
    REQUIRE(t != NULL, "load");
    CHECK(enc_is(t, "axya", 4, 0, IDS(1, 0, 0, 1)), "unfused unk");
    gg_tokenizer_free(t);
    j = "{\"model\":{\"type\":\"BPE\",\"continuing_subword_prefix\":\"##\",\"end_of_word_suffix\":\"</w>\","
        "\"vocab\":{\"a\":0,\"##b\":1,\"##c</w>\":2,\"a##b\":3,\"ab\":4,\"abc</w>\":5},\"merges\":[\"a ##b\",\"ab ##c</w>\"]},"
        "\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"},\"decoder\":{\"type\":\"BPEDecoder\",\"suffix\":\"</w>\"}}";
    t = load_str(j);
    REQUIRE(t != NULL, "load");
    CHECK(enc_is(t, "abc abc", 7, 0, IDS(5, 5)), "prefix/suffix merges");
    CHECK(dec_is(t, IDS(5, 5), 0, "abc abc"), "BPEDecoder");
    gg_tokenizer_free(t);
}

static void test_byte_fallback(void) {
    char j[8192];
    int n = snprintf(j, sizeof j,
                     "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
                     "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
                     "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":"
                     "\"\\u2581\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\","
                     "\"content\":\" \",\"start\":1,\"stop\":0}]},"
                     "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
                     "\"vocab\":{\"<unk>\":0,\"\\u2581\":1,\"h\":2,\"i\":3,\"\\u2581h\":4");
    for (int b = 0; b < 256; b++) n += snprintf(j + n, sizeof j - (size_t)n, ",\"<0x%02X>\":%d", b, 5 + b);
    snprintf(j + n, sizeof j - (size_t)n, "},\"merges\":[\"\\u2581 h\"]}}");
    gg_tokenizer *t = load_str(j);
    REQUIRE(t != NULL, "load");
    /* é = C3 A9 → <0xC3> <0xA9>; \n → <0x0A> */
    CHECK(enc_is(t, "hi é\n", 6, 0, IDS(4, 3, 1, 5 + 0xC3, 5 + 0xA9, 5 + 0x0A)), "byte fallback");
    CHECK(dec_is(t, IDS(4, 3, 1, 5 + 0xC3, 5 + 0xA9, 5 + 0x0A), 0, "hi é\n"), "decode bytes");
    /* an invalid byte run decodes to one U+FFFD per byte token */
    CHECK(dec_is(t, IDS(4, 5 + 0xC3, 5 + 0x41 - 0x41 + 0xC3, 3), 0, "h\xEF\xBF\xBD\xEF\xBF\xBDi"), "bad bytes");
    gg_tokenizer_free(t);
}

static void test_added_tokens(void) {
    const char *j =
        "{\"added_tokens\":["
        "{\"id\":10,\"content\":\"<L>\",\"special\":true,\"lstrip\":true,\"rstrip\":false,\"single_word\":false,\"normalized\":false},"
        "{\"id\":11,\"content\":\"<R>\",\"special\":true,\"lstrip\":false,\"rstrip\":true,\"single_word\":false,\"normalized\":false},"
        "{\"id\":12,\"content\":\"<LR>\",\"special\":false,\"lstrip\":true,\"rstrip\":true,\"single_word\":false,\"normalized\":false},"
        "{\"id\":13,\"content\":\"ab\",\"special\":false,\"lstrip\":false,\"rstrip\":false,\"single_word\":true,\"normalized\":false},"
        "{\"id\":14,\"content\":\"<L>x\",\"special\":false,\"lstrip\":false,\"rstrip\":false,\"single_word\":false,\"normalized\":false}],"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\" \":2,\"x\":3},\"merges\":[]},"
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<L>\",\"type_id\":0}},"
        "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"<R>\",\"type_id\":0}}],"
        "\"special_tokens\":{\"<L>\":{\"id\":\"<L>\",\"ids\":[10],\"tokens\":[\"<L>\"]},"
        "\"<R>\":{\"id\":\"<R>\",\"ids\":[11],\"tokens\":[\"<R>\"]}}}}";
    gg_tokenizer *t = load_str(j);
    REQUIRE(t != NULL, "load");
    CHECK(enc_is(t, "a  <L>b", 7, 0, IDS(0, 10, 1)), "lstrip eats the spaces before");
    CHECK(enc_is(t, "a<R>  b", 7, 0, IDS(0, 11, 1)), "rstrip eats the spaces after");
    CHECK(enc_is(t, "a <LR> b", 8, 0, IDS(0, 12, 1)), "both");
    CHECK(enc_is(t, "a ab b", 6, 0, IDS(0, 2, 13, 2, 1)), "single word matches");
    CHECK(enc_is(t, "aab", 3, 0, IDS(0, 0, 1)), "single word inside a word does not");
    CHECK(enc_is(t, "<L>xa", 5, 0, IDS(14, 0)), "longest match wins");
    CHECK(enc_is(t, "a", 1, 1, IDS(10, 0, 11)), "template");
    CHECK(enc_is(t, "", 0, 1, IDS(10, 11)), "template on empty");
    CHECK(gg_tokenizer_vocab_size(t) == 15, "vocab size %zu", gg_tokenizer_vocab_size(t));
    CHECK(gg_tokenizer_find(t, "<LR>") == 12 && gg_tokenizer_is_special(t, 10) && !gg_tokenizer_is_special(t, 12),
          "find / special");
    CHECK(dec_is(t, IDS(10, 0, 12, 11), 1, "a <LR>"), "skip special");
    CHECK(dec_is(t, IDS(10, 0, 12, 11), 0, "<L> a <LR> <R>"), "keep special");
    gg_tokenizer_free(t);
}

static void test_invalid_utf8_and_nul(void) {
    char dir[1024];
    REQUIRE(find_tokenizer("llama2", dir, sizeof dir) == 0, "llama2 fixture");
    gg_tokenizer *t = NULL;
    gg_err err = {{0}};
    REQUIRE(gg_tokenizer_load_path(&t, dir, &err) == 0, "%s", err.msg);
    int32_t fffd = gg_tokenizer_find(t, "\xEF\xBF\xBD");
    int32_t a = gg_tokenizer_find(t, "a"), sp = gg_tokenizer_find(t, "\xE2\x96\x81");
    /* "a\xFFa": one invalid byte → U+FFFD; a truncated 3-byte sequence
     * (E2 82) is one maximal subpart → one U+FFFD, as Rust's from_utf8_lossy */
    int32_t *ids = NULL, *ids2 = NULL;
    size_t n = 0, n2 = 0;
    REQUIRE(gg_tokenizer_encode(t, "a\xFF" "a", 3, 0, &ids, &n, &err) == 0, "%s", err.msg);
    REQUIRE(gg_tokenizer_encode(t, "a\xEF\xBF\xBD" "a", 5, 0, &ids2, &n2, &err) == 0, "%s", err.msg);
    CHECK(n == n2 && !memcmp(ids, ids2, n * sizeof *ids), "0xFF encodes as U+FFFD");
    free(ids);
    free(ids2);
    REQUIRE(gg_tokenizer_encode(t, "a\xE2\x82" "a", 4, 0, &ids, &n, &err) == 0, "%s", err.msg);
    REQUIRE(gg_tokenizer_encode(t, "a\xEF\xBF\xBD" "a", 5, 0, &ids2, &n2, &err) == 0, "%s", err.msg);
    CHECK(n == n2 && !memcmp(ids, ids2, n * sizeof *ids), "E2 82 is one U+FFFD");
    free(ids);
    free(ids2);
    REQUIRE(gg_tokenizer_encode(t, "\xC0\x80", 2, 0, &ids, &n, &err) == 0, "%s", err.msg);
    /* overlong: two invalid bytes → two U+FFFD (▁ then byte tokens or the FFFD token) */
    char *s = NULL;
    size_t sl = 0;
    REQUIRE(gg_tokenizer_decode(t, ids, n, 1, &s, &sl, &err) == 0, "%s", err.msg);
    CHECK(sl == 6 && !memcmp(s, "\xEF\xBF\xBD\xEF\xBF\xBD", 6), "C0 80 → two U+FFFD, got %zu bytes", sl);
    free(s);
    free(ids);
    (void)fffd;
    /* NUL is an ordinary character: byte fallback <0x00> */
    REQUIRE(gg_tokenizer_encode(t, "a\0a", 3, 0, &ids, &n, &err) == 0, "%s", err.msg);
    int32_t nul = gg_tokenizer_find(t, "<0x00>");
    int found = 0;
    for (size_t i = 0; i < n; i++) found |= ids[i] == nul;
    CHECK(found && n >= 3, "NUL → <0x00> (n=%zu)", n);
    REQUIRE(gg_tokenizer_decode(t, ids, n, 1, &s, &sl, &err) == 0, "%s", err.msg);
    CHECK(sl == 3 && !memcmp(s, "a\0a", 3), "NUL round trip");
    free(s);
    free(ids);
    (void)a;
    (void)sp;
    gg_tokenizer_free(t);
}

static void test_decode_errors(void) {
    char dir[1024];
    REQUIRE(find_tokenizer("llama2", dir, sizeof dir) == 0, "llama2 fixture");
    gg_tokenizer *t = NULL;
    gg_err err = {{0}};
    REQUIRE(gg_tokenizer_load_path(&t, dir, &err) == 0, "%s", err.msg);
    char *s = NULL;
    size_t n = 0;
    int32_t bad[] = {1, 400, 32000};
    CHECK(gg_tokenizer_decode(t, bad, 3, 0, &s, &n, &err) == -1 && s == NULL, "out of range");
    CHECK(strstr(err.msg, "32000") != NULL, "message names the id: %s", err.msg);
    int32_t neg[] = {-5};
    CHECK(gg_tokenizer_decode(t, neg, 1, 0, &s, &n, &err) == -1 && strstr(err.msg, "-5"), "negative: %s", err.msg);
    CHECK(gg_tokenizer_decode(t, NULL, 0, 0, &s, &n, &err) == 0 && s && n == 0 && s[0] == 0, "empty decode");
    free(s);
    gg_tokenizer_free(t);
}

static void test_load_errors(void) {
    gg_tokenizer *t = NULL;
    gg_err err = {{0}};
    const char *j = "{\"pre_tokenizer\":{\"type\":\"FancySplitter\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    CHECK(gg_tokenizer_load_json(&t, j, strlen(j), NULL, 0, "x.json", &err) == -1 && t == NULL, "unknown pre-tokenizer");
    CHECK(strstr(err.msg, "FancySplitter") && strstr(err.msg, "x.json"), "names it: %s", err.msg);
    j = "{\"normalizer\":{\"type\":\"Precompiled\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    CHECK(gg_tokenizer_load_json(&t, j, strlen(j), NULL, 0, "x.json", &err) == -1 && strstr(err.msg, "Precompiled"),
          "unknown normalizer: %s", err.msg);
    j = "{\"decoder\":{\"type\":\"CTC\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    CHECK(gg_tokenizer_load_json(&t, j, strlen(j), NULL, 0, "x.json", &err) == -1 && strstr(err.msg, "CTC"),
          "unknown decoder: %s", err.msg);
    j = "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}";
    CHECK(gg_tokenizer_load_json(&t, j, strlen(j), NULL, 0, "x.json", &err) == -1 && strstr(err.msg, "Unigram"),
          "unknown model: %s", err.msg);
    j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}";
    CHECK(gg_tokenizer_load_json(&t, j, strlen(j), NULL, 0, "x.json", &err) == -1 && strstr(err.msg, "\"b\""),
          "merge of unknown token: %s", err.msg);
    j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}";
    CHECK(gg_tokenizer_load_json(&t, j, strlen(j), NULL, 0, "x.json", &err) == -1 && strstr(err.msg, "byte"),
          "truncated JSON: %s", err.msg);
    j = "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    CHECK(gg_tokenizer_load_json(&t, j, strlen(j), NULL, 0, "x.json", &err) == -1 && strstr(err.msg, "regex"),
          "bad regex: %s", err.msg);
    j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":2},\"merges\":[]},\"post_processor\":{\"type\":"
        "\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\","
        "\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}}}";
    CHECK(gg_tokenizer_load_json(&t, j, strlen(j), NULL, 0, "x.json", &err) == -1 && strstr(err.msg, "id 1"),
          "template id without a token: %s", err.msg);
    CHECK(gg_tokenizer_load_path(&t, "/nonexistent/tok", &err) == -1 && strstr(err.msg, "/nonexistent/tok"),
          "missing path: %s", err.msg);
}

/* Split behaviours and other pre-tokenizers on a byte-level vocabulary. */

/* Load tokenizer.json text `json` and check that `text` encodes (no special
 * tokens) to want[0..n); `what` names the case in a failure. */
static void check_case(const char *json, size_t i, const char *what, const char *text, const int32_t *want,
                       size_t n) {
    gg_tokenizer *t = load_str(json);
    CHECK(t != NULL, "case %zu load", i);
    if (!t) return;
    CHECK(enc_is(t, text, strlen(text), 0, want, n), "case %zu: %s", i, what);
    gg_tokenizer_free(t);
}

static void test_pretokenizers(void) {
    /* vocab: every printable ASCII char as its own token (id = code) */
    char j[16384];
    int n = snprintf(j, sizeof j, "{\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int c = 33; c < 127; c++) {
        if (c == '"' || c == '\\') n += snprintf(j + n, sizeof j - (size_t)n, "%s\"\\%c\":%d", c > 33 ? "," : "", c, c);
        else n += snprintf(j + n, sizeof j - (size_t)n, "%s\"%c\":%d", c > 33 ? "," : "", c, c);
    }
    n += snprintf(j + n, sizeof j - (size_t)n, ",\"\\u2581\":1,\"ab\":2,\"\\u2581a\":3},\"merges\":[\"a b\",\"\\u2581 a\"]},");
    char full[20000];
    struct {
        const char *pretok, *text;
        int32_t want[16];
        size_t n;
    } cases[] = {
        /* Split " " Removed: "a b" → a, b */
        {"{\"type\":\"Split\",\"pattern\":{\"String\":\"b\"},\"behavior\":\"Removed\",\"invert\":false}", "abab", {'a', 'a'}, 2},
        {"{\"type\":\"Split\",\"pattern\":{\"String\":\"b\"},\"behavior\":\"MergedWithPrevious\",\"invert\":false}", "abab", {2, 2}, 2},
        {"{\"type\":\"Split\",\"pattern\":{\"String\":\"a\"},\"behavior\":\"MergedWithNext\",\"invert\":false}", "abab", {2, 2}, 2},
        {"{\"type\":\"Split\",\"pattern\":{\"String\":\"a\"},\"behavior\":\"Isolated\",\"invert\":false}", "abab", {'a', 'b', 'a', 'b'}, 4},
        {"{\"type\":\"Split\",\"pattern\":{\"Regex\":\"b+\"},\"behavior\":\"Contiguous\",\"invert\":true}", "abba", {'a', 'b', 'b', 'a'}, 4},
        {"{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"always\",\"split\":true}", "ab ab", {1, 2, 1, 2}, 4},
        {"{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"never\",\"split\":false}", "ab ab", {2, 1, 2}, 3},
        {"{\"type\":\"Whitespace\"}", "ab, ab", {2, ',', 2}, 3},
        {"{\"type\":\"Digits\",\"individual_digits\":true}", "a12", {'a', '1', '2'}, 3},
        {"{\"type\":\"Punctuation\"}", "a!b", {'a', '!', 'b'}, 3},
        {"{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},{\"type\":\"Digits\",\"individual_digits\":false}]}",
         "ab 12", {2, '1', '2'}, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(full, sizeof full, "%s\"pre_tokenizer\":%s}", j, cases[i].pretok);
        check_case(full, i, cases[i].pretok, cases[i].text, cases[i].want, cases[i].n);
    }
}

/* Normalizers on a character vocabulary. */
static void test_normalizers(void) {
    const char *base = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"e\":1,\"\\u00e9\":2,\"\\u0301\":3,\"fi\":4,"
                       "\"f\":5,\"i\":6,\"x\":7,\"\\uFB01\":8},\"merges\":[\"f i\"]},\"normalizer\":";
    struct {
        const char *norm, *text;
        int32_t want[8];
        size_t n;
    } cases[] = {
        {"{\"type\":\"NFC\"}", "e\xCC\x81", {2}, 1},
        {"{\"type\":\"NFD\"}", "\xC3\xA9", {1, 3}, 2},
        {"{\"type\":\"NFKC\"}", "\xEF\xAC\x81", {4}, 1},
        {"{\"type\":\"NFKD\"}", "\xC3\xA9\xEF\xAC\x81", {1, 3, 4}, 3},
        {"{\"type\":\"Lowercase\"}", "AE\xC3\x89", {0, 1, 2}, 3},
        {"{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}", "  ax \t", {0, 7}, 2},
        {"{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"[0-9]+\"},\"content\":\"x\"}", "a123a", {0, 7, 0}, 3},
        {"{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"Lowercase\"},{\"type\":\"Prepend\",\"prepend\":\"x\"}]}",
         "A\xEF\xAC\x81", {7, 0, 4}, 3},
    };
    char full[4096];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(full, sizeof full, "%s%s}", base, cases[i].norm);
        check_case(full, i, cases[i].norm, cases[i].text, cases[i].want, cases[i].n);
    }
}

/* A 10 MB single line must finish; report its time. Throughput of the corpus
 * repeated to ~10 MB (llama3 if found, else llama2). */
static void test_big_inputs(void) {
    char dir[1024];
    const char *name = "llama3";
    if (find_tokenizer(name, dir, sizeof dir)) name = "llama2";
    REQUIRE(find_tokenizer(name, dir, sizeof dir) == 0, "no tokenizer");
    gg_tokenizer *t = NULL;
    gg_err err = {{0}};
    REQUIRE(gg_tokenizer_load_path(&t, dir, &err) == 0, "%s", err.msg);
    size_t cn = 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/corpus.txt", check_fixtures());
    char *corpus = read_all(path, &cn);
    REQUIRE(corpus != NULL && cn > 0, "corpus");
    size_t big = UNDER_SANITIZER ? (2u << 20) : (10u << 20);
    char *text = malloc(big);
    REQUIRE(text != NULL, "malloc");
    for (size_t i = 0; i < big; i++) text[i] = corpus[i % cn];
    int32_t *ids = NULL;
    size_t n = 0;
    double t0 = now_ms();
    int rc = gg_tokenizer_encode(t, text, big, 0, &ids, &n, &err);
    double ms = now_ms() - t0;
    CHECK(rc == 0, "%s", err.msg);
    printf("# encode %s: %.1f MB corpus, %zu tokens in %.0f ms: %.2f M tokens/s\n", name, big / 1048576.0, n, ms,
           n / (ms / 1e3) / 1e6);
    char *back = NULL;
    size_t bl = 0;
    t0 = now_ms();
    CHECK(gg_tokenizer_decode(t, ids, n, 1, &back, &bl, &err) == 0, "%s", err.msg);
    printf("# decode %s: %.0f ms\n", name, now_ms() - t0);
    /* byte-level BPE gives the text back exactly (llama2 would not: the
     * corpus holds "<s>", a special token there, and Prepend adds "▁") */
    if (!strcmp(name, "llama3")) CHECK(bl == big && back && !memcmp(back, text, big), "round trip of the corpus");
    free(back);
    free(ids);

    /* one line without any newline or space: a single word for the pre-tokenizer */
    for (size_t i = 0; i < big; i++) text[i] = "abcdefghij"[i % 10];
    t0 = now_ms();
    rc = gg_tokenizer_encode(t, text, big, 0, &ids, &n, &err);
    ms = now_ms() - t0;
    CHECK(rc == 0 && n > 0, "%s", err.msg);
    printf("# encode %s: %.1f MB single word line, %zu tokens in %.0f ms\n", name, big / 1048576.0, n, ms);
    free(ids);
    /* a line of spaces (the \s+(?!\S) alternative backtracks; needs a big JIT stack) */
    size_t sp = big / 4;
    memset(text, ' ', sp);
    t0 = now_ms();
    rc = gg_tokenizer_encode(t, text, sp, 0, &ids, &n, &err);
    ms = now_ms() - t0;
    CHECK(rc == 0 && n > 0, "%s", err.msg);
    printf("# encode %s: %.1f MB of spaces, %zu tokens in %.0f ms\n", name, sp / 1048576.0, n, ms);
    free(ids);
    free(text);
    free(corpus);
    gg_tokenizer_free(t);
}

/* A normalized added token is matched, in its normalized form, against
 * the normalized text (HF's split_normalized_trie). */
static void test_normalized_added(void) {
    const char *j = "{\"normalizer\":{\"type\":\"Lowercase\"},\"added_tokens\":["
                    "{\"id\":3,\"content\":\"HeLLo\",\"special\":false,\"lstrip\":false,\"rstrip\":false,"
                    "\"single_word\":false,\"normalized\":true},"
                    "{\"id\":4,\"content\":\"AB\",\"special\":true,\"lstrip\":false,\"rstrip\":false,"
                    "\"single_word\":false,\"normalized\":false}],"
                    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"x\":2},\"merges\":[]}}";
    gg_tokenizer *t = load_str(j);
    REQUIRE(t != NULL, "load");
    CHECK(enc_is(t, "xHELLOx", 7, 0, IDS(2, 3, 2)), "normalized token matched after lowercasing");
    CHECK(enc_is(t, "ABab", 4, 0, IDS(4, 0, 1)), "raw token matched before normalizing");
    CHECK(enc_is(t, "aB", 2, 0, IDS(0, 1)), "raw token is case-sensitive");
    /* HF keeps it under its normalized form (id_to_token, decode) but finds it by its content */
    CHECK(gg_tokenizer_piece(t, 3) && !strcmp(gg_tokenizer_piece(t, 3), "hello"), "piece %s", gg_tokenizer_piece(t, 3));
    CHECK(gg_tokenizer_find(t, "HeLLo") == 3 && gg_tokenizer_find(t, "hello") == -1, "find by content");
    CHECK(dec_is(t, IDS(2, 3), 0, "x hello"), "decode");
    gg_tokenizer_free(t);
}

typedef struct thr_arg {
    const gg_tokenizer *t;
    const char *text;
    size_t len;
    const int32_t *want;
    size_t nwant;
    int ok;
} thr_arg;

static void *thr_main(void *p) {
    thr_arg *a = p;
    a->ok = 1;
    for (int k = 0; k < 20 && a->ok; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        gg_err err;
        char *s = NULL;
        size_t sl = 0;
        if (gg_tokenizer_encode(a->t, a->text, a->len, 1, &ids, &n, &err) || n != a->nwant ||
            memcmp(ids, a->want, n * sizeof *ids) || gg_tokenizer_decode(a->t, ids, n, 0, &s, &sl, &err))
            a->ok = 0;
        free(ids);
        free(s);
    }
    return NULL;
}

/* Encode/decode from several threads at once gives the same ids. */
static void test_threads(void) {
    char dir[1024];
    REQUIRE(find_tokenizer("llama2", dir, sizeof dir) == 0, "llama2 fixture");
    gg_tokenizer *t = NULL;
    gg_err err = {{0}};
    REQUIRE(gg_tokenizer_load_path(&t, dir, &err) == 0, "%s", err.msg);
    size_t cn = 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/corpus.txt", check_fixtures());
    char *corpus = read_all(path, &cn);
    int32_t *want = NULL;
    size_t nw = 0;
    if (!corpus || gg_tokenizer_encode(t, corpus, cn, 1, &want, &nw, &err)) {
        CHECK(0, "corpus: %s", err.msg);
    } else {
        pthread_t th[4];
        thr_arg args[4];
        for (int i = 0; i < 4; i++) {
            args[i] = (thr_arg){t, corpus, cn, want, nw, 0};
            CHECK(pthread_create(&th[i], NULL, thr_main, &args[i]) == 0, "thread %d", i);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            CHECK(args[i].ok, "thread %d got other ids", i);
        }
    }
    free(want);
    free(corpus);
    gg_tokenizer_free(t);
}

/* From a .gg file's metadata (tokenizer.json, tokenizer.config_json). */
static void test_load_gg(void) {
    const char *tj = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"<s>\":3},\"merges\":[\"a b\"]},"
                     "\"added_tokens\":[{\"id\":3,\"content\":\"<s>\",\"special\":true,\"lstrip\":false,"
                     "\"rstrip\":false,\"single_word\":false,\"normalized\":false}]}";
    const char *cfg = "{\"bos_token\":\"<s>\",\"chat_template\":\"{{ x }}\"}";
    char path[] = "/tmp/gg_test_tokenizer_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp");
    close(fd);
    gg_err err = {{0}};
    gg_writer *w = gg_writer_new();
    REQUIRE(w != NULL, "writer");
    int ok = gg_writer_set_str(w, "tokenizer.json", tj, strlen(tj), &err) == 0 &&
             gg_writer_set_str(w, "tokenizer.config_json", cfg, strlen(cfg), &err) == 0 &&
             gg_writer_begin(w, path, 0, &err) == 0 && gg_writer_finish(w, &err) == 0;
    gg_writer_free(w);
    CHECK(ok, "write .gg: %s", err.msg);
    gg_file *f = NULL;
    if (ok && gg_file_open(&f, path, 0, &err) == 0) {
        gg_tokenizer *t = NULL;
        CHECK(gg_tokenizer_load_gg(&t, f, &err) == 0, "%s", err.msg);
        if (t) {
            CHECK(enc_is(t, "ab<s>a", 6, 0, IDS(2, 3, 0)), "encode");
            CHECK(gg_tokenizer_bos_id(t) == 3, "bos from config");
            CHECK(gg_tokenizer_chat_template(t) && !strcmp(gg_tokenizer_chat_template(t), "{{ x }}"), "template");
            gg_tokenizer_free(t);
        }
        gg_file_close(f);
    } else {
        CHECK(0, "open .gg: %s", err.msg);
    }
    unlink(path);
}

int main(void) {
    RUN(test_parity_llama2);
    RUN(test_parity_llama3);
    RUN(test_parity_qwen3);
    RUN(test_config);
    RUN(test_bytes_to_unicode);
    RUN(test_bpe_merges);
    RUN(test_byte_fallback);
    RUN(test_added_tokens);
    RUN(test_invalid_utf8_and_nul);
    RUN(test_decode_errors);
    RUN(test_load_errors);
    RUN(test_pretokenizers);
    RUN(test_normalizers);
    RUN(test_normalized_added);
    RUN(test_load_gg);
    RUN(test_threads);
    RUN(test_big_inputs);
    return check_done();
}
