/* hf_export.h — a .gg model → a Hugging Face checkpoint folder that
 * transformers loads (ggmerge / ggconvert --hf-out DIR).
 *
 * Owns: the inverse of the canonical mapping of hf_model.h (canonical
 * tensor names → HF names of llama / mistral / qwen2 / gemma / falcon,
 * Falcon's q, k, v re-fused into query_key_value in the row layout
 * gg_falcon_qkv_segs gives), dequantizing any stored type and converting to
 * the output dtype, sharding, and writing back the files the converter kept
 * verbatim in the metadata (docs/FORMAT.md §6):
 *
 *   source.config_json                → config.json (torch_dtype / dtype set
 *                                       to the output dtype)
 *   source.generation_config_json     → generation_config.json
 *   tokenizer.json                    → tokenizer.json
 *   tokenizer.config_json             → tokenizer_config.json
 *   tokenizer.special_tokens_map_json → special_tokens_map.json
 *
 * Weights go to DIR/model.safetensors, or with shard_bytes > 0 and more than
 * one shard needed to DIR/model-0000i-of-0000N.safetensors plus
 * model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map"}).
 * A stale model.safetensors / index.json of the other layout is removed so
 * loaders see only the new checkpoint. Every file is written atomically
 * (NAME.tmp, fsync, rename); DIR is created if missing (one level).
 *
 * Exact: a tensor stored in dtype is copied byte for byte, so .gg → HF → .gg
 * (ggconvert with the same -t) gives identical tensors; f32 → bf16/f16 rounds
 * to nearest even (f16 rejects values out of its range).
 *
 * Errors: 0 / -1 with one line in gg_err naming the file, metadata key or
 * tensor at fault; files already written are left in DIR. */
#ifndef GG_HF_EXPORT_H
#define GG_HF_EXPORT_H

#include <stddef.h>

#include "ggfmt/err.h"
#include "ggfmt/ggfmt.h"

/* Export model (gg.kind model with source.config_json) to dir. dtype is
 * GG_TYPE_F32, GG_TYPE_F16 or GG_TYPE_BF16; shard_bytes 0 = one file. */
int gg_hf_export(const gg_file *model, const char *dir, gg_type dtype, size_t shard_bytes, gg_err *err);

#endif
