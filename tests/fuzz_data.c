/* fuzz_data.c — libFuzzer harness for the training-data pipeline
 * (models/data.h): any JSONL bytes are loaded or refused with a message,
 * never a crash, leak or undefined behaviour; what loads obeys the
 * dataset's invariants, splits, batches (packed and not) with a correct
 * flat layout, and prints in the debug view.
 *
 * Input: two option bytes, then the JSONL file (through a memfd).
 *   byte 0: format = (b & 7) % 6 (auto, alpaca, sharegpt, chat, completion,
 *           pretokenized), bit 3 skip_bad, bit 4 train_on_inputs, bit 5
 *           add_eos off, bits 6-7 the chat template (chatml, llama2,
 *           llama3, alpaca);
 *   byte 1: seq_len (0 = no limit).
 * The tokenizer is loaded once from $GG_FUZZ_TOKENIZER, default
 * tests/fixtures/tokenizers/llama2. Seeds: tests/fuzz/corpus/fuzz_data/.
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *     tests/fuzz_data.c models/data.c models/tok*.c models/chat.c models/jinja.c ggfmt/[a-z]*.c \
 *     -ljansson -lpcre2-8 -lutf8proc -lxxhash -lm -o /tmp/fuzz_data
 *   /tmp/fuzz_data -max_len=65536 tests/fuzz/corpus/fuzz_data */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "models/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gg_tokenizer *tok;
static FILE *devnull;

static void setup(void) {
    if (tok) return;
    const char *path = getenv("GG_FUZZ_TOKENIZER");
    if (!path || !*path) path = "tests/fixtures/tokenizers/llama2";
    gg_err err;
    if (gg_tokenizer_load_path(&tok, path, &err)) {
        fprintf(stderr, "fuzz_data: %s\n", err.msg);
        abort();
    }
    devnull = fopen("/dev/null", "w");
    if (!devnull) abort();
}

/* Every sample: 1..seq_len tokens, ids in the vocabulary, labels -100 or
 * in it, n_trained matching; the totals add up. */
static void check_dataset(const gg_dataset *d, size_t seq_len) {
    size_t vocab = gg_tokenizer_vocab_size(tok), nt = 0, ntr = 0;
    for (size_t i = 0; i < d->n_samples; i++) {
        const gg_sample *s = &d->s[i];
        if (!s->n || (seq_len && s->n > seq_len) || !s->n_trained || s->file >= d->n_files) __builtin_trap();
        const int32_t *ids = gg_data_ids(d, i), *lab = gg_data_labels(d, i);
        uint32_t tr = 0;
        for (uint32_t k = 0; k < s->n; k++) {
            if (ids[k] < 0 || (size_t)ids[k] >= vocab) __builtin_trap();
            if (lab[k] != GG_DATA_IGNORE && (lab[k] < 0 || (size_t)lab[k] >= vocab)) __builtin_trap();
            tr += k > 0 && lab[k] >= 0;
        }
        if (tr != s->n_trained) __builtin_trap();
        nt += s->n;
        ntr += tr;
    }
    if (nt != d->n_tokens || ntr != d->n_trained) __builtin_trap();
}

/* One epoch: layout and coverage. */
static void check_batches(const gg_dataset *d, int pack, size_t seq_len) {
    gg_batch_opts o = {.micro_batch = 2, .seq_len = seq_len, .pack = pack, .shuffle = 1, .seed = 3};
    gg_batcher *b;
    gg_err err;
    err.msg[0] = 0;
    if (gg_batcher_new(&b, d, &o, &err)) {
        if (!err.msg[0]) __builtin_trap();
        return;
    }
    size_t seen = 0;
    int64_t peek = gg_batcher_peek_targets(b, 2, NULL), got = 0;
    gg_batch x;
    for (int k = 0; gg_batcher_next(b, &x); k++) {
        if (x.n > gg_batcher_max_tokens(b) || x.n_samples < 1) __builtin_trap();
        for (int64_t j = 0; j < x.n_samples; j++)
            for (int64_t t = x.seg[j]; t < x.seg[j + 1]; t++)
                if (x.k_lo[t] != x.seg[j] || x.pos[t] != t - x.seg[j]) __builtin_trap();
        if (k < 2) got += x.n_targets;
        seen += (size_t)x.n_samples;
    }
    if (seen != d->n_samples || peek != got) __builtin_trap();
    gg_batcher_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const tmpl[4] = {"chatml", "llama2", "llama3", "alpaca"};
    static int fd = -1;
    setup();
    if (size < 2) return 0;
    if (fd < 0) fd = memfd_create("fuzz_data", 0);
    if (fd < 0) return 0;
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data + 2, size - 2, 0) != (ssize_t)(size - 2)) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    gg_data_opts o = gg_data_opts_default();
    o.format = (gg_data_format)((data[0] & 7) % 6);
    o.skip_bad = data[0] >> 3 & 1;
    o.train_on_inputs = data[0] >> 4 & 1;
    o.add_eos = !(data[0] >> 5 & 1);
    o.chat_template = tmpl[data[0] >> 6];
    o.seq_len = data[1];
    o.n_threads = 1; /* the threaded path is the same per line; tests/test_data.c runs it under TSan */
    gg_dataset d = {0};
    gg_err err;
    err.msg[0] = 0;
    if (gg_data_load(&d, path, tok, &o, &err)) {
        if (!err.msg[0] || strchr(err.msg, '\n')) __builtin_trap(); /* one line, always */
        if (d.n_samples || d.n_files) __builtin_trap();              /* rolled back */
        gg_data_free(&d);
        return 0;
    }
    check_dataset(&d, o.seq_len);
    gg_data_debug(devnull, &d, tok, 4);
    if (d.n_samples) {
        check_batches(&d, 0, o.seq_len);
        if (o.seq_len) check_batches(&d, 1, o.seq_len);
    }
    gg_dataset val = {0};
    if (d.n_samples >= 2 && gg_data_split(&d, &val, 0.5, data[1], &err) == 0) {
        check_dataset(&d, o.seq_len);
        check_dataset(&val, o.seq_len);
    }
    gg_data_free(&val);
    gg_data_free(&d);
    return 0;
}
