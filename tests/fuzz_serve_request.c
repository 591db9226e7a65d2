/* fuzz_serve_request.c — libFuzzer harness for ggserve's request parser
 * (gg_oa_parse, serve/openai.c: JSON bodies of /v1/completions and
 * /v1/chat/completions → a job of tokenized prompts and sampling options).
 * The first input byte picks the endpoint (odd: chat), the rest is the
 * body. Any input must give either a job or a 4xx status with an
 * OpenAI-style error object {"error": {"message", "type", ...}} — never a
 * crash, a leak or undefined behaviour. The server is a fake one (no
 * sockets, no scheduler, no model): the Llama 2 tokenizer of
 * tests/fixtures/tokenizers/llama2 (run from the repo root), the alpaca chat
 * template, one adapter "sql", 64-token slots. Run with `make fuzz`; seeds in
 * tests/fuzz/corpus/fuzz_serve_request. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/serve_fake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gg_srv *srv;

static gg_srv *fake_srv(void) {
    gg_tokenizer *t = NULL;
    gg_err err;
    if (gg_tokenizer_load_path(&t, "tests/fixtures/tokenizers/llama2", &err)) {
        fprintf(stderr, "fuzz_serve_request: %s (run from the repository root)\n", err.msg);
        abort();
    }
    gg_srv *s = gg_test_fake_srv(t);
    if (!s) abort();
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!srv) srv = fake_srv();
    if (size < 1) return 0;
    int chat = data[0] & 1, status = 0;
    char *ej = NULL;
    gg_job *j = gg_oa_parse(srv, chat, (const char *)data + 1, size - 1, &status, &ej);
    if (j) {
        gg_job_release(j);
    } else {
        if (status < 400 || status > 499) __builtin_trap();
        json_t *o = ej ? json_loads(ej, 0, NULL) : NULL, *e = json_object_get(o, "error");
        if (!e || !json_is_string(json_object_get(e, "message")) || !json_is_string(json_object_get(e, "type")))
            __builtin_trap();
        json_decref(o);
    }
    free(ej);
    return 0;
}
