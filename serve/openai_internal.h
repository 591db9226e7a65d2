/* openai_internal.h — what serve/openai.c shares with openai_stream.c and
 * openai_endpoints.c: JSON helpers, error bodies, request-field readers,
 * tokenizing, and freeing a job. Not for use outside serve/. */
#ifndef GG_SERVE_OPENAI_INTERNAL_H
#define GG_SERVE_OPENAI_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "serve/server.h"

/* A JSON number (NaN: null; ±inf: ±9999, as OpenAI clients expect a number). */
json_t *oa_jreal(double x);
/* A JSON string of n bytes; invalid UTF-8 bytes become U+FFFD. */
json_t *oa_jstr(const char *s, size_t n);
/* The bytes as a JSON array of integers (logprobs' "bytes"). */
json_t *oa_jbytes(const char *s, size_t n);
/* An OpenAI error body with HTTP status code into *status. */
char *oa_err(int *status, int code, const char *type, const char *param, const char *ecode, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
#define BAD(param, ...) oa_err(status, 400, "invalid_request_error", param, NULL, __VA_ARGS__)
/* The compact JSON text of o, which it releases. */
char *oa_dump(json_t *o);
/* A boolean field (def when absent; *bad set when not a boolean). */
int oa_get_bool(json_t *o, const char *k, int def, int *bad);
/* Token ids of text (add_special: the tokenizer's BOS etc.); 0, or -1 with *msg. */
int oa_tokenize(gg_srv *s, const char *text, size_t n, int add_special, int32_t **ids, size_t *nids, char **msg);
/* A JSON array of ids inside the vocabulary; 0, or -1 with *why. */
int oa_ids_of(gg_srv *s, json_t *a, int32_t **ids, size_t *n, const char **why);
/* A /v1/models entry. */
json_t *oa_model_obj(gg_srv *s, const char *id, const char *parent);
void oa_job_free(gg_job *j);

#endif
