/* chat_render_main.c — test driver for tests/t_chat_ref.sh: reads a JSON
 * file of cases [{template, messages, add_generation_prompt, bos_token,
 * eos_token}] and prints a JSON array with one entry per case: the rendered
 * string, or {"error": message}. Cases with only those keys (and "name")
 * whose messages are plain {role, content} strings go through
 * gg_chat_render, others through
 * gg_jinja_render with the case itself (less "template") as the context.
 * `chat_render --builtin NAME` prints the source of a built-in template. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/chat.h"
#include "models/jinja.h"

static int plain_case(json_t *c) {
    size_t i;
    json_t *m, *msgs = json_object_get(c, "messages");
    const char *k;
    json_object_foreach(c, k, m) {
        if (strcmp(k, "template") && strcmp(k, "messages") && strcmp(k, "add_generation_prompt") &&
            strcmp(k, "bos_token") && strcmp(k, "eos_token") && strcmp(k, "name"))
            return 0;
    }
    if (!json_is_array(msgs)) return 0;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m) || json_object_size(m) != 2) return 0;
        if (!json_is_string(json_object_get(m, "role")) || !json_is_string(json_object_get(m, "content"))) return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--builtin")) { /* print a built-in template's source */
        const char *src = gg_chat_builtin(argv[2]);
        if (!src) {
            fprintf(stderr, "chat_render: no built-in template '%s'\n", argv[2]);
            return 1;
        }
        fputs(src, stdout);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: chat_render CASES.json | chat_render --builtin NAME\n");
        return 2;
    }
    json_error_t je;
    json_t *cases = json_load_file(argv[1], 0, &je);
    if (!json_is_array(cases)) {
        fprintf(stderr, "chat_render: %s: %s\n", argv[1], cases ? "not an array" : je.text);
        return 1;
    }
    json_t *res = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *tmpl = json_string_value(json_object_get(c, "template"));
        json_t *msgs = json_object_get(c, "messages");
        char *out = NULL;
        size_t len = 0;
        gg_err err = {{0}};
        int rc;
        if (!tmpl) {
            rc = gg_errf(&err, "case %zu: no template", i);
        } else if (plain_case(c)) {
            size_t n = json_array_size(msgs);
            gg_chat_msg *m = calloc(n ? n : 1, sizeof *m);
            for (size_t k = 0; k < n; k++) {
                m[k].role = json_string_value(json_object_get(json_array_get(msgs, k), "role"));
                m[k].content = json_string_value(json_object_get(json_array_get(msgs, k), "content"));
            }
            gg_chat_opts o = {json_is_true(json_object_get(c, "add_generation_prompt")),
                              json_string_value(json_object_get(c, "bos_token")),
                              json_string_value(json_object_get(c, "eos_token"))};
            rc = gg_chat_render(tmpl, m, n, &o, &out, &len, &err);
            free(m);
        } else {
            json_t *ctx = json_deep_copy(c);
            json_object_del(ctx, "template");
            json_object_del(ctx, "name"); /* the test's label */
            rc = gg_jinja_render(tmpl, ctx, &out, &len, &err);
            json_decref(ctx);
        }
        if (rc) {
            json_t *m = json_string(err.msg);
            if (!m) fprintf(stderr, "chat_render: case %zu: error message is not valid UTF-8: %s\n", i, err.msg);
            json_array_append_new(res, json_pack("{s:o}", "error", m ? m : json_string("(invalid UTF-8)")));
        }
        else {
            json_t *s = json_stringn(out, len);
            json_array_append_new(res, s ? s : json_pack("{s:s}", "error", "output is not valid UTF-8"));
        }
        free(out);
    }
    char *s = json_dumps(res, JSON_INDENT(1));
    puts(s);
    free(s);
    json_decref(res);
    json_decref(cases);
    return 0;
}
