/* test_data.c — the training-data pipeline (models/data.h): each JSONL
 * format's ids and labels checked exactly against tokenizer / chat-template
 * calls made here (llama2 tokenizer fixture), train_on_inputs, EOS rules,
 * truncation and no-target counts, line errors naming PATH:LINE, skip_bad,
 * auto detection and mixed formats, rollback on error, the split, the debug
 * view, and the batcher: flat layout, positions, k_lo, shifted targets,
 * packing bounds, per-epoch permutations, peeking, and resuming. */
#include "models/data.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/chat.h"
#include "tests/check.h"
#include "tests/rng.h"

static gg_tokenizer *tok;
static char tmpdir[] = "/tmp/gg_test_data_XXXXXX";
static char made[64][1100];
static size_t n_made;

/* Write tmpdir/NAME with text; the path goes into path. */
static void write_file(const char *name, const char *text, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    for (size_t i = 0; i < n_made; i++)
        if (!strcmp(made[i], path)) return;
    if (n_made < 64) snprintf(made[n_made++], sizeof made[0], "%s", path);
}

typedef struct vec {
    int32_t *v;
    size_t n;
} vec;

static void vec_add(vec *a, const int32_t *x, size_t n) {
    a->v = realloc(a->v, (a->n + n + 1) * sizeof *a->v);
    if (!a->v) exit(2);
    memcpy(a->v + a->n, x, n * sizeof *x);
    a->n += n;
}

static void vec_add1(vec *a, int32_t x) { vec_add(a, &x, 1); }

/* Append encode(text) to ids, and to labels the ids (trained) or -100. */
static size_t enc_add(vec *ids, vec *labels, const char *text, int special, int trained) {
    int32_t *x;
    size_t n;
    gg_err e;
    if (gg_tokenizer_encode(tok, text, strlen(text), special, &x, &n, &e)) {
        fprintf(stderr, "encode: %s\n", e.msg);
        exit(2);
    }
    vec_add(ids, x, n);
    for (size_t i = 0; i < n; i++) vec_add1(labels, trained ? x[i] : -100);
    free(x);
    return n;
}

static int sample_is(const gg_dataset *d, size_t i, const vec *ids, const vec *labels) {
    if (i >= d->n_samples || d->s[i].n != ids->n) return 0;
    return !memcmp(gg_data_ids(d, i), ids->v, ids->n * 4) && !memcmp(gg_data_labels(d, i), labels->v, ids->n * 4);
}

static void dump_sample(const gg_dataset *d, size_t i, const vec *ids, const vec *labels) {
    if (i >= d->n_samples) return;
    fprintf(stderr, "  got  n=%u:", d->s[i].n);
    for (uint32_t k = 0; k < d->s[i].n; k++) fprintf(stderr, " %d/%d", gg_data_ids(d, i)[k], gg_data_labels(d, i)[k]);
    fprintf(stderr, "\n  want n=%zu:", ids->n);
    for (size_t k = 0; k < ids->n; k++) fprintf(stderr, " %d/%d", ids->v[k], labels->v[k]);
    fputc('\n', stderr);
}

#define CHECK_SAMPLE(d, i, ids, labels)                                                                        \
    do {                                                                                                       \
        int ok_ = sample_is(d, i, ids, labels);                                                                \
        CHECK(ok_, "sample %zu differs", (size_t)(i));                                                         \
        if (!ok_) dump_sample(d, i, ids, labels);                                                              \
    } while (0)

static void vec_free(vec *a) {
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

static int load(gg_dataset *d, const char *path, const gg_data_opts *o, gg_err *e) {
    memset(e, 0, sizeof *e);
    return gg_data_load(d, path, tok, o, e);
}

static int32_t eos(void) { return gg_tokenizer_eos_id(tok); }

/* ---- formats ---- */

static void test_format_names(void) {
    gg_data_format f;
    gg_err e;
    const char *names[] = {"auto", "alpaca", "sharegpt", "chat", "completion", "pretokenized"};
    for (int i = 0; i < 6; i++) {
        CHECK(!gg_data_format_from_name(names[i], &f, &e) && (int)f == i, "%s", names[i]);
        CHECK(!strcmp(gg_data_format_name(f), names[i]), "%s", names[i]);
    }
    CHECK(gg_data_format_from_name("jsonl", &f, &e) == -1 && strstr(e.msg, "jsonl") && strstr(e.msg, "sharegpt"),
          "%s", e.msg);
}

static const char *P_IN = "Below is an instruction that describes a task, paired with an input that provides further "
                          "context. Write a response that appropriately completes the request.\n\n### Instruction:\n";
static const char *P_NO = "Below is an instruction that describes a task. Write a response that appropriately "
                          "completes the request.\n\n### Instruction:\n";

static void alpaca_expect(vec *ids, vec *labels, const char *ins, const char *in, const char *out, int toi) {
    char prompt[2048];
    if (in && *in) snprintf(prompt, sizeof prompt, "%s%s\n\n### Input:\n%s\n\n### Response:\n", P_IN, ins, in);
    else snprintf(prompt, sizeof prompt, "%s%s\n\n### Response:\n", P_NO, ins);
    enc_add(ids, labels, prompt, 1, toi);
    enc_add(ids, labels, out, 0, 1);
    vec_add1(ids, eos());
    vec_add1(labels, eos());
}

static void test_alpaca(void) {
    char path[1100];
    write_file("alpaca.jsonl",
               "{\"instruction\": \"Add the numbers.\", \"input\": \"2 and 3\", \"output\": \"5\"}\n"
               "\n   \n"
               "{\"instruction\": \"Name a colour.\", \"input\": \"\", \"output\": \"Blue,\\nlike the sky.\"}\n"
               "{\"instruction\": \"Say hi.\", \"output\": \"Hi!\"}",
               path, sizeof path);
    for (int toi = 0; toi < 2; toi++) {
        gg_data_opts o = gg_data_opts_default();
        o.train_on_inputs = toi;
        gg_dataset d = {0};
        gg_err e;
        REQUIRE(!load(&d, path, &o, &e), "%s", e.msg);
        REQUIRE(d.n_samples == 3, "%zu samples", d.n_samples);
        vec ids = {0}, lab = {0};
        alpaca_expect(&ids, &lab, "Add the numbers.", "2 and 3", "5", toi);
        CHECK_SAMPLE(&d, 0, &ids, &lab);
        CHECK(ids.v[0] == gg_tokenizer_bos_id(tok), "BOS first: %d", ids.v[0]);
        vec_free(&ids);
        vec_free(&lab);
        alpaca_expect(&ids, &lab, "Name a colour.", "", "Blue,\nlike the sky.", toi);
        CHECK_SAMPLE(&d, 1, &ids, &lab);
        vec_free(&ids);
        vec_free(&lab);
        alpaca_expect(&ids, &lab, "Say hi.", NULL, "Hi!", toi);
        CHECK_SAMPLE(&d, 2, &ids, &lab);
        size_t trained = 0;
        for (size_t k = 1; k < ids.n; k++) trained += lab.v[k] >= 0;
        CHECK(d.s[2].n_trained == trained, "n_trained %u vs %zu", d.s[2].n_trained, trained);
        vec_free(&ids);
        vec_free(&lab);
        CHECK(d.s[0].line == 1 && d.s[1].line == 4 && d.s[2].line == 5, "lines %u %u %u", d.s[0].line, d.s[1].line,
              d.s[2].line);
        CHECK(d.n_files == 1 && !strcmp(d.files[0], path) && d.s[2].file == 0, "files");
        size_t nt = 0, ntr = 0;
        for (size_t i = 0; i < d.n_samples; i++) nt += d.s[i].n, ntr += d.s[i].n_trained;
        CHECK(d.n_tokens == nt && d.n_trained == ntr, "stats %zu %zu", d.n_tokens, d.n_trained);
        gg_data_free(&d);
    }
}

static void test_completion_and_eos(void) {
    char path[1100];
    write_file("text.jsonl", "{\"text\": \"The quick brown fox.\"}\n{\"text\": \"Line one\\nline two \\u00e9\"}\n",
               path, sizeof path);
    for (int add_eos = 0; add_eos < 2; add_eos++) {
        gg_data_opts o = gg_data_opts_default();
        o.add_eos = add_eos;
        gg_dataset d = {0};
        gg_err e;
        REQUIRE(!load(&d, path, &o, &e), "%s", e.msg);
        REQUIRE(d.n_samples == 2, "%zu", d.n_samples);
        const char *texts[2] = {"The quick brown fox.", "Line one\nline two \xc3\xa9"};
        for (int i = 0; i < 2; i++) {
            vec ids = {0}, lab = {0};
            enc_add(&ids, &lab, texts[i], 1, 1);
            if (add_eos) {
                vec_add1(&ids, eos());
                vec_add1(&lab, eos());
            }
            CHECK_SAMPLE(&d, (size_t)i, &ids, &lab);
            vec_free(&ids);
            vec_free(&lab);
        }
        gg_data_free(&d);
    }
}

static void test_truncation(void) {
    char path[1100];
    write_file("trunc.jsonl",
               "{\"text\": \"one two three four five six seven eight nine ten eleven twelve\"}\n"
               "{\"text\": \"short\"}\n"
               "{\"instruction\": \"A long instruction that fills the whole budget.\", \"output\": \"x\"}\n",
               path, sizeof path);
    gg_data_opts o = gg_data_opts_default();
    o.seq_len = 6;
    gg_dataset d = {0};
    gg_err e;
    /* two formats in one file: load them one format at a time */
    o.format = GG_DATA_COMPLETION;
    o.skip_bad = 1;
    REQUIRE(!load(&d, path, &o, &e), "%s", e.msg);
    CHECK(d.n_samples == 2 && d.n_truncated == 1 && d.n_skipped == 1, "%zu %zu %zu", d.n_samples, d.n_truncated,
          d.n_skipped);
    vec ids = {0}, lab = {0};
    enc_add(&ids, &lab, "one two three four five six seven eight nine ten eleven twelve", 1, 1);
    ids.n = lab.n = 6; /* the first seq_len tokens */
    CHECK_SAMPLE(&d, 0, &ids, &lab);
    CHECK(d.s[0].truncated && !d.s[1].truncated, "flags");
    vec_free(&ids);
    vec_free(&lab);
    /* the alpaca prompt alone is longer than 6: nothing trained is left */
    o.format = GG_DATA_ALPACA;
    REQUIRE(!load(&d, path, &o, &e), "%s", e.msg);
    CHECK(d.n_samples == 2 && d.n_no_targets == 1 && d.n_skipped == 3, "%zu %zu %zu", d.n_samples, d.n_no_targets,
          d.n_skipped);
    CHECK(d.n_files == 2, "%zu files", d.n_files);
    char sum[256];
    gg_data_summary(&d, sum, sizeof sum);
    CHECK(strstr(sum, "2 samples") && strstr(sum, "1 truncated") && strstr(sum, "3 skipped") &&
              strstr(sum, "1 no-target"),
          "%s", sum);
    gg_data_free(&d);
}

static void test_pretokenized(void) {
    char path[1100];
    write_file("pre.jsonl",
               "{\"input_ids\": [1, 450, 4996, 17354], \"labels\": [-100, -100, 4996, 17354]}\n"
               "{\"input_ids\": [1, 22, 33]}\n",
               path, sizeof path);
    gg_dataset d = {0};
    gg_err e;
    REQUIRE(!load(&d, path, NULL, &e), "%s", e.msg);
    REQUIRE(d.n_samples == 2, "%zu", d.n_samples);
    int32_t i0[] = {1, 450, 4996, 17354}, l0[] = {-100, -100, 4996, 17354}, i1[] = {1, 22, 33};
    vec a = {i0, 4}, b = {l0, 4}, c = {i1, 3};
    CHECK_SAMPLE(&d, 0, &a, &b);
    CHECK_SAMPLE(&d, 1, &c, &c);
    CHECK(d.s[0].n_trained == 2 && d.s[1].n_trained == 2, "%u %u", d.s[0].n_trained, d.s[1].n_trained);
    gg_data_free(&d);

    char line[256];
    snprintf(line, sizeof line, "{\"input_ids\": [1, 2]}\n{\"input_ids\": [3, 4]}\n{\"input_ids\": [5, %zu]}\n",
             gg_tokenizer_vocab_size(tok));
    write_file("pre_bad.jsonl", line, path, sizeof path);
    CHECK(load(&d, path, NULL, &e) == -1, "out of range accepted");
    char want[1200];
    snprintf(want, sizeof want, "%s:3: input_ids[1]", path);
    CHECK(strstr(e.msg, want) && strstr(e.msg, "out of range"), "%s", e.msg);
    CHECK(d.n_samples == 0 && d.n_files == 0 && d.n_tokens == 0, "rollback: %zu %zu", d.n_samples, d.n_files);

    const char *bad[][2] = {
        {"{\"input_ids\": [1, 2], \"labels\": [1]}", "\"labels\" has 1 items"},
        {"{\"input_ids\": [1, 2], \"labels\": [1, -5]}", "labels[1] = -5"},
        {"{\"input_ids\": [1, 2.5]}", "input_ids[1] is not an integer"},
        {"{\"input_ids\": []}", "\"input_ids\" is empty"},
        {"{\"input_ids\": \"1 2\"}", "not an array"},
        {"{\"input_ids\": [-1, 2]}", "input_ids[0] = -1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file("pre_bad2.jsonl", bad[i][0], path, sizeof path);
        CHECK(load(&d, path, NULL, &e) == -1 && strstr(e.msg, ":1: ") && strstr(e.msg, bad[i][1]), "%s: %s",
              bad[i][0], e.msg);
    }
    gg_data_free(&d);
}

static void test_bad_lines(void) {
    char path[1100], want[1200];
    write_file("bad.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"unterminated}\n{\"text\": \"ok again\"}\n", path,
               sizeof path);
    gg_dataset d = {0};
    gg_err e;
    CHECK(load(&d, path, NULL, &e) == -1, "bad JSON accepted");
    snprintf(want, sizeof want, "%s:2: bad JSON", path);
    CHECK(strstr(e.msg, want) != NULL, "%s", e.msg);
    CHECK(!strchr(e.msg, '\n'), "one line: %s", e.msg);
    gg_data_opts o = gg_data_opts_default();
    o.skip_bad = 1;
    REQUIRE(!load(&d, path, &o, &e), "%s", e.msg);
    CHECK(d.n_samples == 2 && d.n_skipped == 1 && d.s[1].line == 3, "%zu %zu", d.n_samples, d.n_skipped);
    /* a failed load leaves the dataset as it was */
    gg_dataset before = d;
    CHECK(load(&d, path, NULL, &e) == -1, "no error");
    CHECK(d.n_samples == before.n_samples && d.n_tokens == before.n_tokens && d.n_skipped == before.n_skipped &&
              d.n_files == before.n_files,
          "not rolled back");
    gg_data_free(&d);

    const char *cases[][2] = {
        {"[1, 2]", "not a JSON object"},
        {"{\"text\": 5}", "\"text\" is not a string"},
        {"{\"text\": \"\"}", "\"text\" is empty"},
        {"{\"instruction\": \"x\"}", "missing \"output\""},
        {"{\"instruction\": \"x\", \"input\": 3, \"output\": \"y\"}", "\"input\" is not a string"},
        {"{\"foo\": 1}", "no known field"},
        {"{\"text\": \"a\", \"text\": \"b\"}", "bad JSON"},
        {"{\"text\": \"a\"} trailing", "bad JSON"},
        {"{\"messages\": []}", "\"messages\" is empty"},
        {"{\"messages\": [{\"role\": \"user\"}]}", "messages[0]: missing \"content\""},
        {"{\"conversations\": [{\"from\": \"robot\", \"value\": \"x\"}]}", "unknown \"from\""},
    };
    o = gg_data_opts_default();
    o.chat_template = "chatml";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file("bad2.jsonl", cases[i][0], path, sizeof path);
        snprintf(want, sizeof want, "%s:1: ", path);
        CHECK(load(&d, path, &o, &e) == -1 && strstr(e.msg, want) && strstr(e.msg, cases[i][1]), "%s: %s",
              cases[i][0], e.msg);
    }
    CHECK(load(&d, "/nonexistent/x.jsonl", NULL, &e) == -1 && strstr(e.msg, "/nonexistent/x.jsonl"), "%s", e.msg);
    gg_data_free(&d);
}

static void test_auto_and_mixed(void) {
    char path[1100];
    const char *lines[][2] = {
        {"{\"instruction\": \"i\", \"output\": \"o\"}", "alpaca"},
        {"{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}",
         "sharegpt"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}",
         "chat"},
        {"{\"text\": \"t t t\"}", "completion"},
        {"{\"input_ids\": [1, 2, 3]}", "pretokenized"},
    };
    gg_data_opts o = gg_data_opts_default();
    o.chat_template = "chatml";
    for (size_t i = 0; i < 5; i++) {
        char text[512];
        snprintf(text, sizeof text, "%s\n%s\n", lines[i][0], lines[i][0]);
        write_file("auto.jsonl", text, path, sizeof path);
        gg_dataset d = {0}, x = {0};
        gg_err e;
        CHECK(!load(&d, path, &o, &e) && d.n_samples == 2, "%s: %s", lines[i][1], e.msg);
        gg_data_opts ox = o; /* the explicit format gives the same */
        CHECK(!gg_data_format_from_name(lines[i][1], &ox.format, &e), "%s", e.msg);
        CHECK(!load(&x, path, &ox, &e) && x.n_tokens == d.n_tokens && d.n_tokens &&
                  !memcmp(x.ids, d.ids, d.n_tokens * 4) && !memcmp(x.labels, d.labels, d.n_tokens * 4),
              "%s explicit", lines[i][1]);
        gg_data_free(&d);
        gg_data_free(&x);
        /* mixed: the next format on line 3 */
        snprintf(text, sizeof text, "%s\n\n%s\n", lines[i][0], lines[(i + 1) % 5][0]);
        write_file("mixed.jsonl", text, path, sizeof path);
        char want[1200];
        snprintf(want, sizeof want, "%s:3: a %s line in a file of %s lines (format from line 1)", path,
                 lines[(i + 1) % 5][1], lines[i][1]);
        CHECK(load(&d, path, &o, &e) == -1 && strstr(e.msg, want), "%s", e.msg);
        gg_data_free(&d);
    }
    /* auto detects from the first VALID line (under skip_bad) */
    write_file("auto2.jsonl", "not json\n{\"text\": \"a b\"}\n{\"instruction\": \"i\", \"output\": \"o\"}\n", path,
               sizeof path);
    o.skip_bad = 1;
    gg_dataset d = {0};
    gg_err e;
    CHECK(!load(&d, path, &o, &e) && d.n_samples == 1 && d.n_skipped == 2 && d.s[0].line == 2, "%s", e.msg);
    gg_data_free(&d);
}

/* ---- chat ---- */

static const gg_chat_msg CONV[] = {
    {"system", "Be brief."}, {"user", "Capital of France?"}, {"assistant", "Paris."},
    {"user", "And Italy?"},  {"assistant", "Rome."},
};
static const char *CHAT_LINE =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
    "\"Capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", \"content\": "
    "\"And Italy?\"}, {\"role\": \"assistant\", \"content\": \"Rome.\"}]}\n";
static const char *SHAREGPT_LINE =
    "{\"conversations\": [{\"from\": \"system\", \"value\": \"Be brief.\"}, {\"from\": \"human\", \"value\": "
    "\"Capital of France?\"}, {\"from\": \"gpt\", \"value\": \"Paris.\"}, {\"from\": \"user\", \"value\": "
    "\"And Italy?\"}, {\"from\": \"assistant\", \"value\": \"Rome.\"}]}\n";

static char *render(const char *tmpl, size_t n, int gen) {
    gg_chat_opts co = {gen, gg_tokenizer_bos_token(tok), gg_tokenizer_eos_token(tok)};
    char *out;
    size_t len;
    gg_err e;
    if (gg_chat_render(tmpl, CONV, n, &co, &out, &len, &e)) {
        fprintf(stderr, "render: %s\n", e.msg);
        exit(2);
    }
    return out;
}

/* The expected sample by the documented method, for templates whose prefixes
 * tokenize as prefixes (so every span is exact). */
static void chat_expect(const char *tmpl, vec *ids, vec *lab) {
    char *t = render(tmpl, 5, 0);
    enc_add(ids, lab, t, 0, 0);
    free(t);
    for (size_t i = 0; i < 5; i++) {
        if (strcmp(CONV[i].role, "assistant")) continue;
        vec a = {0}, al = {0}, b = {0}, bl = {0};
        char *p = render(tmpl, i, 1), *q = render(tmpl, i + 1, 0);
        enc_add(&a, &al, p, 0, 0);
        enc_add(&b, &bl, q, 0, 0);
        CHECK(a.n < b.n && b.n <= ids->n && !memcmp(b.v, ids->v, b.n * 4) && !memcmp(a.v, ids->v, a.n * 4),
              "prefixes are not token prefixes");
        for (size_t k = a.n; k < b.n && b.n <= ids->n; k++) lab->v[k] = ids->v[k];
        free(p);
        free(q);
        vec_free(&a);
        vec_free(&al);
        vec_free(&b);
        vec_free(&bl);
    }
}

/* The text of the trained tokens, runs joined by '|'. */
static void trained_text(const gg_dataset *d, size_t i, char *out, size_t cap) {
    out[0] = 0;
    const int32_t *ids = gg_data_ids(d, i), *lab = gg_data_labels(d, i);
    for (uint32_t k = 0; k < d->s[i].n;) {
        if (lab[k] < 0) {
            k++;
            continue;
        }
        uint32_t j = k;
        while (j < d->s[i].n && lab[j] >= 0) j++;
        char *s;
        size_t n;
        gg_err e;
        if (!gg_tokenizer_decode(tok, ids + k, j - k, 0, &s, &n, &e)) {
            snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "|" : "", s);
            free(s);
        }
        k = j;
    }
}

static void test_chat_llama2(void) {
    char path[1100];
    write_file("chat.jsonl", CHAT_LINE, path, sizeof path);
    gg_data_opts o = gg_data_opts_default();
    o.chat_template = "llama2";
    gg_dataset d = {0}, s = {0};
    gg_err e;
    REQUIRE(!load(&d, path, &o, &e), "%s", e.msg);
    write_file("sharegpt.jsonl", SHAREGPT_LINE, path, sizeof path);
    REQUIRE(!load(&s, path, &o, &e), "%s", e.msg);
    vec ids = {0}, lab = {0};
    chat_expect(gg_chat_builtin("llama2"), &ids, &lab);
    CHECK_SAMPLE(&d, 0, &ids, &lab);
    CHECK_SAMPLE(&s, 0, &ids, &lab); /* sharegpt is the same conversation */
    CHECK(ids.v[ids.n - 1] == eos(), "the template's </s> ends it; no second EOS");
    char tt[1024];
    trained_text(&d, 0, tt, sizeof tt);
    CHECK(!strcmp(tt, "Paris. </s>|Rome. </s>"), "trained text [%s]", tt);
    vec_free(&ids);
    vec_free(&lab);
    /* train_on_inputs: all of it */
    o.train_on_inputs = 1;
    gg_data_free(&s);
    REQUIRE(!load(&s, path, &o, &e), "%s", e.msg);
    CHECK(!memcmp(s.ids, s.labels, s.n_tokens * 4) && s.n_tokens == d.n_tokens, "train_on_inputs");
    gg_data_free(&d);
    gg_data_free(&s);
}

static void test_chat_chatml_eos(void) {
    /* chatml with a tokenizer where <|im_end|> is plain text: EOS is appended
     * and the template's "\n" after the last turn is trained before it */
    char path[1100];
    write_file("chatml.jsonl", CHAT_LINE, path, sizeof path);
    const char *tmpl = gg_chat_builtin("chatml");
    for (int add_eos = 0; add_eos < 2; add_eos++) {
        gg_data_opts o = gg_data_opts_default();
        o.chat_template = tmpl; /* as source this time */
        o.add_eos = add_eos;
        gg_dataset d = {0};
        gg_err e;
        REQUIRE(!load(&d, path, &o, &e), "%s", e.msg);
        vec ids = {0}, lab = {0};
        chat_expect(tmpl, &ids, &lab);
        if (add_eos) {
            vec_add1(&ids, eos());
            vec_add1(&lab, eos());
        }
        CHECK_SAMPLE(&d, 0, &ids, &lab);
        char tt[1024];
        trained_text(&d, 0, tt, sizeof tt);
        const char *want =
            add_eos ? "Paris.<|im_end|>\n|Rome.<|im_end|>\n</s>" : "Paris.<|im_end|>\n|Rome.<|im_end|>\n";
        CHECK(!strcmp(tt, want), "add_eos=%d trained text [%s]", add_eos, tt);
        vec_free(&ids);
        vec_free(&lab);
        gg_data_free(&d);
    }
}

static void test_chat_straddle(void) {
    /* llama3's template with the llama2 tokenizer: "<|eot_id|><|start_header_id|>"
     * is plain text and "><" is one token across the end of the assistant turn:
     * that token is trained, the rest of the next header is not */
    char path[1100];
    write_file("llama3.jsonl", CHAT_LINE, path, sizeof path);
    gg_data_opts o = gg_data_opts_default();
    o.chat_template = "llama3";
    gg_dataset d = {0};
    gg_err e;
    REQUIRE(!load(&d, path, &o, &e), "%s", e.msg);
    vec ids = {0}, lab = {0};
    char *t = render(gg_chat_builtin("llama3"), 5, 0);
    enc_add(&ids, &lab, t, 0, 0);
    free(t);
    CHECK(d.s[0].n == ids.n + 1 && !memcmp(gg_data_ids(&d, 0), ids.v, ids.n * 4), "ids = tok(T) ++ EOS");
    char tt[1024];
    trained_text(&d, 0, tt, sizeof tt);
    CHECK(!strcmp(tt, "Paris.<|eot_id|><|Rome.<|eot_id|></s>"), "trained text [%s]", tt);
    vec_free(&ids);
    vec_free(&lab);
    gg_data_free(&d);
}

static void test_chat_errors(void) {
    char path[1100], want[1200];
    write_file("chat2.jsonl", CHAT_LINE, path, sizeof path);
    gg_data_opts o = gg_data_opts_default();
    o.skip_bad = 1; /* a missing template is not the line's fault */
    gg_dataset d = {0};
    gg_err e;
    CHECK(load(&d, path, &o, &e) == -1 && strstr(e.msg, "--chat-template") && strstr(e.msg, ":1: "), "%s", e.msg);
    /* the llama2 template refuses non-alternating roles: a line error */
    write_file("chat3.jsonl",
               "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]}\n",
               path, sizeof path);
    o.skip_bad = 0;
    o.chat_template = "llama2";
    snprintf(want, sizeof want, "%s:1: ", path);
    CHECK(load(&d, path, &o, &e) == -1 && strstr(e.msg, want) && strstr(e.msg, "alternate"), "%s", e.msg);
    /* a template that renders the last assistant turn differently */
    o.chat_template = "{% for m in messages %}{% if loop.last and m.role == 'assistant' %}[last]{% endif %}"
                      "{{ m.role }}: {{ m.content }}\n{% endfor %}";
    write_file("chat4.jsonl", CHAT_LINE, path, sizeof path);
    CHECK(load(&d, path, &o, &e) == -1 && strstr(e.msg, "differently"), "%s", e.msg);
    /* a conversation with no assistant turn has no targets */
    write_file("chat5.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"hello there\"}]}\n", path,
               sizeof path);
    o.chat_template = "chatml";
    CHECK(!load(&d, path, &o, &e) && d.n_samples == 0 && d.n_no_targets == 1, "%s", e.msg);
    gg_data_free(&d);
}

/* Threads: the same dataset and the same (first) error whatever their number. */
static void test_threads(void) {
    char path[1100];
    size_t cap = 1 << 20;
    char *text = malloc(cap), *p = text;
    for (int i = 0; i < 700; i++) {
        if (i % 3 == 0) p += sprintf(p, "%s", CHAT_LINE);
        else if (i % 3 == 1) p += sprintf(p, "{\"text\": \"sample %d of the file\"}\n", i);
        else p += sprintf(p, "{\"input_ids\": [1, %d, %d]}\n", i, i + 1);
        if (i == 300 || i == 600) p += sprintf(p, "{\"text\": 7}\n");
    }
    write_file("threads.jsonl", text, path, sizeof path);
    free(text);
    gg_data_opts o = gg_data_opts_default();
    o.chat_template = "chatml";
    o.format = GG_DATA_AUTO;
    gg_dataset d[3] = {{0}};
    int threads[3] = {1, 3, 8};
    for (int k = 0; k < 3; k++) {
        gg_err e;
        o.skip_bad = 0;
        o.n_threads = threads[k];
        /* mixed formats: the first offending line is named (line 2) */
        CHECK(load(&d[k], path, &o, &e) == -1 && strstr(e.msg, ":2: a completion line"), "%s", e.msg);
        o.skip_bad = 1;
        CHECK(!load(&d[k], path, &o, &e), "%s", e.msg);
        CHECK(d[k].n_samples == 234 && d[k].n_skipped == 468, "%zu %zu", d[k].n_samples, d[k].n_skipped);
        if (k == 0) continue;
        CHECK(d[k].n_samples == d[0].n_samples && d[k].n_tokens == d[0].n_tokens &&
                  !memcmp(d[k].ids, d[0].ids, d[0].n_tokens * 4) &&
                  !memcmp(d[k].labels, d[0].labels, d[0].n_tokens * 4),
              "%d threads differ", threads[k]);
        int lines_same = 1;
        for (size_t i = 0; i < d[0].n_samples; i++) lines_same &= d[k].s[i].line == d[0].s[i].line;
        CHECK(lines_same, "%d threads: lines differ", threads[k]);
    }
    /* bad lines 300 and 600 (in the 2nd chunk for 3 threads, the 1st for 8): the first is named */
    text = malloc(cap), p = text;
    for (int i = 1; i <= 700; i++)
        p += i == 300 || i == 600 ? sprintf(p, "{\"text\": 7}\n") : sprintf(p, "{\"text\": \"t %d\"}\n", i);
    write_file("threads2.jsonl", text, path, sizeof path);
    free(text);
    o.skip_bad = 0;
    gg_dataset x = {0};
    gg_err e;
    for (int k = 0; k < 3; k++) {
        o.n_threads = threads[k];
        CHECK(load(&x, path, &o, &e) == -1 && strstr(e.msg, ":300: \"text\" is not a string"), "%s", e.msg);
        CHECK(x.n_samples == 0 && x.n_tokens == 0 && x.n_files == 0, "chunks merged before the error kept");
    }
    for (int k = 0; k < 3; k++) gg_data_free(&d[k]);
    gg_data_free(&x);
}

/* ---- split ---- */

/* A pretokenized dataset of n samples; sample i has len(i) tokens, all
 * trained, ids encoding i so samples can be told apart. */
static size_t len_of(size_t i) { return 2 + (i * 7919) % 13; }

static void make_pre(gg_dataset *d, size_t n, size_t (*len)(size_t)) {
    char path[1100];
    size_t cap = n * 128 + 16;
    char *text = malloc(cap), *p = text;
    for (size_t i = 0; i < n; i++) {
        p += sprintf(p, "{\"input_ids\": [");
        for (size_t k = 0; k < len(i); k++) p += sprintf(p, "%s%zu", k ? ", " : "", 100 + i);
        p += sprintf(p, "]}\n");
    }
    write_file("gen.jsonl", text, path, sizeof path);
    free(text);
    gg_err e;
    memset(d, 0, sizeof *d);
    if (load(d, path, NULL, &e)) {
        fprintf(stderr, "make_pre: %s\n", e.msg);
        exit(2);
    }
}

static void test_split(void) {
    gg_dataset a = {0}, va = {0}, b = {0}, vb = {0};
    make_pre(&a, 20, len_of);
    make_pre(&b, 20, len_of);
    size_t total = a.n_tokens;
    gg_err e;
    REQUIRE(!gg_data_split(&a, &va, 0.25, 7, &e), "%s", e.msg);
    REQUIRE(!gg_data_split(&b, &vb, 5, 7, &e), "%s", e.msg);
    CHECK(a.n_samples == 15 && va.n_samples == 5, "%zu %zu", a.n_samples, va.n_samples);
    CHECK(a.n_tokens + va.n_tokens == total, "tokens %zu + %zu != %zu", a.n_tokens, va.n_tokens, total);
    int same = va.n_samples == vb.n_samples;
    for (size_t i = 0; same && i < va.n_samples; i++) same = va.s[i].line == vb.s[i].line;
    CHECK(same, "same seed, different choice");
    /* order kept, every line exactly once, contents intact */
    int seen[21] = {0};
    for (int k = 0; k < 2; k++) {
        gg_dataset *d = k ? &va : &a;
        for (size_t i = 0; i < d->n_samples; i++) {
            uint32_t l = d->s[i].line;
            CHECK(i == 0 || d->s[i - 1].line < l, "order");
            seen[l]++;
            CHECK(d->s[i].n == len_of(l - 1) && gg_data_ids(d, i)[0] == (int32_t)(100 + l - 1) &&
                      gg_data_ids(d, i)[d->s[i].n - 1] == (int32_t)(100 + l - 1),
                  "sample of line %u damaged", l);
        }
        CHECK(d->n_files == 1, "files");
    }
    for (int l = 1; l <= 20; l++) CHECK(seen[l] == 1, "line %d seen %d times", l, seen[l]);
    gg_data_free(&b);
    gg_data_free(&vb);
    make_pre(&b, 20, len_of);
    REQUIRE(!gg_data_split(&b, &vb, 5, 8, &e), "%s", e.msg);
    int differ = 0;
    for (size_t i = 0; i < 5; i++) differ |= vb.s[i].line != va.s[i].line;
    CHECK(differ, "seeds 7 and 8 chose the same samples");
    gg_data_free(&b);
    gg_data_free(&vb);
    make_pre(&b, 20, len_of);
    CHECK(gg_data_split(&b, &vb, 20, 1, &e) == -1 && strstr(e.msg, "no training sample"), "%s", e.msg);
    CHECK(gg_data_split(&b, &vb, 2.5, 1, &e) == -1 && strstr(e.msg, "whole"), "%s", e.msg);
    CHECK(gg_data_split(&b, &vb, -1, 1, &e) == -1, "negative");
    CHECK(!gg_data_split(&b, &vb, 0.001, 1, &e) && vb.n_samples == 1 && b.n_samples == 19, "at least one");
    gg_data_free(&vb);
    CHECK(!gg_data_split(&b, &vb, 0, 1, &e) && vb.n_samples == 0 && b.n_samples == 19, "zero");
    gg_data_free(&a);
    gg_data_free(&va);
    gg_data_free(&b);
    gg_data_free(&vb);
}

/* ---- debug view ---- */

static void test_debug(void) {
    char path[1100];
    write_file("dbg.jsonl", "{\"instruction\": \"Tab\\there\", \"output\": \"a \\\"q\\\"\\nb\"}\n", path,
               sizeof path);
    gg_dataset d = {0};
    gg_err e;
    REQUIRE(!load(&d, path, NULL, &e), "%s", e.msg);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    REQUIRE(f, "open_memstream");
    gg_data_debug(f, &d, tok, 0);
    fclose(f);
    char want[1200];
    snprintf(want, sizeof want, "%s:1 n=%u trained=%u\n", path, d.s[0].n, d.s[0].n_trained);
    CHECK(strstr(buf, want) != NULL, "header missing:\n%s", buf);
    snprintf(want, sizeof want, "%d:\"<s>\":M", gg_tokenizer_bos_id(tok));
    CHECK(strstr(buf, want) != NULL, "BOS masked missing:\n%s", buf);
    snprintf(want, sizeof want, "%d:\"</s>\":T", eos());
    CHECK(strstr(buf, want) != NULL, "EOS trained missing:\n%s", buf);
    CHECK(strstr(buf, "\"<0x0A>\":M") && strstr(buf, "\"<0x0A>\":T"), "newline tokens:\n%s", buf);
    CHECK(strstr(buf, "data: 1 samples,") != NULL, "summary:\n%s", buf);
    CHECK(strstr(buf, "\\\"") != NULL, "a quote piece is escaped:\n%s", buf);
    free(buf);
    /* without a tokenizer the pieces are "?" */
    f = open_memstream(&buf, &len);
    gg_dataset x = {0};
    make_pre(&x, 1, len_of);
    gg_data_debug(f, &x, NULL, 1);
    fclose(f);
    CHECK(strstr(buf, ":\"?\":T") != NULL, "no tokenizer → ?:\n%s", buf);
    free(buf);
    gg_data_free(&x);
    gg_data_free(&d);
}

/* ---- batcher ---- */

static size_t len_rand(size_t i) {
    uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
    return 2 + (size_t)(h % 30);
}

/* Check one batch's flat layout against the dataset. */
static void check_layout(const gg_dataset *d, const gg_batch *b, const gg_batch_opts *o) {
    int64_t t = 0, nt = 0;
    REQUIRE(b->seg[0] == 0 && b->seg[b->n_samples] == b->n, "seg ends");
    for (int64_t j = 0; j < b->n_samples; j++) {
        uint32_t si = b->sample[j];
        const gg_sample *s = &d->s[si];
        REQUIRE(b->seg[j + 1] - b->seg[j] == s->n, "segment %lld length", (long long)j);
        const int32_t *ids = gg_data_ids(d, si), *lab = gg_data_labels(d, si);
        for (uint32_t k = 0; k < s->n; k++, t++) {
            int32_t want_t = k + 1 < s->n ? lab[k + 1] : -100;
            REQUIRE(b->ids[t] == ids[k] && b->pos[t] == (int32_t)k && b->k_lo[t] == b->seg[j] &&
                        b->targets[t] == want_t,
                    "token %lld: id %d pos %d k_lo %d target %d", (long long)t, b->ids[t], b->pos[t], b->k_lo[t],
                    b->targets[t]);
            nt += want_t >= 0;
        }
    }
    CHECK(t == b->n && nt == b->n_targets, "n %lld/%lld targets %lld/%lld", (long long)t, (long long)b->n,
          (long long)nt, (long long)b->n_targets);
    if (!o->pack) {
        CHECK(b->n_samples <= (int64_t)o->micro_batch && b->n_rows == b->n_samples, "unpacked size");
        return;
    }
    /* rows: consecutive, each <= seq_len, at most micro_batch, next-fit */
    int64_t row_len = 0;
    for (int64_t j = 0; j < b->n_samples; j++) {
        size_t sl = (size_t)(b->seg[j + 1] - b->seg[j]);
        if (j && b->row[j] != b->row[j - 1]) {
            CHECK(b->row[j] == b->row[j - 1] + 1, "rows consecutive");
            CHECK(row_len + (int64_t)sl > (int64_t)o->seq_len, "a sample that fit started a new row");
            row_len = 0;
        }
        row_len += (int64_t)sl;
        CHECK(row_len <= (int64_t)o->seq_len, "row %u: %lld > seq_len", b->row[j], (long long)row_len);
    }
    CHECK(b->n_samples == 0 || (b->row[0] == 0 && (int64_t)b->row[b->n_samples - 1] + 1 == b->n_rows), "n_rows");
    CHECK(b->n_rows <= (int64_t)o->micro_batch, "%lld rows", (long long)b->n_rows);
    CHECK(b->n <= (int64_t)(o->micro_batch * o->seq_len), "tokens");
}

/* Run one epoch: check layouts, that every sample appears once, and record the order. */
static void run_epoch(gg_batcher *bt, const gg_dataset *d, const gg_batch_opts *o, uint32_t *order, size_t *nb) {
    gg_batch b;
    size_t k = 0, batches = 0;
    char *seen = calloc(d->n_samples, 1);
    while (gg_batcher_next(bt, &b)) {
        check_layout(d, &b, o);
        for (int64_t j = 0; j < b.n_samples; j++) {
            CHECK(!seen[b.sample[j]], "sample %u twice", b.sample[j]);
            seen[b.sample[j]] = 1;
            if (k < d->n_samples) order[k++] = b.sample[j];
        }
        batches++;
    }
    CHECK(k == d->n_samples, "epoch saw %zu of %zu samples", k, d->n_samples);
    CHECK(b.n == 0 && b.n_samples == 0, "end of epoch batch not empty");
    free(seen);
    *nb = batches;
}

static void test_batcher_layout(void) {
    gg_dataset d = {0};
    make_pre(&d, 3, len_of);
    /* mask some labels so targets differ from ids */
    d.labels[d.s[2].off + 1] = -100;
    d.labels[d.s[1].off + 2] = -100;
    d.n_trained -= 2;
    d.s[2].n_trained--;
    d.s[1].n_trained--;
    gg_batch_opts o = {.micro_batch = 3, .seq_len = 64, .pack = 0, .shuffle = 0, .seed = 1};
    gg_batcher *bt;
    gg_err e;
    REQUIRE(!gg_batcher_new(&bt, &d, &o, &e), "%s", e.msg);
    gg_batch b;
    CHECK(gg_batcher_peek_targets(bt, 5, NULL) == (int64_t)d.n_trained, "peek");
    REQUIRE(gg_batcher_next(bt, &b) == 1, "no batch");
    check_layout(&d, &b, &o);
    CHECK(b.n_samples == 3 && b.n == (int64_t)d.n_tokens && b.sample[0] == 0 && b.sample[2] == 2, "identity order");
    /* hand-check the shift at the first boundary */
    int64_t s1 = b.seg[1];
    CHECK(b.targets[s1 - 1] == -100 && b.pos[s1] == 0 && b.k_lo[s1] == s1 && b.k_lo[s1 - 1] == 0, "boundary");
    int64_t s2 = b.seg[2];
    CHECK(b.targets[s2] == -100 && b.targets[s2 + 1] == gg_data_ids(&d, 2)[2], "masked label shifts to t-1");
    CHECK(b.n_targets == (int64_t)d.n_trained, "n_targets %lld", (long long)b.n_targets);
    CHECK(gg_batcher_next(bt, &b) == 0, "one batch only");
    gg_batcher_free(bt);
    o.seq_len = 4; /* a sample longer than seq_len is refused */
    CHECK(gg_batcher_new(&bt, &d, &o, &e) == -1 && strstr(e.msg, ":3 has 6 tokens") && strstr(e.msg, "seq_len"), "%s",
          e.msg);
    o.micro_batch = 0;
    o.seq_len = 64;
    CHECK(gg_batcher_new(&bt, &d, &o, &e) == -1, "micro_batch 0");
    gg_data_free(&d);
}

static void test_batcher_epochs(void) {
    enum { N = 200 };
    gg_dataset d = {0};
    make_pre(&d, N, len_rand);
    static uint32_t o1[N], o2[N], o3[N];
    for (int pack = 0; pack < 2; pack++) {
        gg_batch_opts o = {.micro_batch = 3, .seq_len = 48, .pack = pack, .shuffle = 1, .seed = 42};
        gg_batcher *a, *b;
        gg_err e;
        REQUIRE(!gg_batcher_new(&a, &d, &o, &e) && !gg_batcher_new(&b, &d, &o, &e), "%s", e.msg);
        int64_t longest = 0;
        for (size_t i = 0; i < N; i++) longest = d.s[i].n > longest ? d.s[i].n : longest;
        CHECK(gg_batcher_max_tokens(a) == (pack ? 3 * 48 : 3 * longest), "max tokens %lld",
              (long long)gg_batcher_max_tokens(a));
        size_t nb1, nb2, nb3;
        size_t want0 = gg_batcher_epoch_batches(a, 0), want1 = gg_batcher_epoch_batches(a, 1);
        run_epoch(a, &d, &o, o1, &nb1);
        run_epoch(b, &d, &o, o2, &nb2);
        CHECK(!memcmp(o1, o2, sizeof o1) && nb1 == nb2, "same seed, different order");
        CHECK(nb1 == want0, "epoch_batches %zu vs %zu", want0, nb1);
        int ident = 1;
        for (size_t i = 0; i < N; i++) ident &= o1[i] == i;
        CHECK(!ident, "shuffle kept file order");
        gg_batcher_next_epoch(a);
        CHECK(gg_batcher_get_state(a).epoch == 1 && gg_batcher_get_state(a).cursor == 0, "state");
        run_epoch(a, &d, &o, o3, &nb3);
        CHECK(memcmp(o1, o3, sizeof o1), "epochs 0 and 1 in the same order");
        CHECK(nb3 == want1, "epoch 1 batches %zu vs %zu", want1, nb3);
        gg_batcher_free(a);
        gg_batcher_free(b);
        /* no shuffle: file order every epoch */
        o.shuffle = 0;
        REQUIRE(!gg_batcher_new(&a, &d, &o, &e), "%s", e.msg);
        gg_batcher_next_epoch(a);
        run_epoch(a, &d, &o, o1, &nb1);
        ident = 1;
        for (size_t i = 0; i < N; i++) ident &= o1[i] == i;
        CHECK(ident, "no shuffle, yet not in file order");
        gg_batcher_free(a);
    }
    gg_data_free(&d);
}

static int batch_eq(const gg_batch *x, const gg_batch *y) {
    return x->n == y->n && x->n_samples == y->n_samples && x->n_targets == y->n_targets &&
           !memcmp(x->ids, y->ids, (size_t)x->n * 4) && !memcmp(x->targets, y->targets, (size_t)x->n * 4) &&
           !memcmp(x->k_lo, y->k_lo, (size_t)x->n * 4) && !memcmp(x->sample, y->sample, (size_t)x->n_samples * 4);
}

static void test_batcher_resume_and_peek(void) {
    gg_dataset d = {0};
    make_pre(&d, 150, len_rand);
    rng_seed(5);
    for (int pack = 0; pack < 2; pack++) {
        gg_batch_opts o = {.micro_batch = 4, .seq_len = 40, .pack = pack, .shuffle = 1, .seed = 9};
        gg_batcher *a, *b;
        gg_err e;
        REQUIRE(!gg_batcher_new(&a, &d, &o, &e) && !gg_batcher_new(&b, &d, &o, &e), "%s", e.msg);
        /* a: run 1.5 epochs, saving the state at a random point */
        int stop = 5 + (int)(rng_u64() % 20), k = 0;
        gg_batcher_state saved = {0};
        gg_batch x, y;
        for (int ep = 0; ep < 2; ep++) {
            if (ep) gg_batcher_next_epoch(a);
            /* peek equals the sum of the next 3 batches, and consumes nothing */
            size_t pb;
            int64_t want = gg_batcher_peek_targets(a, 3, &pb);
            gg_batcher_state s0 = gg_batcher_get_state(a);
            int64_t got = 0;
            size_t gb = 0;
            for (; gb < 3 && gg_batcher_next(a, &x); gb++) got += x.n_targets;
            CHECK(want == got && pb == gb, "peek %lld vs %lld (%zu/%zu batches)", (long long)want, (long long)got,
                  pb, gb);
            CHECK(!gg_batcher_set_state(a, s0, &e), "%s", e.msg);
            while (gg_batcher_next(a, &x))
                if (k++ == stop) saved = gg_batcher_get_state(a);
            stop += 30;
        }
        /* b resumes from each saved point and must continue exactly as a did */
        for (int ep = 0; ep < 2; ep++) {
            gg_batcher_state s = ep ? (gg_batcher_state){1, 17} : saved;
            REQUIRE(!gg_batcher_set_state(b, s, &e), "%s", e.msg);
            REQUIRE(!gg_batcher_set_state(a, s, &e), "%s", e.msg);
            int n = 0, same = 1;
            while (gg_batcher_next(a, &x)) {
                same &= gg_batcher_next(b, &y) && batch_eq(&x, &y);
                n++;
            }
            same &= !gg_batcher_next(b, &y);
            CHECK(same && n > 0, "resume from (%llu, %llu) differs (pack %d)", (unsigned long long)s.epoch,
                  (unsigned long long)s.cursor, pack);
        }
        /* a fresh batcher set to (1, 0) == next_epoch after a full epoch 0 */
        gg_batcher *c;
        REQUIRE(!gg_batcher_new(&c, &d, &o, &e), "%s", e.msg);
        REQUIRE(!gg_batcher_set_state(c, (gg_batcher_state){1, 0}, &e), "%s", e.msg);
        REQUIRE(!gg_batcher_set_state(a, (gg_batcher_state){0, 0}, &e), "%s", e.msg);
        while (gg_batcher_next(a, &x)) {
        }
        gg_batcher_next_epoch(a);
        int same = 1;
        while (gg_batcher_next(a, &x)) same &= gg_batcher_next(c, &y) && batch_eq(&x, &y);
        CHECK(same, "set_state(1, 0) differs from next_epoch");
        CHECK(gg_batcher_set_state(c, (gg_batcher_state){0, 151}, &e) == -1, "cursor past end accepted");
        gg_batcher_free(a);
        gg_batcher_free(b);
        gg_batcher_free(c);
    }
    gg_data_free(&d);
}

static void cleanup(void) {
    for (size_t i = 0; i < n_made; i++) unlink(made[i]);
    rmdir(tmpdir);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tokenizers/llama2", check_fixtures());
    gg_err e;
    if (gg_tokenizer_load_path(&tok, dir, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    RUN(test_format_names);
    RUN(test_alpaca);
    RUN(test_completion_and_eos);
    RUN(test_truncation);
    RUN(test_pretokenized);
    RUN(test_bad_lines);
    RUN(test_auto_and_mixed);
    RUN(test_chat_llama2);
    RUN(test_chat_chatml_eos);
    RUN(test_chat_straddle);
    RUN(test_chat_errors);
    RUN(test_threads);
    RUN(test_split);
    RUN(test_debug);
    RUN(test_batcher_layout);
    RUN(test_batcher_epochs);
    RUN(test_batcher_resume_and_peek);
    gg_tokenizer_free(tok);
    cleanup();
    return check_done();
}
