/* gguf.h — a .gg model → one GGUF v3 file that llama.cpp loads.
 *
 * Owns: the GGUF v3 writer (header, typed key/values, tensor infos, 32-byte
 * aligned data), the canonical → llama.cpp tensor names, the q/k row
 * permutation llama.cpp's "llama" architecture expects (HF rotate-half →
 * interleaved RoPE layout: new row h*hd + 2i + j = old row h*hd + j*hd/2 + i),
 * llama3 RoPE scaling as the rope_freqs.weight tensor, and the tokenizer
 * keys (tokenizer.ggml.*) built from the verbatim tokenizer.json.
 *
 * Supported: general.architecture llama and mistral (written as GGUF
 * "llama", q/k permuted) and qwen2 ("qwen2", NeoX RoPE, not permuted);
 * RMSNorm + SwiGLU only; RoPE default, linear (rope.scaling.*) and llama3
 * (rope_freqs.weight). Refused with one line: gemma, falcon, any other
 * architecture, another norm/MLP kind, parallel attention, an embedding
 * scale, tensors with no llama.cpp name.
 *
 * Tensor types: 2-D weights in the requested type: F32, F16, Q8_0 (blocks
 * of 32: f16 d = absmax/127, then 32 int8 round(x/d)) or Q4_0 (blocks of
 * 32: f16 d = m/-8 where m is the value of largest magnitude, then 16 bytes
 * whose low nibbles hold elements 0..15 and high nibbles 16..31, each
 * min(15, trunc(x/d + 8.5))); a weight whose columns are not a multiple of
 * 32 falls back to F16 under Q8_0 / Q4_0. 1-D tensors (norms, biases,
 * rope_freqs) are F32.
 *
 * Tokenizer: when the model has a "tokenizer.json" (BPE only), writes
 * tokenizer.ggml.model ("llama" for byte-fallback / SentencePiece-style BPE,
 * "gpt2" for byte-level BPE), .tokens, .scores (llama: -r for a normal
 * token first made by merge rank r, below every merge for one no merge
 * makes, so llama.cpp's score-driven SentencePiece merging follows the BPE
 * merge order; 0 otherwise), .token_type (1 normal, 2 unknown, 3 control,
 * 4 user-defined, 6 byte), .merges, .pre (a split regex with \p{N}{1,3} →
 * "llama-bpe"; one with single \p{N} or architecture qwen2 → "qwen2";
 * otherwise omitted),
 * bos/eos/unknown ids and tokenizer.chat_template / add_bos_token from
 * tokenizer.config_json. Ids missing below model.vocab_size are padded
 * with "[PADn]" user-defined tokens (as llama.cpp's converter does); a
 * tokenizer with more tokens than model.vocab_size is an error. Without a
 * tokenizer.json only tokenizer.ggml.model = "none" is written (llama.cpp
 * requires the key; such a model runs on token ids only).
 *
 * The file is written to PATH.tmp, fsynced and renamed (an existing PATH is
 * untouched on failure). Errors: 0 / -1 with one line naming the metadata
 * key or tensor at fault. */
#ifndef GG_GGUF_H
#define GG_GGUF_H

#include "ggfmt/err.h"
#include "ggfmt/ggfmt.h"

/* The weights' type in the GGUF file (values are ggml's type ids). */
typedef enum gg_gguf_type { GG_GGUF_F32 = 0, GG_GGUF_F16 = 1, GG_GGUF_Q4_0 = 2, GG_GGUF_Q8_0 = 8 } gg_gguf_type;

/* "f32", "f16", "q4_0", "q8_0". */
const char *gg_gguf_type_name(gg_gguf_type t);

int gg_gguf_export(const gg_file *model, const char *path, gg_gguf_type type, gg_err *err);

#endif
