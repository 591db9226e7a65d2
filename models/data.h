/* data.h — the training-data pipeline: JSONL files → tokenized samples with
 * loss labels → deterministic (shuffled, packed) flat micro-batches.
 *
 * Owns: reading JSONL in the formats below, tokenizing and masking them,
 * truncation, the load statistics, train/validation splitting, batching
 * with packing and per-epoch shuffling that resumes from a tiny state, and
 * the debug view of what is trained.
 *
 * Formats (one JSON object per line; blank lines are skipped; "auto" picks
 * the format of each file from the first valid line's keys, in this order:
 * instruction → alpaca, conversations → sharegpt, messages → chat,
 * text → completion, input_ids → pretokenized; every later line of that file
 * must be of the same format):
 *   alpaca        {"instruction", "input" (optional; "" = none), "output"}:
 *                 ids = encode(prompt, add_special) ++ encode(output, no
 *                 special) ++ [EOS]; prompt is the exact Stanford Alpaca
 *                 prompt (with or without its input block). The output is
 *                 encoded on its own so the prompt/response boundary is
 *                 exact (SentencePiece tokenizers thus begin it with "▁").
 *                 Labels: prompt -100, response (and EOS) trained.
 *   sharegpt      {"conversations": [{"from": system|human|user|gpt|assistant,
 *                 "value"}]}, and
 *   chat          {"messages": [{"role", "content"}]}: rendered with the chat
 *                 template (gg_data_opts.chat_template, else the tokenizer's;
 *                 neither is an error) with bos_token / eos_token from the
 *                 tokenizer, and tokenized WITHOUT the post-processor's
 *                 special tokens, as transformers' apply_chat_template does
 *                 (templates write their own BOS). Only assistant turns are
 *                 trained. Method: the whole conversation T is tokenized
 *                 once; for assistant message i the text before it P_i
 *                 (messages[0..i) with add_generation_prompt, or without it
 *                 when that is not a prefix of T) and through it Q_i
 *                 (messages[0..i]) are rendered and tokenized; the span
 *                 trained is [LCP(tok(P_i), tok(T)), LCP(tok(Q_i), tok(T)))
 *                 (LCP = longest common token prefix), widened by one token
 *                 at the end when tok(Q_i) is not a prefix of tok(T): a token
 *                 straddling a boundary is trained. Limitation: P_i and Q_i
 *                 must be text prefixes of T; a template that renders an
 *                 assistant turn differently inside a conversation than at
 *                 its end (e.g. Qwen3's thinking blocks) is refused for that
 *                 line ("renders ... differently"); use another template.
 *                 EOS: when the last message is an assistant's and add_eos is
 *                 set, EOS is appended unless that last trained span already
 *                 holds a special token (EOS, <|im_end|>, <|eot_id|>, ... as
 *                 the tokenizer marks them); when EOS is appended, the
 *                 template's text after the last assistant turn is trained
 *                 too (so the model learns the turn's end, then EOS).
 *   completion    {"text"}: encode(text, add_special) ++ [EOS], all trained.
 *   pretokenized  {"input_ids": [int], "labels": [int] (optional, same
 *                 length, -100 = ignored)}: ids as given (checked against
 *                 the vocab size), no EOS; without labels all trained.
 * EOS is never appended twice (not when the ids already end with it), and
 * only when gg_data_opts.add_eos is set; a tokenizer without an EOS token
 * then is an error. An empty instruction, output, text, input_ids or
 * message list, or an empty role, is a line error; empty message content
 * is allowed.
 *
 * Labels are unshifted, HF style: labels[i] = ids[i] (trained) or -100. The
 * token a label trains is predicted from the tokens before it, so labels[0]
 * is never a target: a sample's trained count is that of labels[1..n) >= 0.
 * train_on_inputs: every token is trained (prompt and template text too).
 *
 * Truncation: a sample longer than seq_len (0 = no limit) keeps its first
 * seq_len tokens (n_truncated counts them). Nothing is dropped silently: a
 * sample with no trained token left (after truncation) is dropped and
 * counted in n_no_targets, a bad line skipped under skip_bad is counted in
 * n_skipped; the caller reports both.
 *
 * Batching: the order of epoch e is a permutation that depends only on
 * (seed, e) (Fisher–Yates driven by splitmix64), so (epoch, cursor) is all
 * the state a checkpoint needs. A micro-batch is FLAT: its samples are laid
 * back to back (see gg_batch). Without packing it holds up to micro_batch
 * samples; with packing up to micro_batch rows, each row filled greedily in
 * the epoch's order with whole samples while the row stays <= seq_len (the
 * next sample that does not fit starts a new row). A sample is never split.
 * Rows are not padded: the flat batch is the plain concatenation, and rows
 * only bound which samples one micro-batch takes (at most
 * micro_batch × seq_len tokens).
 *
 * Loading runs gg_data_opts.n_threads threads over chunks of lines and
 * merges their results in line order: the dataset, the statistics and the
 * error reported (the first bad line) are the same for any thread count.
 * Cost: chat/sharegpt lines tokenize the conversation 1 + 2 × (assistant
 * turns) times (the prefixes above).
 *
 * Errors: 0 / -1 with gg_err, one line; a bad line is "PATH:LINE: what is
 * wrong" (control characters of quoted data shown as '?'). Errors that are
 * not a line's fault (no chat template, no EOS token while add_eos) stop the
 * load even under skip_bad. Objects are not thread-safe; distinct objects
 * are independent. */
#ifndef GG_DATA_H
#define GG_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ggfmt/err.h"
#include "models/tokenizer.h"

#define GG_DATA_IGNORE (-100)

typedef enum gg_data_format {
    GG_DATA_AUTO = 0,
    GG_DATA_ALPACA,
    GG_DATA_SHAREGPT,
    GG_DATA_CHAT,
    GG_DATA_COMPLETION,
    GG_DATA_PRETOKENIZED,
} gg_data_format;

/* "auto", "alpaca", "sharegpt", "chat", "completion", "pretokenized" → 0,
 * or -1 with an error listing the names. */
int gg_data_format_from_name(const char *name, gg_data_format *out, gg_err *err);
const char *gg_data_format_name(gg_data_format f);

typedef struct gg_data_opts {
    gg_data_format format;
    size_t seq_len;            /* truncate longer samples; 0 = no limit */
    int train_on_inputs;       /* train every token, prompts included */
    int add_eos;               /* append EOS (see above); default 1 */
    int skip_bad;              /* skip (and count) malformed lines instead of failing */
    const char *chat_template; /* Jinja source or a built-in name (gg_chat_builtin);
                                  NULL = the tokenizer's */
    size_t vocab;              /* without a tokenizer (tok NULL: pretokenized data
                                  only), the vocabulary size ids are checked against */
    int n_threads;             /* tokenizing threads; 0 = the online CPUs (at most
                                  GG_DATA_MAX_THREADS). The result never depends on it. */
} gg_data_opts;

#define GG_DATA_MAX_THREADS 64

/* The defaults: auto, no truncation, add_eos = 1, everything else off. */
gg_data_opts gg_data_opts_default(void);

typedef struct gg_sample {
    size_t off;         /* into gg_dataset.ids / labels */
    uint32_t n;         /* tokens */
    uint32_t n_trained; /* labels[1..n) >= 0: the sample's targets */
    uint32_t line;      /* 1-based JSONL line */
    uint32_t file;      /* index into gg_dataset.files */
    int truncated;
} gg_sample;

typedef struct gg_dataset {
    gg_sample *s;
    size_t n_samples, cap_samples;
    int32_t *ids, *labels; /* all samples back to back */
    size_t cap_tokens;
    char **files;          /* the paths loaded */
    size_t n_files;
    /* statistics (n_tokens / n_trained / n_truncated over the samples kept) */
    size_t n_tokens, n_trained, n_truncated, n_skipped, n_no_targets;
} gg_dataset;

/* Load one JSONL file and APPEND its samples to *out (zero it first:
 * gg_dataset d = {0}; several files may be loaded into one dataset).
 * tok: required except for pretokenized data, whose ids are checked
 * against its vocab size (or o->vocab when tok is NULL).
 * o: NULL = gg_data_opts_default(). On error *out holds what it held before
 * the call (statistics included); free it as usual. */
int gg_data_load(gg_dataset *out, const char *path, const gg_tokenizer *tok, const gg_data_opts *o,
                 gg_err *err);
void gg_data_free(gg_dataset *d);

static inline const int32_t *gg_data_ids(const gg_dataset *d, size_t i) { return d->ids + d->s[i].off; }
static inline const int32_t *gg_data_labels(const gg_dataset *d, size_t i) { return d->labels + d->s[i].off; }

/* Move validation samples out of *all into *val (zeroed or freed before):
 * val_amount < 1 is a fraction (round(fraction·n), at least 1 when > 0),
 * >= 1 a whole count. The choice depends only on (seed, n); both sets keep
 * the original order; at least one training sample must remain. Statistics
 * are recomputed for both; n_skipped / n_no_targets stay with *all. */
int gg_data_split(gg_dataset *all, gg_dataset *val, double val_amount, uint64_t seed, gg_err *err);

/* Each sample: "PATH:LINE n=.. trained=.." then its tokens as
 * id:"piece":T|M (T = label >= 0, M = masked), the piece escaped (\n, \t,
 * \", \\, \xNN for other control bytes); then the summary line (as
 * gg_data_summary). max_samples: 0 = all. */
void gg_data_debug(FILE *f, const gg_dataset *d, const gg_tokenizer *tok, size_t max_samples);
/* "N samples, N tokens, N trained, N truncated, N skipped, N no-target" (no newline). */
void gg_data_summary(const gg_dataset *d, char *buf, size_t cap);

/* ---- batching ---- */
typedef struct gg_batch_opts {
    size_t micro_batch; /* samples (no packing) or rows (packing) per micro-batch, >= 1 */
    size_t seq_len;     /* row length when packing; with or without packing no sample may be longer */
    int pack;
    int shuffle;        /* 0: every epoch in file order */
    uint64_t seed;
} gg_batch_opts;

/* All a checkpoint needs to resume: the epoch and the samples of its order
 * consumed so far. */
typedef struct gg_batcher_state {
    uint64_t epoch;
    uint64_t cursor;
} gg_batcher_state;

/* A flat micro-batch (arrays owned by the batcher, valid until its next
 * call). Token t: ids[t]; pos[t] its position in its own sample (0 at each
 * sample start); k_lo[t] the flat index of its sample's first token
 * (attention sees keys k_lo[t]..t); targets[t] = labels[t+1] of the same
 * sample, -100 at each sample's last token. Sample j spans
 * [seg[j], seg[j+1]) and is dataset sample sample[j]; row[j] is its packed
 * row (= j without packing). */
typedef struct gg_batch {
    int32_t *ids, *pos, *k_lo, *targets;
    int64_t n, n_targets, n_samples, n_rows;
    int64_t *seg;       /* n_samples + 1 */
    uint32_t *sample;   /* n_samples */
    uint32_t *row;      /* n_samples */
} gg_batch;

typedef struct gg_batcher gg_batcher;

/* d must outlive the batcher and not change. Error when a sample is longer
 * than o->seq_len (load with the same seq_len), or the dataset is empty. */
int gg_batcher_new(gg_batcher **out, const gg_dataset *d, const gg_batch_opts *o, gg_err *err);
void gg_batcher_free(gg_batcher *b);

/* Fill the next micro-batch of the current epoch: 1, or 0 at the end of the
 * epoch (then *out is empty; call gg_batcher_next_epoch to go on). */
int gg_batcher_next(gg_batcher *b, gg_batch *out);
void gg_batcher_next_epoch(gg_batcher *b); /* state = {epoch + 1, 0} */

gg_batcher_state gg_batcher_get_state(const gg_batcher *b);
/* Resume: the cursor must be <= the number of samples. */
int gg_batcher_set_state(gg_batcher *b, gg_batcher_state s, gg_err *err);

/* Data parallelism: rank `rank` of `size` ranks takes its share of a
 * global micro-batch b — whole packed rows (whole samples without packing),
 * rows [rank·R/size, (rank+1)·R/size) of b's R rows, so the shares of all
 * ranks are b. out's ids, pos and targets point into b; k_lo is rebased into
 * k_lo_buf (b->n ints); seg, sample and row point into b's (seg values are
 * b's offsets). A share may be empty (n = 0) when b has fewer rows than
 * there are ranks. */
void gg_batch_shard(const gg_batch *b, int rank, int size, gg_batch *out, int32_t *k_lo_buf);

/* Without consuming anything: the target tokens of the next k micro-batches
 * of the current epoch (fewer at its end: *n_batches gets how many there
 * are; may be NULL; it never looks into the next epoch). For gradient
 * accumulation normalised by the target tokens of an optimizer step. */
int64_t gg_batcher_peek_targets(const gg_batcher *b, size_t k, size_t *n_batches);
/* Micro-batches in epoch e (with packing it depends on e's order). */
size_t gg_batcher_epoch_batches(gg_batcher *b, uint64_t epoch);
/* The most tokens any micro-batch can hold (for gg_train_cfg.max_tokens). */
int64_t gg_batcher_max_tokens(const gg_batcher *b);

#endif
