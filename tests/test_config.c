/* test_config.c — recipe files (convert/config.h): an Axolotl-style YAML
 * recipe and its JSON twin give the same ordered (key, value, line) list;
 * scalars, quoting and escapes, block and flow lists, CRLF / BOM / `---`;
 * and every construct outside the subset is refused with one line
 * "FILE:LINE: ..." naming the right line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert/config.h"
#include "tests/check.h"

static int has(const char *msg, const char *needle) { return strstr(msg, needle) != NULL; }

static gg_config *parse(const char *text, gg_err *err) {
    gg_config *c = NULL;
    memset(err, 0, sizeof *err);
    if (gg_config_parse(&c, text, strlen(text), "recipe.yml", err)) return NULL;
    return c;
}

/* Entry i is (key, value, line, kind). */
static void expect_ent(const gg_config *c, size_t i, const char *key, const char *val, int line, gg_config_kind kind) {
    const char *k = gg_config_key(c, i), *v = gg_config_value(c, i);
    CHECK(k && strcmp(k, key) == 0, "entry %zu: key '%s', expected '%s'", i, k ? k : "(null)", key);
    CHECK(v && strcmp(v, val) == 0, "entry %zu (%s): value '%s', expected '%s'", i, key, v ? v : "(null)", val);
    CHECK(gg_config_line(c, i) == line, "entry %zu (%s): line %d, expected %d", i, key, gg_config_line(c, i), line);
    CHECK(gg_config_kind_of(c, i) == kind, "entry %zu (%s): kind %d, expected %d", i, key, gg_config_kind_of(c, i),
          kind);
}

/* Parsing text must fail with "recipe.yml:LINE: ...needle..." on one line. */
static void expect_fail(const char *text, int line, const char *needle) {
    gg_err err;
    gg_config *c = parse(text, &err);
    char pre[64];
    snprintf(pre, sizeof pre, "recipe.yml:%d: ", line);
    CHECK(c == NULL, "parsed, expected an error with '%s' for: %s", needle, text);
    CHECK(strncmp(err.msg, pre, strlen(pre)) == 0, "got '%s', expected it to start with '%s'", err.msg, pre);
    CHECK(has(err.msg, needle), "got '%s', expected '%s'", err.msg, needle);
    CHECK(!strchr(err.msg, '\n'), "message is not one line: '%s'", err.msg);
    gg_config_free(c);
}

static const char *YAML_RECIPE = "# Axolotl-style QLoRA recipe\n"                 /* 1 */
                                 "base_model: meta-llama/Llama-2-7b-hf\n"         /* 2 */
                                 "load_in_4bit: true\n"                           /* 3 */
                                 "\n"                                             /* 4 */
                                 "adapter: qlora\n"                               /* 5 */
                                 "lora_r: 16   # rank\n"                          /* 6 */
                                 "lora_alpha: 32\n"                               /* 7 */
                                 "lora_dropout: 0.05\n"                           /* 8 */
                                 "lora_target_modules:\n"                         /* 9 */
                                 "  - q_proj\n"                                   /* 10 */
                                 "  # a comment inside the list\n"                /* 11 */
                                 "  - \"v_proj\"\n"                               /* 12 */
                                 "  - 'k_proj'  # trailing\n"                     /* 13 */
                                 "learning_rate: 2e-4\n"                          /* 14 */
                                 "lr_scheduler: cosine\n"                         /* 15 */
                                 "wandb_project:\n"                               /* 16 */
                                 "special_tokens: ~\n"                            /* 17 */
                                 "train_on_inputs: False\n"                       /* 18 */
                                 "output_dir: \"./out #1\"\n"                     /* 19 */
                                 "datasets: [data/a.jsonl, \"data/b c.jsonl\"]\n" /* 20 */
                                 "chat_template: 'it''s'\n"                       /* 21 */
                                 "url: http://host:8080/x#frag\n"                 /* 22 */
                                 "sample_packing: yes\n"                          /* 23 */
                                 "warmup-steps: 10\n";                            /* 24 */

static const char *JSON_RECIPE = "{\n"                                                        /* 1 */
                                 "  \"base_model\": \"meta-llama/Llama-2-7b-hf\",\n"          /* 2 */
                                 "  \"load_in_4bit\": true,\n"                                /* 3 */
                                 "\n"                                                         /* 4 */
                                 "  \"adapter\": \"qlora\",\n"                                /* 5 */
                                 "  \"lora_r\": 16,\n"                                        /* 6 */
                                 "  \"lora_alpha\": 32,\n"                                    /* 7 */
                                 "  \"lora_dropout\": 0.05,\n"                                /* 8 */
                                 "  \"lora_target_modules\": [\"q_proj\",\n"                  /* 9 */
                                 "     \"v_proj\", \"k_proj\"],\n"                            /* 10 */
                                 "  \"learning_rate\": 2e-4, \"lr_scheduler\": \"cosine\",\n" /* 11 */
                                 "  \"wandb_project\": null,\n"                               /* 12 */
                                 "  \"special_tokens\": null,\n"                              /* 13 */
                                 "  \"train_on_inputs\": false,\n"                            /* 14 */
                                 "  \"output_dir\": \"./out #1\",\n"                          /* 15 */
                                 "  \"datasets\": [\"data/a.jsonl\", \"data/b c.jsonl\"],\n"  /* 16 */
                                 "  \"chat_template\": \"it's\",\n"                           /* 17 */
                                 "  \"url\": \"http://host:8080/x#frag\",\n"                  /* 18 */
                                 "  \"sample_packing\": true,\n"                              /* 19 */
                                 "  \"warmup-steps\": 10\n"                                   /* 20 */
                                 "}\n";

typedef struct want {
    const char *key, *val;
    int yline, jline;
    gg_config_kind kind;
} want;

static const want WANT[] = {
    {"base-model", "meta-llama/Llama-2-7b-hf", 2, 2, GG_CFG_STR},
    {"load-in-4bit", "true", 3, 3, GG_CFG_BOOL},
    {"adapter", "qlora", 5, 5, GG_CFG_STR},
    {"lora-r", "16", 6, 6, GG_CFG_NUM},
    {"lora-alpha", "32", 7, 7, GG_CFG_NUM},
    {"lora-dropout", "0.05", 8, 8, GG_CFG_NUM},
    {"lora-target-modules", "q_proj,v_proj,k_proj", 9, 9, GG_CFG_LIST},
    {"learning-rate", "2e-4", 14, 11, GG_CFG_NUM},
    {"lr-scheduler", "cosine", 15, 11, GG_CFG_STR},
    {"wandb-project", "", 16, 12, GG_CFG_NULL},
    {"special-tokens", "", 17, 13, GG_CFG_NULL},
    {"train-on-inputs", "false", 18, 14, GG_CFG_BOOL},
    {"output-dir", "./out #1", 19, 15, GG_CFG_STR},
    {"datasets", "data/a.jsonl,data/b c.jsonl", 20, 16, GG_CFG_LIST},
    {"chat-template", "it's", 21, 17, GG_CFG_STR},
    {"url", "http://host:8080/x#frag", 22, 18, GG_CFG_STR},
    {"sample-packing", "true", 23, 19, GG_CFG_BOOL},
    {"warmup-steps", "10", 24, 20, GG_CFG_NUM},
};
#define N_WANT (sizeof WANT / sizeof *WANT)

static void test_yaml_recipe(void) {
    gg_err err;
    gg_config *c = parse(YAML_RECIPE, &err);
    REQUIRE(c, "%s", err.msg);
    CHECK(gg_config_count(c) == N_WANT, "%zu entries, expected %zu", gg_config_count(c), N_WANT);
    for (size_t i = 0; i < N_WANT && i < gg_config_count(c); i++)
        expect_ent(c, i, WANT[i].key, WANT[i].val, WANT[i].yline, WANT[i].kind);
    CHECK(gg_config_find(c, "lora_r") == 3 && gg_config_find(c, "lora-r") == 3, "find lora_r");
    CHECK(gg_config_find(c, "lora_target_modules") == 6, "find");
    CHECK(gg_config_find(c, "nope") == -1 && gg_config_find(c, "lora") == -1, "find absent");
    CHECK(gg_config_key(c, N_WANT) == NULL && gg_config_value(c, 999) == NULL && gg_config_line(c, 999) == 0,
          "out of range");
    CHECK(strcmp(gg_config_label(c), "recipe.yml") == 0, "label");
    gg_config_free(c);
}

static void test_json_recipe(void) {
    gg_err err;
    gg_config *c = parse(JSON_RECIPE, &err);
    REQUIRE(c, "%s", err.msg);
    CHECK(gg_config_count(c) == N_WANT, "%zu entries, expected %zu", gg_config_count(c), N_WANT);
    for (size_t i = 0; i < N_WANT && i < gg_config_count(c); i++)
        expect_ent(c, i, WANT[i].key, WANT[i].val, WANT[i].jline, WANT[i].kind);
    gg_config_free(c);
    /* empty object; leading blank lines; escapes */
    c = parse("\n\n  {}\n", &err);
    CHECK(c && gg_config_count(c) == 0, "%s", err.msg);
    gg_config_free(c);
    c = parse("{\"a\": \"x\\\"y\\\\z\\/\\n\\t\\u00e9\\ud83d\\ude00\", \"b\": [], \"c\": [1, -2.5e3, true],"
              " \"d\": -0}",
              &err);
    REQUIRE(c, "%s", err.msg);
    expect_ent(c, 0, "a", "x\"y\\z/\n\t\xc3\xa9\xf0\x9f\x98\x80", 1, GG_CFG_STR);
    expect_ent(c, 1, "b", "", 1, GG_CFG_LIST);
    expect_ent(c, 2, "c", "1,-2.5e3,true", 1, GG_CFG_LIST);
    expect_ent(c, 3, "d", "-0", 1, GG_CFG_NUM);
    gg_config_free(c);
}

static void test_yaml_scalars(void) {
    gg_err err;
    gg_config *c = parse("\xEF\xBB\xBF---\r\n"
                         "a: \"q\\\"\\\\\\n\\t\\x41\\u00e9\\U0001F600\"\r\n"
                         "b: 'single ''quoted'' # not a comment'\r\n"
                         "c: plain text with  spaces   \r\n"
                         "d: -3.5e-2\r\n"
                         "e: \"123\"\r\n"
                         "f: ON\r\n"
                         "g: NO\r\n"
                         "h: 1.2.3\r\n"
                         "i: []\r\n"
                         "j: [ a ,b,  'c d' , ]  # trailing comma\r\n"
                         "k:\r\n"
                         "- x\r\n"
                         "- 7\r\n"
                         "l: [\r\n"
                         "  one,   # first\r\n"
                         "  two\r\n"
                         "]\r\n"
                         "m: a:b\r\n"
                         "n: \"\"\r\n"
                         "o: .5\r\n"
                         "p: null\r\n",
                         &err);
    REQUIRE(c, "%s", err.msg);
    CHECK(gg_config_count(c) == 16, "%zu entries", gg_config_count(c));
    expect_ent(c, 0, "a", "q\"\\\n\tA\xc3\xa9\xf0\x9f\x98\x80", 2, GG_CFG_STR);
    expect_ent(c, 1, "b", "single 'quoted' # not a comment", 3, GG_CFG_STR);
    expect_ent(c, 2, "c", "plain text with  spaces", 4, GG_CFG_STR);
    expect_ent(c, 3, "d", "-3.5e-2", 5, GG_CFG_NUM);
    expect_ent(c, 4, "e", "123", 6, GG_CFG_STR);
    expect_ent(c, 5, "f", "true", 7, GG_CFG_BOOL);
    expect_ent(c, 6, "g", "false", 8, GG_CFG_BOOL);
    expect_ent(c, 7, "h", "1.2.3", 9, GG_CFG_STR);
    expect_ent(c, 8, "i", "", 10, GG_CFG_LIST);
    expect_ent(c, 9, "j", "a,b,c d", 11, GG_CFG_LIST);
    expect_ent(c, 10, "k", "x,7", 12, GG_CFG_LIST);
    expect_ent(c, 11, "l", "one,two", 15, GG_CFG_LIST);
    expect_ent(c, 12, "m", "a:b", 19, GG_CFG_STR);
    expect_ent(c, 13, "n", "", 20, GG_CFG_STR);
    expect_ent(c, 14, "o", ".5", 21, GG_CFG_NUM);
    expect_ent(c, 15, "p", "", 22, GG_CFG_NULL);
    gg_config_free(c);
    /* empty input, only comments, no trailing newline */
    c = parse("", &err);
    CHECK(c && gg_config_count(c) == 0, "%s", err.msg);
    gg_config_free(c);
    c = parse("# nothing\n\n   # indented comment\n", &err);
    CHECK(c && gg_config_count(c) == 0, "%s", err.msg);
    gg_config_free(c);
    c = parse("last: key", &err);
    REQUIRE(c && gg_config_count(c) == 1, "%s", err.msg);
    expect_ent(c, 0, "last", "key", 1, GG_CFG_STR);
    gg_config_free(c);
    c = parse("lst:", &err);
    REQUIRE(c && gg_config_count(c) == 1, "%s", err.msg);
    expect_ent(c, 0, "lst", "", 1, GG_CFG_NULL);
    gg_config_free(c);
}

static void test_yaml_errors(void) {
    expect_fail("a: 1\nlora:\n  r: 8\n", 3, "nested mappings are not supported ('lora' on line 2");
    expect_fail("a: 1\nb: {x: 1}\n", 2, "nested mappings");
    expect_fail("a: b: c\n", 1, "nested mappings");
    expect_fail("a:\n  - x: 1\n", 2, "nested mappings");
    expect_fail("a:\n  - x\n  - - y\n", 3, "nested lists");
    expect_fail("a: [x, [y]]\n", 1, "nested lists");
    expect_fail("a: [x, {y: 1}]\n", 1, "nested mappings");
    expect_fail("a: [x, y}]\n", 1, "unexpected '}'");
    expect_fail("lora_r: 8\nb: 1\nlora-r: 16\n", 3, "duplicate key 'lora-r' (first on line 1)");
    expect_fail("a: 1\n\tb: 2\n", 2, "tab");
    expect_fail("a: \"open\nb: 1\n", 1, "unterminated double-quoted");
    expect_fail("a: 'open\n", 1, "unterminated single-quoted");
    expect_fail("x: 1\na: [1, 2\nb: 3\n", 2, "unterminated list");
    expect_fail("a: |\n  text\n", 1, "block scalars");
    expect_fail("a: &anchor 1\n", 1, "anchors");
    expect_fail("a: *ref\n", 1, "aliases");
    expect_fail("a: !!str 1\n", 1, "tags");
    expect_fail("a:\n  - 'x,y'\n", 2, "contains a ','");
    expect_fail("a: [x, , y]\n", 1, "empty list item");
    expect_fail("a:\n  -\n", 2, "empty list item");
    expect_fail("a:\n  - null\n", 2, "null list item");
    expect_fail("- x\n", 1, "no 'key:' line");
    expect_fail("a:\n  - x\n   - y\n", 3, "indented 3 spaces");
    expect_fail("a: 1\n  continued\n", 2, "unexpected indentation");
    expect_fail("just a line\n", 1, "expected 'key: value'");
    expect_fail("a: 1\nkey with space: 2\n", 2, "character other than");
    expect_fail("a: \"\\q\"\n", 1, "unknown escape");
    expect_fail("a: \"\\u12\"\n", 1, "hex digits");
    expect_fail("a: \"\\0\"\n", 1, "NUL");
    expect_fail("a: \"\\ud800\"\n", 1, "not a valid Unicode");
    expect_fail("a: \"x\" y\n", 1, "after the quoted string");
    expect_fail("a: 1\n---\nb: 2\n", 2, "more than one YAML document");
    expect_fail("a: - x\n", 1, "list item on the key's line");
    expect_fail(": 1\n", 1, "empty key");
    expect_fail("a: 1\nb: \xff\n", 2, "invalid UTF-8");
    gg_err err;
    gg_config *c = NULL;
    CHECK(gg_config_parse(&c, "a: 1\nb: x\0y\n", 12, "recipe.yml", &err) == -1 && c == NULL &&
              strncmp(err.msg, "recipe.yml:2: ", 14) == 0 && has(err.msg, "NUL"),
          "%s", err.msg);
    /* a key of 300 characters */
    char big[400];
    memset(big, 'k', 300);
    strcpy(big + 300, ": 1\n");
    expect_fail(big, 1, "longer than");
}

static void test_json_errors(void) {
    expect_fail("{\"a\": 1,\n \"b\": {\"c\": 2}}", 2, "nested objects");
    expect_fail("{\"a\": [1, [2]]}", 1, "nested arrays");
    expect_fail("{\"a\": [1, null]}", 1, "null item");
    expect_fail("{\"a\": 1,\n\"a_b\": 2,\n\"a-b\": 3}", 3, "duplicate key 'a-b' (first on line 2)");
    expect_fail("{\"a\": 1}\n{", 2, "after the closing");
    expect_fail("{\"a\": 1", 1, "not closed");
    expect_fail("{\"a\" 1}", 1, "expected ':'");
    expect_fail("{\"a\": 01}", 1, "expected ',' or '}'");
    expect_fail("{\"a\": 1.}", 1, "no digits after");
    expect_fail("{\"a\": tru}", 1, "expected a value");
    expect_fail("{\"a\": \"x\ny\"}", 1, "raw control character");
    expect_fail("{\"a\": \"\\ud800x\"}", 1, "high surrogate");
    expect_fail("{\"a\": \"\\u0000\"}", 1, "NUL");
    expect_fail("{\"a\": [\"x,y\"]}", 1, "contains a ','");
    expect_fail("{a: 1}", 1, "expected a \"key\"");
    expect_fail("{\"\": 1}", 1, "empty key");
    expect_fail("{\"a b\": 1}", 1, "character other than");
    expect_fail("{\"a\": 1,}", 1, "expected a \"key\"");
}

static void test_load(void) {
    char path[] = "/tmp/gg_test_config_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp");
    const char *text = "lora_r: 8\nlora_target_modules: [q_proj, v_proj]\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
    close(fd);
    gg_config *c = NULL;
    gg_err err;
    CHECK(gg_config_load(&c, path, &err) == 0, "%s", err.msg);
    if (c) {
        CHECK(gg_config_count(c) == 2, "count");
        expect_ent(c, 1, "lora-target-modules", "q_proj,v_proj", 2, GG_CFG_LIST);
        CHECK(strcmp(gg_config_label(c), path) == 0, "label %s", gg_config_label(c));
    }
    gg_config_free(c);
    /* errors name the path */
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("ok: 1\nbad:\n  nested: 2\n", f);
        fclose(f);
    }
    c = NULL;
    char pre[64];
    snprintf(pre, sizeof pre, "%s:3: ", path);
    CHECK(gg_config_load(&c, path, &err) == -1 && c == NULL && strncmp(err.msg, pre, strlen(pre)) == 0, "%s", err.msg);
    unlink(path);
    CHECK(gg_config_load(&c, path, &err) == -1 && has(err.msg, path) && has(err.msg, "cannot open"), "%s", err.msg);
    gg_config_free(NULL);
}

int main(void) {
    RUN(test_yaml_recipe);
    RUN(test_json_recipe);
    RUN(test_yaml_scalars);
    RUN(test_yaml_errors);
    RUN(test_json_errors);
    RUN(test_load);
    return check_done();
}
