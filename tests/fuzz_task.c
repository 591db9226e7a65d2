/* fuzz_task.c — libFuzzer harness for the task-file reader
 * (gg_task_yaml_parse and gg_task_parse, models/task.h): any input is
 * refused with one line "fuzz.yaml:LINE: ..." (or "fuzz.yaml: ...") or
 * parsed without a crash, leak or undefined behaviour; what parses survives
 * a round trip: the tree written as JSON parses back (through the JSON
 * path of the same reader) to an equal tree, with a line for every
 * top-level key inside the file. Works in memory (writes no files). Run
 * with `make fuzz`; seeds in tests/fuzz/corpus/fuzz_task. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int one_line_error(const gg_err *err) {
    return strncmp(err->msg, "fuzz.yaml:", 10) == 0 && !strchr(err->msg, '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *v = NULL, *lines = NULL;
    gg_err err;
    err.msg[0] = 0;
    if (gg_task_yaml_parse(&v, &lines, (const char *)data, size, "fuzz.yaml", &err)) {
        if (v || lines || !one_line_error(&err)) __builtin_trap();
        return 0;
    }
    if (!json_is_object(v) || !json_is_object(lines)) __builtin_trap();
    int nlines = 1;
    for (size_t i = 0; i < size; i++) nlines += data[i] == '\n';
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        json_t *ln = json_object_get(lines, k);
        if (!ln) continue; /* JSON input: lines are best effort */
        json_int_t l = json_integer_value(ln);
        if (l < 1 || l > nlines) __builtin_trap();
    }
    char *js = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!js) __builtin_trap();
    json_t *back = NULL;
    if (gg_task_yaml_parse(&back, NULL, js, strlen(js), "fuzz.yaml", &err) || !json_equal(v, back)) __builtin_trap();
    json_decref(back);
    free(js);
    /* the task layer on top: refuse with one line or accept */
    gg_task *t = NULL;
    if (gg_task_parse(&t, (const char *)data, size, "fuzz.yaml", &err)) {
        if (t || !one_line_error(&err)) __builtin_trap();
    } else {
        if (!t || !gg_task_name(t)[0]) __builtin_trap();
        gg_task_free(t);
    }
    json_decref(v);
    json_decref(lines);
    return 0;
}
