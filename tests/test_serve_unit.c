/* test_serve_unit.c — the socket-free parts of ggserve (serve/util.c,
 * serve/openai.c's request parsing): the constant-time key compare and
 * Bearer parsing, adapter names and path confinement (no traversal, no
 * symlink out), UTF-8 boundaries, the stop-string filter (a stop string
 * split across pieces is never emitted, nor half a character), the
 * detokeniser's pieces (whole characters; they concatenate to the decoded
 * text), error objects, and request validation (status, param, code). */
#define GG_SERVE_INTERNAL
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/chat.h"
#include "serve/server.h"
#include "tests/check.h"
#include "tests/serve_fake.h"

static void test_key_equal(void) {
    CHECK(gg_srv_key_equal("secret", 6, "secret"), "equal");
    CHECK(!gg_srv_key_equal("secreT", 6, "secret"), "differs");
    CHECK(!gg_srv_key_equal("secre", 5, "secret"), "prefix");
    CHECK(!gg_srv_key_equal("secret1", 7, "secret"), "longer");
    CHECK(!gg_srv_key_equal("", 0, "secret"), "empty");
    CHECK(!gg_srv_key_equal("secret", 6, ""), "empty want");
    size_t n = 0;
    const char *k = gg_srv_bearer("Bearer abc ", &n);
    CHECK(k && n == 3 && !strncmp(k, "abc", 3), "bearer");
    k = gg_srv_bearer("bearer\txyz", &n);
    CHECK(k && n == 3, "case-insensitive scheme");
    CHECK(!gg_srv_bearer("Basic abc", &n), "basic");
    CHECK(!gg_srv_bearer("Bearer", &n), "no key");
    CHECK(!gg_srv_bearer("Bearerabc", &n), "no space");
    CHECK(!gg_srv_bearer(NULL, &n), "no header");
}

static void test_names(void) {
    CHECK(gg_srv_name_ok("sql-v2.1_a"), "ok");
    CHECK(!gg_srv_name_ok(""), "empty");
    CHECK(!gg_srv_name_ok(".hidden"), "dot");
    CHECK(!gg_srv_name_ok("a/b"), "slash");
    CHECK(!gg_srv_name_ok("a b"), "space");
    char l[80];
    memset(l, 'a', 65);
    l[65] = 0;
    CHECK(!gg_srv_name_ok(l), "too long");
}

static void test_confine(void) {
    char dir[] = "/tmp/gg_test_serve_XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/ad", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/ad/x.gg", dir);
    FILE *f = fopen(p, "w");
    REQUIRE(f, "create");
    fclose(f);
    snprintf(p, sizeof p, "%s/ad/sub", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/outside.gg", dir);
    f = fopen(p, "w");
    fclose(f);
    char lnk[PATH_MAX + 64];
    snprintf(lnk, sizeof lnk, "%s/ad/evil", dir);
    CHECK(symlink(p, lnk) == 0, "symlink");
    snprintf(p, sizeof p, "%s/ad", dir);
    char *out = NULL;
    gg_err err;
    CHECK(gg_srv_confine(p, "x.gg", &out, &err) == 0 && out && strstr(out, "/ad/x.gg"), "inside: %s",
          out ? out : err.msg);
    free(out);
    CHECK(gg_srv_confine(p, "sub", &out, &err) == 0, "a folder (PEFT) inside");
    free(out);
    CHECK(gg_srv_confine(p, "./sub/../x.gg", &out, &err) == -1 && strstr(err.msg, ".."), "dot-dot: %s", err.msg);
    CHECK(gg_srv_confine(p, "../outside.gg", &out, &err) == -1, "escape");
    CHECK(gg_srv_confine(p, "/etc/passwd", &out, &err) == -1 && strstr(err.msg, "relative"), "absolute");
    CHECK(gg_srv_confine(p, "evil", &out, &err) == -1 && strstr(err.msg, "outside"), "symlink out: %s", err.msg);
    CHECK(gg_srv_confine(p, "nope.gg", &out, &err) == -1 && strstr(err.msg, "no such"), "missing");
    CHECK(gg_srv_confine(p, "", &out, &err) == -1, "empty");
    CHECK(gg_srv_confine(NULL, "x.gg", &out, &err) == -1 && strstr(err.msg, "adapter-dir"), "no dir");
    CHECK(gg_srv_confine(p, ".", &out, &err) == -1, "the dir itself");
    unlink(lnk);
    snprintf(p, sizeof p, "%s/ad/x.gg", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/ad/sub", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/ad", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/outside.gg", dir);
    unlink(p);
    rmdir(dir);
}

static void test_utf8(void) {
    const char *e = "caf\xC3\xA9";
    CHECK(gg_utf8_complete(e, 5) == 5, "whole");
    CHECK(gg_utf8_complete(e, 4) == 3, "cut 2-byte");
    const char *smile = "a\xF0\x9F\x99\x82";
    for (size_t n = 2; n < 5; n++) CHECK(gg_utf8_complete(smile, n) == 1, "cut 4-byte at %zu", n);
    CHECK(gg_utf8_complete(smile, 5) == 5, "whole 4-byte");
    CHECK(gg_utf8_complete("abc", 3) == 3, "ascii");
    CHECK(gg_utf8_complete("", 0) == 0, "empty");
    CHECK(gg_utf8_valid(smile, 5) && !gg_utf8_valid(smile, 4) && !gg_utf8_valid("\xC0\x80", 2), "valid");
    CHECK(!gg_utf8_valid("\xED\xA0\x80", 3), "surrogate");
}

/* Feed pieces, return everything emitted (and the hit flag). */
static char *run_stop(const char *const *stops, int ns, const char *const *pieces, int np, int *hit, int *split) {
    gg_stopper st = {0};
    for (int i = 0; i < ns; i++) gg_stopper_add(&st, stops[i]);
    gg_sbuf all = {0};
    gg_sbuf_adds(&all, "");
    *split = 0;
    for (int i = 0; i < np; i++) {
        gg_sbuf out = {0};
        gg_stopper_feed(&st, pieces[i], strlen(pieces[i]), 0, &out);
        if (out.n && !gg_utf8_valid(out.p, out.n)) *split = 1;
        gg_sbuf_add(&all, out.p ? out.p : "", out.n);
        gg_sbuf_free(&out);
    }
    gg_sbuf out = {0};
    gg_stopper_feed(&st, "", 0, 1, &out);
    gg_sbuf_add(&all, out.p ? out.p : "", out.n);
    gg_sbuf_free(&out);
    *hit = st.hit;
    gg_stopper_free(&st);
    return all.p;
}

static void test_stop(void) {
    int hit, split;
    const char *s1[] = {"STOP"};
    const char *p1[] = {"ab", "cST", "OPxyz"};
    char *r = run_stop(s1, 1, p1, 3, &hit, &split);
    CHECK(!strcmp(r, "abc") && hit, "split stop: '%s' hit %d", r, hit);
    free(r);
    const char *p2[] = {"ST", "Ox", "yz"};
    r = run_stop(s1, 1, p2, 3, &hit, &split);
    CHECK(!strcmp(r, "STOxyz") && !hit, "false start released: '%s'", r);
    free(r);
    const char *s3[] = {"\n\n", "###"};
    const char *p3[] = {"one\n", "two#", "#", "# three"};
    r = run_stop(s3, 2, p3, 4, &hit, &split);
    CHECK(!strcmp(r, "one\ntwo") && hit, "earliest of two: '%s'", r);
    free(r);
    /* Held-back text never ends in half a character. */
    const char *s4[] = {"xyz"};
    const char *p4[] = {"caf\xC3", "\xA9 \xF0\x9F", "\x99\x82 ok"};
    r = run_stop(s4, 1, p4, 3, &hit, &split);
    CHECK(!strcmp(r, "caf\xC3\xA9 \xF0\x9F\x99\x82 ok") && !hit && !split, "utf-8: '%s' split %d", r, split);
    free(r);
    /* A stop string at the very start. */
    const char *p5[] = {"STOP now"};
    r = run_stop(s1, 1, p5, 1, &hit, &split);
    CHECK(!strcmp(r, "") && hit, "at start: '%s'", r);
    free(r);
    gg_stopper st = {0};
    CHECK(gg_stopper_add(&st, "") == -1, "empty stop refused");
    for (int i = 0; i < GG_MAX_STOPS; i++) gg_stopper_add(&st, "a");
    CHECK(gg_stopper_add(&st, "b") == -1, "too many");
    gg_stopper_free(&st);
}

static gg_tokenizer *llama2_tok(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/tokenizers/llama2", check_fixtures());
    gg_tokenizer *t = NULL;
    gg_err err;
    if (gg_tokenizer_load_path(&t, p, &err)) fprintf(stderr, "%s\n", err.msg);
    return t;
}

static void test_detok(void) {
    gg_tokenizer *t = llama2_tok();
    REQUIRE(t, "tokenizer");
    const char *text = "Hello wörld \xF0\x9F\x99\x82 ok 日本 \xF0\x9F\xA6\x9C ꙮ";
    int32_t *ids;
    size_t n;
    gg_err err;
    REQUIRE(gg_tokenizer_encode(t, text, strlen(text), 1, &ids, &n, &err) == 0, "encode");
    gg_detok d;
    REQUIRE(gg_detok_init(&d, t, NULL, 0) == 0, "init");
    gg_sbuf all = {0};
    gg_sbuf_adds(&all, "");
    int empties = 0;
    for (size_t i = 0; i < n; i++) {
        char *add;
        size_t al;
        REQUIRE(gg_detok_push(&d, ids[i], &add, &al, &err) == 0, "push");
        CHECK(gg_utf8_valid(add, al), "piece %zu not whole characters", i);
        empties += al == 0;
        gg_sbuf_add(&all, add, al);
        free(add);
    }
    char *full;
    size_t fl;
    REQUIRE(gg_tokenizer_decode(t, ids, n, 0, &full, &fl, &err) == 0, "decode");
    CHECK(all.n == fl && !memcmp(all.p, full, fl), "pieces '%s' vs decode '%s'", all.p, full);
    CHECK(empties >= 3, "the emoji's byte tokens: %d empty pieces", empties);
    free(full);
    gg_sbuf_free(&all);
    gg_detok_free(&d);
    /* After a context (a prompt not echoed) the first piece keeps its space. */
    REQUIRE(gg_detok_init(&d, t, ids, 2) == 0, "init ctx");
    char *add;
    size_t al;
    REQUIRE(gg_detok_push(&d, ids[2], &add, &al, &err) == 0, "push");
    CHECK(add[0] == ' ', "leading space kept: '%s'", add);
    free(add);
    gg_detok_free(&d);
    char *pc = gg_detok_piece(t, ids[1], ids[2]);
    CHECK(pc && pc[0] == ' ', "piece in context: '%s'", pc ? pc : "(null)");
    free(pc);
    free(ids);
    gg_tokenizer_free(t);
}

static void test_error_json(void) {
    char *s = gg_srv_error_json("bad \"thing\"", "invalid_request_error", "prompt", NULL);
    json_t *o = json_loads(s, 0, NULL);
    json_t *e = json_object_get(o, "error");
    CHECK(e && !strcmp(json_string_value(json_object_get(e, "message")), "bad \"thing\"") &&
              !strcmp(json_string_value(json_object_get(e, "param")), "prompt") &&
              json_is_null(json_object_get(e, "code")),
          "%s", s);
    json_decref(o);
    free(s);
    s = gg_srv_error_json("\xFF bytes", "x", NULL, NULL);
    o = s ? json_loads(s, 0, NULL) : NULL;
    CHECK(o != NULL, "non-UTF-8 message: %s", s ? s : "(null)");
    json_decref(o);
    free(s);
}

/* ---- request parsing against a server with no sockets and no scheduler ---- */

/* Parse body; expect status (0: success) and, on error, param/code. */
static void expect(gg_srv *s, int chat, const char *body, int want, const char *param, const char *code) {
    int status = 0;
    char *ej = NULL;
    gg_job *j = gg_oa_parse(s, chat, body, strlen(body), &status, &ej);
    if (!want) {
        CHECK(j != NULL, "%s: %s", body, ej ? ej : "");
        if (j) gg_job_release(j);
        free(ej);
        return;
    }
    CHECK(!j && status == want, "%s: status %d, want %d", body, status, want);
    if (j) gg_job_release(j);
    json_t *o = ej ? json_loads(ej, 0, NULL) : NULL;
    json_t *e = json_object_get(o, "error");
    CHECK(e && json_is_string(json_object_get(e, "message")) && json_is_string(json_object_get(e, "type")),
          "error object: %s", ej ? ej : "(null)");
    if (param) {
        json_t *p = json_object_get(e, "param");
        CHECK(json_is_string(p) && !strcmp(json_string_value(p), param), "%s: param %s", body, ej);
    }
    if (code) {
        json_t *c = json_object_get(e, "code");
        CHECK(json_is_string(c) && !strcmp(json_string_value(c), code), "%s: code %s", body, ej);
    }
    json_decref(o);
    free(ej);
}

static void test_parse(void) {
    gg_tokenizer *t = llama2_tok();
    REQUIRE(t, "tokenizer");
    gg_srv *s = gg_test_fake_srv(t);
    expect(s, 0, "{\"prompt\":\"hi\"}", 0, NULL, NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"model\":\"sql\"}", 0, NULL, NULL);
    expect(s, 0, "{\"prompt\":[1,2,3]}", 0, NULL, NULL);
    expect(s, 0, "{\"prompt\":[[1,2],[3]],\"max_tokens\":1,\"echo\":true,\"logprobs\":1}", 0, NULL, NULL);
    expect(s, 0, "{\"prompt\":[\"a\",\"b\"],\"stop\":[\"x\",\"y\"]}", 0, NULL, NULL);
    expect(s, 0, "{\"prompt\":[1,2],\"max_tokens\":0,\"echo\":true}", 0, NULL, NULL);
    expect(s, 0, "{\"prompt\":\"hi\"", 400, NULL, NULL);
    expect(s, 0, "[1]", 400, NULL, NULL);
    expect(s, 0, "{\"prompt\":5}", 400, "prompt", NULL);
    expect(s, 0, "{\"prompt\":[]}", 400, "prompt", NULL);
    expect(s, 0, "{\"prompt\":[1,\"a\"]}", 400, "prompt", NULL);
    expect(s, 0, "{\"prompt\":[1,32000]}", 400, "prompt", NULL);
    expect(s, 0, "{\"prompt\":[1,-1]}", 400, "prompt", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"model\":\"nope\"}", 404, "model", "model_not_found");
    expect(s, 0, "{\"prompt\":\"hi\",\"model\":7}", 400, "model", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"max_tokens\":64}", 400, "max_tokens", "context_length_exceeded");
    expect(s, 0, "{\"prompt\":\"hi\",\"max_tokens\":-1}", 400, "max_tokens", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"max_tokens\":\"5\"}", 400, "max_tokens", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"max_tokens\":0}", 400, "max_tokens", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"n\":2}", 400, "n", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"temperature\":\"hot\"}", 400, NULL, NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"temperature\":3}", 400, "temperature", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"top_p\":0}", 400, "top_p", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"stream\":1}", 400, "stream", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"stop\":[\"\"]}", 400, "stop", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"stop\":3}", 400, "stop", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"logprobs\":21}", 400, "logprobs", NULL);
    expect(s, 0, "{\"prompt\":\"hi\",\"seed\":1.5}", 400, "seed", NULL);
    /* a prompt as long as the context leaves no room for a token */
    char big[2048] = "{\"prompt\":[";
    for (int i = 0; i < 64; i++) strcat(big, i ? ",1" : "1");
    strcat(big, "]}");
    expect(s, 0, big, 400, "prompt", "context_length_exceeded");
    /* chat */
    expect(s, 1, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0, NULL, NULL);
    expect(s, 1, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
                 "\"logprobs\":true,\"top_logprobs\":3,\"stream\":true}",
           0, NULL, NULL);
    expect(s, 1, "{\"messages\":[]}", 400, "messages", NULL);
    expect(s, 1, "{\"messages\":\"hi\"}", 400, "messages", NULL);
    expect(s, 1, "{\"messages\":[{\"content\":\"hi\"}]}", 400, "messages", NULL);
    expect(s, 1, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages", NULL);
    expect(s, 1, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_logprobs\":2}", 400, "top_logprobs",
           NULL);
    /* parsed values */
    int status;
    char *ej = NULL;
    const char *b = "{\"prompt\":[[1,2],[3,4,5]],\"max_tokens\":3,\"temperature\":0,\"seed\":9,\"stop\":\"x\","
                    "\"echo\":true,\"logprobs\":2,\"model\":\"sql\",\"top_k\":5,\"frequency_penalty\":0.5,"
                    "\"presence_penalty\":-0.25}";
    gg_job *j = gg_oa_parse(s, 0, b, strlen(b), &status, &ej);
    REQUIRE(j, "%s", ej ? ej : "");
    CHECK(j->n_choices == 2 && j->ch[1].n_prompt == 3 && j->max_tokens == 3 && j->sp.temp == 0 && j->sp.seed == 9 &&
              j->echo && j->logprobs && j->n_top == 2 && j->adapter == 3 && j->sp.top_k == 5 &&
              j->ch[0].st.n == 1 && !strcmp(j->model, "sql") && j->sp.freq_penalty == 0.5f &&
              j->sp.presence_penalty == -0.25f,
          "parsed fields");
    gg_job_release(j);
    b = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    j = gg_oa_parse(s, 1, b, strlen(b), &status, &ej);
    REQUIRE(j, "chat");
    CHECK(j->max_tokens == 64 - (int64_t)j->ch[0].n_prompt, "chat default max_tokens: the rest of the context");
    gg_job_release(j);
    free(s->model_name);
    free(s->chat_template);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->met.mu);
    free(s);
    gg_tokenizer_free(t);
}

int main(void) {
    RUN(test_key_equal);
    RUN(test_names);
    RUN(test_confine);
    RUN(test_utf8);
    RUN(test_stop);
    RUN(test_detok);
    RUN(test_error_json);
    RUN(test_parse);
    return check_done();
}
