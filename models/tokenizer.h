/* tokenizer.h — Hugging Face tokenizers (tokenizer.json) in C, byte-for-byte
 * identical to the `tokenizers` library for the models gg supports.
 *
 * Owns: loading tokenizer.json (+ tokenizer_config.json when given) from
 * memory, a file, an HF folder or a .gg file's metadata; BPE (byte-level and
 * SentencePiece-style with byte_fallback), normalizers (NFC, NFKC, Prepend,
 * Replace, Sequence, ...), pre-tokenizers (Split with PCRE2 regexes,
 * ByteLevel, Metaspace, Sequence, ...), added/special tokens (lstrip,
 * rstrip, normalized, single_word), the TemplateProcessing post-processor,
 * and the decoders (ByteLevel, Replace, ByteFallback, Fuse, Strip, ...).
 * Unsupported components are refused at load with an error naming them.
 *
 * Thread safety: a loaded gg_tokenizer is read-only; encode/decode may be
 * called from several threads at once.
 * Errors: 0 / -1 with gg_err (ggfmt/err.h). */
#ifndef GG_TOKENIZER_H
#define GG_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"
#include "ggfmt/ggfmt.h"

typedef struct gg_tokenizer gg_tokenizer;

/* tokenizer.json text (required) and tokenizer_config.json text (optional,
 * may be NULL: it supplies bos/eos tokens, add_bos_token/add_eos_token and
 * the chat template); label names the source in errors. */
int gg_tokenizer_load_json(gg_tokenizer **out, const char *json, size_t len, const char *config_json,
                           size_t config_len, const char *label, gg_err *err);
/* A tokenizer.json file, or an HF folder holding tokenizer.json (and
 * tokenizer_config.json if present). */
int gg_tokenizer_load_path(gg_tokenizer **out, const char *path, gg_err *err);
/* From a .gg model's metadata (keys tokenizer.json, tokenizer.config_json). */
int gg_tokenizer_load_gg(gg_tokenizer **out, const gg_file *f, gg_err *err);
void gg_tokenizer_free(gg_tokenizer *t);

/* Encode text (any bytes; invalid UTF-8 is handled as HF does for a Rust
 * String built lossily: each maximal invalid subsequence becomes U+FFFD, as
 * String::from_utf8_lossy; NUL is an ordinary character) into *ids
 * (malloc'd, caller frees; never NULL on success). add_special: as HF's
 * add_special_tokens=True (the post-processor's BOS/EOS: tokenizer.json's
 * post_processor decides, as in the Rust library; tokenizer_config.json's
 * add_bos_token/add_eos_token do not change it). */
int gg_tokenizer_encode(const gg_tokenizer *t, const char *text, size_t len, int add_special,
                        int32_t **ids, size_t *n, gg_err *err);
/* Decode ids into *text (malloc'd, NUL-terminated, caller frees); ids out
 * of range are an error naming the id. skip_special: as HF's
 * skip_special_tokens. */
int gg_tokenizer_decode(const gg_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                        char **text, size_t *len, gg_err *err);

size_t gg_tokenizer_vocab_size(const gg_tokenizer *t); /* including added tokens */
/* The token's string as stored in the vocabulary (NULL if out of range). */
const char *gg_tokenizer_piece(const gg_tokenizer *t, int32_t id);
/* Id of a token string (vocab or added token), or -1. */
int32_t gg_tokenizer_find(const gg_tokenizer *t, const char *piece);
int gg_tokenizer_is_special(const gg_tokenizer *t, int32_t id);
/* From tokenizer_config.json when given (else -1 / NULL). */
int32_t gg_tokenizer_bos_id(const gg_tokenizer *t);
int32_t gg_tokenizer_eos_id(const gg_tokenizer *t);
const char *gg_tokenizer_bos_token(const gg_tokenizer *t);
const char *gg_tokenizer_eos_token(const gg_tokenizer *t);
const char *gg_tokenizer_chat_template(const gg_tokenizer *t); /* NULL if none */

#endif
