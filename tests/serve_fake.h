/* serve_fake.h — a ggserve server with no sockets, no scheduler and no
 * model, for testing the request parser (serve/openai.c) in
 * tests/test_serve_unit.c and tests/fuzz_serve_request.c: tokenizer t, the
 * alpaca chat template, base model "base", one adapter "sql" (handle 3),
 * 64-token slots, vocabulary 32000, eos 2. Header-only. */
#ifndef GG_TESTS_SERVE_FAKE_H
#define GG_TESTS_SERVE_FAKE_H

#ifndef GG_SERVE_INTERNAL
#define GG_SERVE_INTERNAL
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/chat.h"
#include "serve/server.h"

static inline gg_srv *gg_test_fake_srv(gg_tokenizer *t) {
    gg_srv *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    gg_srv_opts_default(&s->o);
    s->tok = t;
    s->model_name = strdup("base");
    s->chat_template = strdup(gg_chat_builtin("alpaca"));
    s->vocab = 32000;
    s->slot_ctx = 64;
    s->eos[0] = s->eos[1] = 2;
    pthread_mutex_init(&s->mu, NULL);
    gg_met_init(&s->met);
    snprintf(s->ad[0].name, sizeof s->ad[0].name, "sql");
    s->ad[0].handle = 3;
    s->ad[0].used = 1;
    return s;
}

#endif
