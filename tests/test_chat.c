/* test_chat.c — unit tests of models/jinja.c (the Jinja-subset interpreter:
 * whitespace control, trim/lstrip_blocks, expressions, loop variables,
 * namespace, filters, tests, macros, undefined handling, errors naming
 * line:column, raise_exception) and models/chat.c (the context, the
 * built-in templates, the fixture templates of Llama 3 and Qwen3).
 * Parity with @huggingface/jinja over many more cases: tests/t_chat_ref.sh. */
#include "models/chat.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/jinja.h"
#include "tests/check.h"

/* Render src with the JSON object ctx (text; NULL = {}); returns the output
 * (malloc'd) or NULL with the error in *err. */
static char *render(const char *src, const char *ctx, gg_err *err) {
    json_error_t je;
    json_t *c = ctx ? json_loads(ctx, 0, &je) : json_object();
    if (!c) {
        gg_errf(err, "bad test context: %s", je.text);
        return NULL;
    }
    char *out = NULL;
    size_t len = 0;
    int rc = gg_jinja_render(src, c, &out, &len, err);
    json_decref(c);
    if (rc) return NULL;
    if (strlen(out) != len) {
        free(out);
        gg_errf(err, "length mismatch");
        return NULL;
    }
    return out;
}

#define EXPECT(src, ctx, want)                                                                     \
    do {                                                                                           \
        gg_err e_ = {{0}};                                                                         \
        char *got_ = render(src, ctx, &e_);                                                        \
        CHECK(got_ && !strcmp(got_, want), "%s\n  want: [%s]\n  got:  [%s] %s", src, want,         \
              got_ ? got_ : "(error)", got_ ? "" : e_.msg);                                        \
        free(got_);                                                                                \
    } while (0)

/* expect an error whose message contains each of the given substrings */
#define EXPECT_ERR(src, ctx, sub1, sub2)                                                           \
    do {                                                                                           \
        gg_err e_ = {{0}};                                                                         \
        char *got_ = render(src, ctx, &e_);                                                        \
        CHECK(!got_, "%s: expected an error, got [%s]", src, got_ ? got_ : "");                    \
        CHECK(got_ || (strstr(e_.msg, sub1) && strstr(e_.msg, sub2)),                              \
              "%s: error '%s' lacks '%s' / '%s'", src, e_.msg, sub1, sub2);                        \
        free(got_);                                                                                \
    } while (0)

static const char *MSGS =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U1\"},"
    " {\"role\": \"assistant\", \"content\": \"A1\"}, {\"role\": \"user\", \"content\": \"U2\"}],"
    " \"x\": {\"a\": 1, \"b\": [1, 2, 3], \"s\": \"  pad  \", \"n\": null, \"t\": true}}";

static void test_text_and_output(void) {
    EXPECT("", NULL, "");
    EXPECT("plain text", NULL, "plain text");
    EXPECT("final newline dropped\n", NULL, "final newline dropped");
    EXPECT("{{ 'a' }}{{ \"b\" }}{{ 1 }}{{ 2.5 }}{{ 3.0 }}{{ true }}{{ none }}", NULL, "ab12.53.0true");
    EXPECT("{# a comment #}x{#- trims left #}", NULL, "x");
    EXPECT("{{ '\\n\\t\\'\\\"\\\\ \\x41\\u00e9' }}", NULL, "\n\t'\"\\ A\xc3\xa9");
    EXPECT("{{ 'ab' 'cd' }}", NULL, "abcd");
    EXPECT("{{ x }}|{{ y.z }}|{{ y is defined }}", "{\"x\": \"\"}", "||false");
}

static void test_whitespace_control(void) {
    EXPECT("a  {{- 'b' -}}  c", NULL, "abc");
    EXPECT("a \n {%- if true -%} \n b \n {%- endif -%} \n c", NULL, "abc");
    EXPECT("a  {#- c -#}  b", NULL, "ab");
    /* trim_blocks: the newline after a block tag goes; lstrip_blocks: the
     * indentation before a block tag goes; expression tags keep both */
    EXPECT("x\n  {% if true %}\n  y\n  {% endif %}\nz", NULL, "x\n  y\nz");
    EXPECT("  {{ 'e' }}\n", NULL, "  e");
    EXPECT("{{ 'e' }}\n\nf", NULL, "e\n\nf");
    EXPECT("{# c #}\nafter", NULL, "after");
    EXPECT("{% for i in [1, 2] %}\n{{ i }}\n{% endfor %}", NULL, "1\n2\n");
    EXPECT("{%- for i in [1, 2] %}\n    {{- i }}\n{%- endfor %}", NULL, "12");
    EXPECT("a{% generation %} b {% endgeneration %}c", NULL, "a b c");
}

static void test_expressions(void) {
    EXPECT("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}",
           NULL, "7|9|3|-4|1|3.5|1024");
    /* an integer result past int64 becomes a float (found by fuzz_task) */
    EXPECT("{{ 7777 ** 7 }}", NULL, "1.7206189143504983e+27");
    EXPECT("{{ 0.1 + 0.2 }}|{{ 1 / 3 }}|{{ 2.5 * 2 }}|{{ -3 }}|{{ - 2.5 }}", NULL,
           "0.30000000000000004|0.3333333333333333|5.0|-3|-2.5");
    EXPECT("{{ 'a' ~ 1 ~ 2.0 ~ true }}|{{ 'a' + 'b' }}|{{ 'n' + 1 }}", NULL, "a12true|ab|n1");
    EXPECT("{{ 1 == 1.0 }}{{ 'a' != 'b' }}{{ 2 < 3 }}{{ 3 <= 2 }}{{ 'ell' in 'hello' }}{{ 2 in [1, 2] }}"
           "{{ 'z' not in {'z': 1} }}",
           NULL, "truetruetruefalsetruetruefalse");
    EXPECT("{{ not true }}|{{ true and 'x' }}|{{ false or 0 }}|{{ none or 'd' }}|{{ not not 'x' }}", NULL,
           "false|x|0|d|true");
    EXPECT("{{ 'y' if 1 else 'n' }}|{{ 'y' if 0 else 'n' }}|{{ 'only' if false }}|", NULL, "y|n||");
    EXPECT("{{ [1, 'a', none, true] }}|{{ {'k': [1, {'j': 'v'}]} }}|{{ [1, 2] + [3] }}", NULL,
           "[1, \"a\", null, true]|{\"k\": [1, {\"j\": \"v\"}]}|[1, 2, 3]");
    EXPECT("{{ messages[1].content }}|{{ messages[-1]['content'] }}|{{ messages|length }}|{{ messages[9] }}", MSGS,
           "U1|U2|4|");
    EXPECT("{{ 'abcdef'[1:4] }}|{{ 'abcdef'[::-1] }}|{{ [1, 2, 3][1:] }}|{{ [1, 2, 3][:-1] }}|{{ 'h\xc3\xa9llo'[1] }}",
           NULL, "bcd|fedcba|[2, 3]|[1, 2]|\xc3\xa9");
    EXPECT("{{ messages[::-1][0].role }}|{{ x.b[1] }}|{{ x['a'] }}|{{ x.b.length }}", MSGS, "user|2|1|3");
}

static void test_string_and_dict_methods(void) {
    EXPECT("{{ x.s.strip() }}|{{ x.s.lstrip() }}|{{ x.s.rstrip() }}|", MSGS, "pad|pad  |  pad|");
    EXPECT("{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a-b-c'.split('-', 1) }}", NULL,
           "[\"a\", \"b\", \"\", \"c\"]|[\"a\", \"b\"]|[\"a\", \"b-c\"]");
    EXPECT("{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('x', 'lo')) }}{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}",
           NULL, "truetrueABab");
    EXPECT("{{ 'aaa'.replace('a', 'b') }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'hello world'.title() }}", NULL,
           "bbb|bba|Hello World");
    EXPECT("{% for k, v in x.items() %}{{ k }}={{ v }};{% endfor %}", "{\"x\": {\"a\": 1, \"b\": \"c\"}}",
           "a=1;b=c;");
    EXPECT("{{ x.get('a') }}|{{ x.get('zz', 'd') }}|{{ x.get('zz') }}|{{ x.keys()|list }}|{{ x.values()|length }}",
           "{\"x\": {\"a\": 1}}", "1|d||[\"a\"]|1");
}

static void test_filters(void) {
    EXPECT("{{ '  t  '|trim }}|{{ 'ab'|upper }}|{{ 'AB'|lower }}|{{ 'abc'|length }}|{{ [1, 2]|length }}", NULL,
           "t|AB|ab|3|2");
    EXPECT("{{ [1, 2, 3]|join(', ') }}|{{ ['a', 'b']|join }}|{{ [1, 2, 3]|first }}|{{ [1, 2, 3]|last }}", NULL,
           "1, 2, 3|ab|1|3");
    EXPECT("{{ u|default('d') }}|{{ ''|default('e', true) }}|{{ 'v'|default('d') }}", NULL, "d|e|v");
    EXPECT("{{ 'aXa'|replace('a', 'b') }}|{{ 3|string ~ '!' }}|{{ '42'|int + 1 }}|{{ 2.7|int }}|{{ 'x'|int }}", NULL,
           "bXb|3!|43|2|0");
    EXPECT("{{ x|tojson }}", "{\"x\": {\"a\": [1, 2.5, \"\xc3\xa9\\n\"], \"b\": null, \"c\": true}}",
           "{\"a\": [1, 2.5, \"\xc3\xa9\\n\"], \"b\": null, \"c\": true}");
    EXPECT("{{ x|tojson(indent=2) }}", "{\"x\": {\"a\": [1, {}], \"b\": []}}",
           "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
    EXPECT("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join('+') }}", MSGS,
           "U1+U2");
    EXPECT("{{ messages|rejectattr('role', 'equalto', 'user')|map(attribute='role')|list }}", MSGS,
           "[\"system\", \"assistant\"]");
    EXPECT("{{ [3, 1, 2]|sort }}|{{ [3, 1, 2]|sort(reverse=true)|list }}|{{ [1, 1, 2]|unique }}|{{ [1, 2]|reverse }}",
           NULL, "[1, 2, 3]|[3, 2, 1]|[1, 2]|[2, 1]");
    EXPECT("{{ 'a\\nb'|indent }}|{{ 'a\\nb'|indent(2, true) }}", NULL, "a\n    b|  a\n  b");
}

static void test_tests(void) {
    EXPECT("{{ 3 is odd }}{{ 4 is even }}{{ none is none }}{{ 's' is string }}{{ 1 is number }}{{ 1.5 is integer }}",
           NULL, "truetruetruetruetruefalse");
    EXPECT("{{ x is mapping }}{{ x.b is iterable }}{{ x.t is true }}{{ x.n is not none }}{{ x.q is undefined }}",
           MSGS, "truetruetruefalsetrue");
}

static void test_loops(void) {
    EXPECT("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
           "{{ 'F' if loop.first }}{{ 'L' if loop.last }}{{ loop.length }};{% endfor %}",
           MSGS, "1043F4;21324;32214;4310L4;");
    EXPECT("{% for m in [] %}x{% else %}empty{% endfor %}", NULL, "empty");
    EXPECT("{% for m in messages if m.role == 'user' %}{{ loop.index }}{{ m.content }}{% endfor %}", MSGS, "1U12U2");
    EXPECT("{% for a, b in [[1, 2], [3, 4]] %}{{ a * b }},{% endfor %}", NULL, "2,12,");
    EXPECT("{% for k in {'p': 1, 'q': 2} %}{{ k }}{% endfor %}", NULL, "pq");
    EXPECT("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}"
           "{{ i }}{% endfor %}",
           NULL, "0134");
    EXPECT("{% for i in range(1, 8, 3) %}{{ i }}{% endfor %}", NULL, "147");
    /* set inside a loop does not leak out; set in if does */
    EXPECT("{% set v = 1 %}{% for i in [1] %}{% set v = 2 %}{% endfor %}{{ v }}"
           "{% if true %}{% set v = 3 %}{% endif %}{{ v }}",
           NULL, "13");
}

static void test_namespace_and_set(void) {
    EXPECT("{% set ns = namespace(n=0, seen=false) %}{% for m in messages %}{% if m.role == 'user' %}"
           "{% set ns.n = ns.n + 1 %}{% set ns.seen = true %}{% endif %}{% endfor %}{{ ns.n }} {{ ns.seen }}",
           MSGS, "2 true");
    EXPECT("{% set a, b = [1, 2] %}{{ b }}{{ a }}", NULL, "21");
    EXPECT("{% set blk %}v={{ 1 + 1 }}{% endset %}[{{ blk }}]", NULL, "[v=2]");
    EXPECT_ERR("{% set x = 1 %}{% set x.y = 2 %}", NULL, "1:19", "non-namespace");
}

static void test_macros_call_filter(void) {
    EXPECT("{% macro g(name, greet='Hello') %}{{ greet }}, {{ name }}!{% endmacro %}"
           "{{ g('Bob') }} {{ g('Al', greet='Hi') }} {{ g('Z', 'Yo') }}",
           NULL, "Hello, Bob! Hi, Al! Yo, Z!");
    EXPECT("{% macro i(x) %}<{{ x }}>{% endmacro %}{% macro o(y) %}{{ i(y) }}{{ i(y ~ '!') }}{% endmacro %}{{ o('z') }}",
           NULL, "<z><z!>");
    EXPECT_ERR("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, "1:34", "argument");
    EXPECT("{% macro wrap(t) %}<{{ t }}>{{ caller() }}</{{ t }}>{% endmacro %}{% call wrap('b') %}x{{ 1 }}{% endcall %}",
           NULL, "<b>x1</b>");
    EXPECT("{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}"
           "{% call(v) each([1, 2]) %}[{{ v * 10 }}]{% endcall %}",
           NULL, "[10][20]");
    EXPECT("{% filter upper %}a{{ 'b' }}{% endfilter %}|{% filter replace('a', 'o') %}banana{% endfilter %}", NULL,
           "AB|bonono");
}

static void test_errors(void) {
    EXPECT_ERR("line1\nline2 {{ raise_exception('Roles must alternate') }}", NULL, "2:10",
               "raise_exception: Roles must alternate");
    EXPECT_ERR("a\n\n  {% badtag %}", NULL, "3:6", "unknown statement: badtag");
    EXPECT_ERR("{{ 'x'|nosuch }}", NULL, "1:8", "nosuch");
    EXPECT_ERR("{{ 1 is nosuch }}", NULL, "1:9", "unknown test: nosuch");
    EXPECT_ERR("{% if true %}open", NULL, "1:", "unclosed");
    EXPECT_ERR("{{ foo( }}", NULL, "1:", "unexpected token");
    EXPECT_ERR("{{ 'a' < 'b' }}", NULL, "1:8", "unknown operator");
    EXPECT_ERR("{{ none + 1 }}", NULL, "1:9", "null");
    EXPECT_ERR("{{ u + 1 }}", NULL, "1:6", "undefined");
    EXPECT_ERR("{% for x in 1 %}{% endfor %}", NULL, "1:4", "iterable");
    EXPECT_ERR("{{ 'unterminated }}", NULL, "1:4", "end of input");
    EXPECT_ERR("{# never closed", NULL, "1:1", "comment");
    EXPECT_ERR("{{ f(*xs) }}", NULL, "1:6", "unsupported construct: argument unpacking");
    EXPECT_ERR("{{ strftime_now('%Y') }}", NULL, "1:4", "unsupported");
    /* positions survive the lstrip/trim_blocks preprocessing */
    EXPECT_ERR("{% if true %}\n    {% if x.y.z + 1 %}{% endif %}\n{% endif %}", "{}", "2:17", "undefined");
    /* deep nesting is an error, not a crash */
    char deep[4000];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{{ ");
    for (int i = 0; i < 1000; i++) deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 1000; i++) deep[n++] = ')';
    snprintf(deep + n, sizeof deep - n, " }}");
    EXPECT_ERR(deep, NULL, "1:", "deep");
}

static void test_chat_builtins(void) {
    gg_chat_msg conv[] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
    gg_chat_opts o = {1, "<s>", "</s>"};
    struct {
        const char *name;
        size_t from, n;
        int agp;
        const char *want;
    } cases[] = {
        {"chatml", 0, 4, 1,
         "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
         "Hello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"},
        {"chatml", 1, 2, 0, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"},
        {"llama3", 0, 2, 1,
         "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
         "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
        {"llama2", 0, 4, 1, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]"},
        {"llama2", 1, 1, 1, "<s>[INST] Hi [/INST]"},
        {"alpaca", 1, 2, 0,
         "Below is an instruction that describes a task. Write a response that appropriately completes the "
         "request.\n\n### Instruction:\nHi\n\n### Response:\nHello!</s>"},
        {"alpaca", 0, 2, 1,
         "Below is an instruction that describes a task, paired with an input that provides further context. "
         "Write a response that appropriately completes the request.\n\n### Instruction:\nHi\n\n### Input:\n"
         "Be brief.\n\n### Response:\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *src = gg_chat_builtin(cases[i].name);
        REQUIRE(src, "builtin %s", cases[i].name);
        o.add_generation_prompt = cases[i].agp;
        char *out = NULL;
        size_t len = 0;
        gg_err err = {{0}};
        int rc = gg_chat_render(src, conv + cases[i].from, cases[i].n, &o, &out, &len, &err);
        CHECK(rc == 0 && out && !strcmp(out, cases[i].want) && len == strlen(cases[i].want),
              "%s #%zu: rc=%d %s\n  want: [%s]\n  got:  [%s]", cases[i].name, i, rc, err.msg, cases[i].want,
              out ? out : "");
        free(out);
    }
    CHECK(gg_chat_builtin("nope") == NULL, "unknown builtin");
    CHECK(gg_chat_builtin(NULL) == NULL, "NULL builtin");

    /* llama2 raises on a bad role order; NULL tokens are "" */
    gg_chat_msg bad[] = {{"user", "a"}, {"user", "b"}};
    gg_chat_opts none = {0, NULL, NULL};
    char *out = NULL;
    gg_err err = {{0}};
    CHECK(gg_chat_render(gg_chat_builtin("llama2"), bad, 2, &none, &out, NULL, &err) == -1 && !out &&
              strstr(err.msg, "Conversation roles must alternate") && strstr(err.msg, "1:"),
          "llama2 bad order: %s", err.msg);
    CHECK(gg_chat_render(gg_chat_builtin("llama2"), bad, 1, &none, &out, NULL, &err) == 0 && out &&
              !strcmp(out, "[INST] a [/INST]"),
          "llama2 NULL bos: %s", out ? out : err.msg);
    free(out);
    out = NULL;
    CHECK(gg_chat_render(gg_chat_builtin("alpaca"), (gg_chat_msg[]){{"tool", "x"}}, 1, &none, &out, NULL, &err) == -1,
          "alpaca: unsupported role");
    CHECK(gg_chat_render(NULL, bad, 1, &none, &out, NULL, &err) == -1, "NULL template");
    /* empty conversation, invalid UTF-8 */
    o.add_generation_prompt = 1;
    CHECK(gg_chat_render(gg_chat_builtin("chatml"), NULL, 0, &o, &out, NULL, &err) == 0 && out &&
              !strcmp(out, "<|im_start|>assistant\n"),
          "empty conversation: %s", err.msg);
    free(out);
    out = NULL;
    CHECK(gg_chat_render(gg_chat_builtin("chatml"), (gg_chat_msg[]){{"user", "\xff"}}, 1, &o, &out, NULL, &err) == -1 &&
              strstr(err.msg, "UTF-8"),
          "invalid UTF-8: %s", err.msg);
}

/* The chat_template of a fixture tokenizer_config.json (caller frees), or NULL. */
static char *fixture_template(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/chat/%s", check_fixtures(), name);
    json_error_t je;
    json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je); /* model_max_length overflows int64 */
    if (!cfg) return NULL;
    const char *t = json_string_value(json_object_get(cfg, "chat_template"));
    char *r = t ? strdup(t) : NULL;
    json_decref(cfg);
    return r;
}

static void test_fixture_templates(void) {
    gg_chat_msg conv[] = {{"system", "sys"}, {"user", " hi "}, {"assistant", "<think>\nr\n</think>\n\nok"},
                          {"user", "again"}};
    gg_chat_opts o = {1, "<|begin_of_text|>", "<|eot_id|>"};
    char *t = fixture_template("llama3.json");
    REQUIRE(t, "llama3 fixture");
    char *out = NULL;
    gg_err err = {{0}};
    CHECK(gg_chat_render(t, conv, 2, &o, &out, NULL, &err) == 0 && out &&
              !strcmp(out, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>"
                           "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n"),
          "llama3 fixture: %s", out ? out : err.msg);
    free(out);
    free(t);
    out = NULL;
    t = fixture_template("qwen3.json");
    REQUIRE(t, "qwen3 fixture");
    o.bos_token = "";
    o.eos_token = "<|im_end|>";
    CHECK(gg_chat_render(t, conv, 4, &o, &out, NULL, &err) == 0 && out &&
              !strcmp(out, "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n hi <|im_end|>\n"
                           "<|im_start|>assistant\nok<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n"
                           "<|im_start|>assistant\n"),
          "qwen3 fixture: %s", out ? out : err.msg);
    free(out);
    out = NULL;
    /* the last assistant turn after the last user query keeps its reasoning */
    CHECK(gg_chat_render(t, conv, 3, &o, &out, NULL, &err) == 0 && out &&
              !strcmp(out, "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n hi <|im_end|>\n"
                           "<|im_start|>assistant\n<think>\nr\n</think>\n\nok<|im_end|>\n<|im_start|>assistant\n"),
          "qwen3 fixture, reasoning: %s", out ? out : err.msg);
    free(out);
    free(t);
}

int main(void) {
    RUN(test_text_and_output);
    RUN(test_whitespace_control);
    RUN(test_expressions);
    RUN(test_string_and_dict_methods);
    RUN(test_filters);
    RUN(test_tests);
    RUN(test_loops);
    RUN(test_namespace_and_set);
    RUN(test_macros_call_filter);
    RUN(test_errors);
    RUN(test_chat_builtins);
    RUN(test_fixture_templates);
    return check_done();
}
