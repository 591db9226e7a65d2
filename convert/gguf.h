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
 * Tensor types: 2-D weights in the requested type (GG_TYPE_F32, GG_TYPE_F16,
 * or GG_TYPE_Q8 meaning GGUF Q8_0: blocks of 32, f16 d = absmax/127 then 32
 * int8 round(x/d)); a weight whose columns are not a multiple of 32 falls
 * back to F16 under Q8_0. 1-D tensors (norms, biases, rope_freqs) are F32.
 *
 * Tokenizer: when the model has a "tokenizer.json" (BPE only), writes
 * tokenizer.ggml.model ("llama" for byte-fallback / SentencePiece-style BPE,
 * "gpt2" for byte-level BPE), .tokens, .scores (llama: -id for normal
 * tokens, 0 otherwise; gpt2: 0), .token_type (1 normal, 2 unknown,
 * 3 control, 4 user-defined, 6 byte), .merges, .pre (qwen2 → "qwen2", a
 * llama3-style split regex → "llama-bpe"; otherwise omitted),
 * bos/eos/unknown ids and tokenizer.chat_template / add_bos_token from
 * tokenizer.config_json. Ids missing below model.vocab_size are padded
 * with "[PADn]" user-defined tokens (as llama.cpp's converter does); a
 * tokenizer with more tokens than model.vocab_size is an error. Without a
 * tokenizer.json no tokenizer keys are written (llama.cpp then needs a
 * vocab from elsewhere).
 *
 * The file is written to PATH.tmp, fsynced and renamed (an existing PATH is
 * untouched on failure). Errors: 0 / -1 with one line naming the metadata
 * key or tensor at fault. */
#ifndef GG_GGUF_H
#define GG_GGUF_H

#include "ggfmt/err.h"
#include "ggfmt/ggfmt.h"

int gg_gguf_export(const gg_file *model, const char *path, gg_type type, gg_err *err);

#endif
