/* chat.h — chat templates: conversations → prompt text.
 *
 * Owns: a Jinja-subset interpreter sufficient for the chat templates that
 * checkpoints ship in tokenizer_config.json (Llama 2, Llama 3, Qwen3,
 * Mistral, Gemma style: variables, for/if/elif/else, set, namespace, macros
 * if needed, filters such as trim/length/tojson, string concatenation, loop
 * variables, raise_exception), with output identical to @huggingface/jinja
 * (the Jinja used by transformers.js); and the built-in named templates
 * alpaca, chatml, llama2, llama3 for checkpoints without one.
 *
 * Errors: 0 / -1 with gg_err; an unknown construct is an error naming it and
 * its line:column in the template. */
#ifndef GG_CHAT_H
#define GG_CHAT_H

#include <stddef.h>

#include "ggfmt/err.h"

typedef struct gg_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} gg_chat_msg;

typedef struct gg_chat_opts {
    int add_generation_prompt;
    const char *bos_token; /* may be NULL → "" */
    const char *eos_token; /* may be NULL → "" */
} gg_chat_opts;

/* Render messages with a Jinja template source. *out is malloc'd and
 * NUL-terminated (caller frees). */
int gg_chat_render(const char *template_src, const gg_chat_msg *msgs, size_t n,
                   const gg_chat_opts *opts, char **out, size_t *out_len, gg_err *err);

/* Source of a built-in template ("alpaca", "chatml", "llama2", "llama3"), or
 * NULL if the name is unknown. */
const char *gg_chat_builtin(const char *name);

#endif
