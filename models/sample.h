/* sample.h — host-side next-token selection from one row of logits.
 *
 * Owns: the sampling filters and their order, as Hugging Face transformers'
 * generate() applies them: repetition penalty → temperature → top-k →
 * top-p → min-p → a draw from the softmax of what survives, with the
 * sampler's own seeded PRNG (xoshiro256**, seeded through splitmix64: the
 * same seed gives the same tokens on every platform). temp <= 0 is greedy:
 * the argmax after the repetition penalty (first index on ties).
 *
 * The OpenAI frequency / presence penalties (additive, over the same
 * history window) are applied with the repetition penalty, before the
 * temperature.
 *
 * Filter semantics (HF): top-k keeps every token whose logit is >= the
 * k-th largest (ties at the boundary survive); top-p keeps the most
 * probable tokens while the probability mass strictly above them is below
 * top_p (at least one); min-p drops tokens whose probability is below
 * min_p × the top probability. NaN logits are never chosen; +inf logits,
 * when present, share all the probability; when every logit is -inf or NaN
 * the result is the argmax fallback (the first non-NaN index, else 0).
 *
 * Cost for a vocabulary V: O(V) (penalty window, temperature, one k-heap
 * pass for top-k, value buckets for top-p, which sorts only the bucket
 * where the cumulative mass crosses top_p).
 *
 * No gg_err here: the only failures are invalid parameters
 * (gg_sample_params_check says which) and out-of-memory (NULL). */
#ifndef GG_SAMPLE_H
#define GG_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"

typedef struct gg_sample_params {
    float temp;           /* <= 0: greedy (argmax; first index on ties) */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off; HF/CTRL style: logit>0 → logit/penalty, else logit*penalty,
                             on every distinct token in the recent history */
    int repeat_last_n;    /* how much history the penalties look at (default 64; -1 = all; 0 = none) */
    float freq_penalty;   /* 0: off; OpenAI's frequency_penalty: logit -= freq_penalty × the
                             token's count in that history */
    float presence_penalty; /* 0: off; OpenAI's presence_penalty: logit -= presence_penalty
                               once for a token present in that history */
    uint64_t seed;
} gg_sample_params;

/* temp 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat 1.0, last_n 64,
 * frequency and presence penalties 0, seed 0
 * (callers substitute the time if they want). */
void gg_sample_params_default(gg_sample_params *p);

/* 0, or -1 with one line naming the bad field: temp not finite, top_p or
 * min_p NaN, repeat_penalty not finite and > 0, repeat_last_n < -1,
 * freq_penalty or presence_penalty not finite. */
int gg_sample_params_check(const gg_sample_params *p, gg_err *err);

typedef struct gg_sampler gg_sampler;

/* NULL on out-of-memory, invalid params (gg_sample_params_check) or a vocab
 * outside 1..INT32_MAX. */
gg_sampler *gg_sampler_new(const gg_sample_params *p, int64_t vocab);
void gg_sampler_free(gg_sampler *s);

/* Restart the PRNG from seed (as a fresh sampler with p.seed = seed). */
void gg_sampler_reseed(gg_sampler *s, uint64_t seed);

/* Choose the next token from logits[vocab] (modified in place: the penalty
 * is applied to it). history = tokens so far (prompt + generated); ids
 * outside [0, vocab) are ignored. */
int32_t gg_sampler_next(gg_sampler *s, float *logits, const int32_t *history, size_t n_history);

/* The distribution gg_sampler_next would draw from, without drawing (the
 * PRNG is untouched): the surviving tokens, most probable first (lower id
 * first on ties), into ids[0 .. min(n, cap)) and their probabilities into
 * probs (may be NULL); returns n, the number of survivors (may exceed cap).
 * Greedy: the argmax with probability 1. logits are modified as by
 * gg_sampler_next. For logprobs / diagnostics; sorts the survivors. */
size_t gg_sampler_dist(gg_sampler *s, float *logits, const int32_t *history, size_t n_history, int32_t *ids,
                       float *probs, size_t cap);

#endif
