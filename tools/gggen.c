/* gggen — generate text (or token ids) with a .gg model, optionally with
 * LoRA adapters applied unmerged.
 *
 *   gggen -m MODEL.gg [-a ADAPTER[:SCALE]]... [-p PROMPT | --ids "1 2 3" | stdin]
 *         [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P]
 *         [--repeat-penalty R] [--frequency-penalty F] [--presence-penalty P] [--seed S] [--stop STR]... [--chat]
 *         [--print-ids] [--dump-logits FILE] [--threads N] [--device cpu|cuda]
 *
 * Text streams to stdout as it is generated; statistics go to stderr.
 * Flags and printing only: the model is models/, sampling models/sample.c. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "models/chat.h"
#include "models/sample.h"
#include "models/tokenizer.h"
#include "tools/common.h"
#include "tools/engine.h"

static const char *TOOL = "gggen";
#define MAX_ADAPTERS 16
#define MAX_STOPS 16

static void usage(FILE *f) {
    fprintf(f,
            "usage: gggen -m MODEL.gg [options]\n"
            "Generate from a prompt given with -p, --ids, or on stdin.\n"
            "\n"
            "  -m, --model FILE        the .gg model\n"
            "  -a, --adapter A[:S]     LoRA adapter (.gg file or PEFT folder) with scale S\n"
            "                          (default 1); repeat for several\n"
            "  -p, --prompt TEXT       the prompt text (encoded with the model's tokenizer,\n"
            "                          special tokens added as transformers does)\n"
            "      --ids \"1 2 3\"       the prompt as token ids\n"
            "  -n, --n-predict N       tokens to generate (default 128; 0: only evaluate\n"
            "                          the prompt)\n"
            "      --temp T            temperature (default 0.8; 0 = greedy)\n"
            "      --top-k K           keep the K most likely tokens (default 40; 0 = off)\n"
            "      --top-p P           nucleus sampling (default 0.95; 1 = off)\n"
            "      --min-p P           drop tokens below P x the top probability (default\n"
            "                          0.05; 0 = off)\n"
            "      --repeat-penalty R  penalise tokens of the last 64 (default 1 = off)\n"
            "      --frequency-penalty F  subtract F x its count in the last 64 from a\n"
            "                          token's logit (OpenAI's; -2..2, default 0 = off)\n"
            "      --presence-penalty P  subtract P once from a token in the last 64\n"
            "                          (OpenAI's; -2..2, default 0 = off)\n"
            "      --seed S            sampling seed (default: from the clock)\n"
            "      --stop STR          stop when the output contains STR (not printed);\n"
            "                          repeatable\n"
            "      --ignore-eos        do not stop at the end-of-sequence token\n"
            "      --chat              the prompt is a user message: apply the model's chat\n"
            "                          template (or --template NAME|FILE)\n"
            "      --template T        chat template: alpaca, chatml, llama2, llama3 or a file\n"
            "      --system TEXT       with --chat: a system message first\n"
            "      --print-ids         print generated token ids, space separated, not text\n"
            "      --dump-logits FILE  write float32 logits of every prompt position,\n"
            "                          [prompt_len, vocab], little-endian, no header\n"
            "      --ctx N             KV cache size (default: prompt + N, at most the\n"
            "                          model's context length)\n"
            "      --batch N           prompt tokens per forward step (default 512)\n"
            "      --int8-matmul       prompt matmuls on q8/nf4 weights with 8-bit activations\n"
            "                          and int8 dot products (AVX-512 VNNI; llama.cpp's way):\n"
            "                          faster prompts, logits off by the 8-bit rounding\n"
            "  -t, --threads N         CPU threads (default: number of cores)\n"
            "      --device D          cpu (default) or cuda\n"
            "  -q, --quiet             no statistics line\n"
            "  -h, --help              this help\n"
            "      --version           print the version\n");
}

/* ---- prompt ---- */

static int32_t *parse_ids(const char *s, size_t *n) {
    size_t cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    *n = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX)
            gg_die(TOOL, "--ids: '%.20s' at offset %zu is not a token id", p, (size_t)(p - s));
        if (*n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        if (!ids) gg_die(TOOL, "out of memory");
        ids[(*n)++] = (int32_t)v;
        p = end;
    }
    return ids;
}

/* ---- streaming text output ----
 * Text is decoded from a window of ids (a few tokens before the unprinted
 * ones, so decoders that strip a leading space see context), held back
 * while it ends in an incomplete UTF-8 sequence (U+FFFD) or could be the
 * start of a --stop string. */
typedef struct streamer {
    const gg_tokenizer *tok;
    const int32_t *ids;
    size_t prefix, read; /* window [prefix, read) was decoded and printed */
    char *pending;       /* decoded, not yet printed (stop-string holdback) */
    size_t npending;
    const char **stops;
    int nstops;
    size_t max_stop;
    int stopped;
} streamer;

static int ends_replacement(const char *s, size_t n) {
    return n >= 3 && (unsigned char)s[n - 3] == 0xEF && (unsigned char)s[n - 2] == 0xBF &&
           (unsigned char)s[n - 1] == 0xBD;
}

static char *decode(const streamer *st, size_t a, size_t b, size_t *len) {
    char *t;
    gg_err err;
    if (gg_tokenizer_decode(st->tok, st->ids + a, b - a, 0, &t, len, &err)) gg_die(TOOL, "%s", err.msg);
    return t;
}

/* Print pending text, keeping back what could begin a stop string unless final. */
static void flush_pending(streamer *st, int final) {
    for (int i = 0; i < st->nstops; i++) {
        char *hit = memmem(st->pending, st->npending, st->stops[i], strlen(st->stops[i]));
        if (hit) {
            fwrite(st->pending, 1, (size_t)(hit - st->pending), stdout);
            st->npending = 0;
            st->stopped = 1;
            fflush(stdout);
            return;
        }
    }
    size_t keep = final || !st->max_stop ? 0 : st->max_stop - 1;
    if (keep > st->npending) keep = st->npending;
    size_t out = st->npending - keep;
    if (!st->pending) return; /* nothing was ever generated (-n 0) */
    fwrite(st->pending, 1, out, stdout);
    memmove(st->pending, st->pending + out, keep);
    st->npending = keep;
    fflush(stdout);
}

/* ids now holds n tokens; print what the new ones add. */
static void stream_step(streamer *st, size_t n) {
    size_t plen, nlen;
    char *prev = decode(st, st->prefix, st->read, &plen);
    char *now = decode(st, st->prefix, n, &nlen);
    if (nlen > plen && !ends_replacement(now, nlen)) {
        size_t add = nlen - plen;
        char *np = realloc(st->pending, st->npending + add);
        if (!np) gg_die(TOOL, "out of memory");
        st->pending = np;
        memcpy(st->pending + st->npending, now + plen, add);
        st->npending += add;
        st->prefix = st->read;
        st->read = n;
        flush_pending(st, 0);
    }
    free(prev);
    free(now);
}

static void write_logits(const char *path, const float *x, size_t n) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) gg_die(TOOL, "--dump-logits %s: %s", tmp, strerror(errno));
    int bad = fwrite(x, sizeof *x, n, f) != n;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        gg_die(TOOL, "--dump-logits %s: %s", path, strerror(errno));
    }
}

static char *render_chat(const gg_tokenizer *tok, const char *template_arg, const char *system, const char *user) {
    const char *src = NULL;
    char *file = NULL;
    if (template_arg && gg_chat_builtin(template_arg)) src = gg_chat_builtin(template_arg);
    else if (template_arg) {
        FILE *f = fopen(template_arg, "rb");
        if (!f) gg_die(TOOL, "--template '%s': not a built-in (alpaca, chatml, llama2, llama3) and not a readable file",
                       template_arg);
        src = file = gg_read_stream(f, NULL);
        fclose(f);
        if (!file) gg_die(TOOL, "--template '%s': %s", template_arg, strerror(errno));
    } else if (!(src = gg_tokenizer_chat_template(tok))) {
        gg_die(TOOL, "the model has no chat template: pass --template alpaca|chatml|llama2|llama3|FILE");
    }
    gg_chat_msg msgs[2];
    size_t nm = 0;
    if (system) msgs[nm++] = (gg_chat_msg){"system", system};
    msgs[nm++] = (gg_chat_msg){"user", user};
    gg_chat_opts o = {.add_generation_prompt = 1, .bos_token = gg_tokenizer_bos_token(tok),
                      .eos_token = gg_tokenizer_eos_token(tok)};
    char *out;
    size_t len;
    gg_err err;
    if (gg_chat_render(src, msgs, nm, &o, &out, &len, &err)) gg_die(TOOL, "chat template: %s", err.msg);
    free(file);
    return out;
}

static float parse_float(const char *opt, const char *s, double lo, double hi) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) gg_die(TOOL, "%s: '%s' is not a number from %g to %g", opt, s, lo, hi);
    return (float)v;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *ids_arg = NULL, *dump = NULL, *device = "cpu";
    const char *template_arg = NULL, *system = NULL;
    const char *adapters[MAX_ADAPTERS], *stops[MAX_STOPS];
    int nad = 0, nstops = 0, chat = 0, print_ids = 0, quiet = 0, ignore_eos = 0, seed_set = 0, int8 = 0;
    long n_predict = 128, threads = 0, n_ctx_arg = 0, batch = 512;
    gg_sample_params sp;
    gg_sample_params_default(&sp);
    enum { O_IDS = 256, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_REP, O_SEED, O_STOP, O_CHAT, O_PRINTIDS, O_DUMP,
           O_DEVICE, O_VERSION, O_TEMPLATE, O_SYSTEM, O_CTX, O_BATCH, O_IGNORE_EOS, O_FREQ, O_PRES, O_INT8 };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},        {"adapter", required_argument, 0, 'a'},
        {"prompt", required_argument, 0, 'p'},       {"ids", required_argument, 0, O_IDS},
        {"n-predict", required_argument, 0, 'n'},    {"temp", required_argument, 0, O_TEMP},
        {"top-k", required_argument, 0, O_TOPK},     {"top-p", required_argument, 0, O_TOPP},
        {"min-p", required_argument, 0, O_MINP},     {"repeat-penalty", required_argument, 0, O_REP},
        {"seed", required_argument, 0, O_SEED},      {"stop", required_argument, 0, O_STOP},
        {"chat", no_argument, 0, O_CHAT},            {"print-ids", no_argument, 0, O_PRINTIDS},
        {"dump-logits", required_argument, 0, O_DUMP}, {"threads", required_argument, 0, 't'},
        {"device", required_argument, 0, O_DEVICE},  {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},               {"version", no_argument, 0, O_VERSION},
        {"template", required_argument, 0, O_TEMPLATE}, {"system", required_argument, 0, O_SYSTEM},
        {"ctx", required_argument, 0, O_CTX},        {"batch", required_argument, 0, O_BATCH},
        {"ignore-eos", no_argument, 0, O_IGNORE_EOS}, {"frequency-penalty", required_argument, 0, O_FREQ},
        {"presence-penalty", required_argument, 0, O_PRES}, {"int8-matmul", no_argument, 0, O_INT8},
        {0, 0, 0, 0}};
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":m:a:p:n:t:qh", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': model_path = optarg; break;
        case 'a':
            if (nad == MAX_ADAPTERS) gg_die(TOOL, "at most %d adapters", MAX_ADAPTERS);
            adapters[nad++] = optarg;
            break;
        case 'p': prompt = optarg; break;
        case O_IDS: ids_arg = optarg; break;
        case 'n':
            if (gg_parse_int(optarg, 0, 1L << 30, &n_predict)) gg_die(TOOL, "-n: '%s' is not a count", optarg);
            break;
        case O_TEMP: sp.temp = parse_float("--temp", optarg, 0, 100); break;
        case O_TOPK: {
            long k;
            if (gg_parse_int(optarg, 0, 1L << 30, &k)) gg_die(TOOL, "--top-k: '%s' is not a count", optarg);
            sp.top_k = (int)k;
            break;
        }
        case O_TOPP: sp.top_p = parse_float("--top-p", optarg, 0, 1); break;
        case O_MINP: sp.min_p = parse_float("--min-p", optarg, 0, 1); break;
        case O_REP: sp.repeat_penalty = parse_float("--repeat-penalty", optarg, 0.01, 100); break;
        case O_FREQ: sp.freq_penalty = parse_float("--frequency-penalty", optarg, -2, 2); break;
        case O_PRES: sp.presence_penalty = parse_float("--presence-penalty", optarg, -2, 2); break;
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (!*optarg || *end || errno) gg_die(TOOL, "--seed: '%s' is not a number", optarg);
            sp.seed = v;
            seed_set = 1;
            break;
        }
        case O_STOP:
            if (nstops == MAX_STOPS) gg_die(TOOL, "at most %d --stop strings", MAX_STOPS);
            if (!*optarg) gg_die(TOOL, "--stop: empty string");
            stops[nstops++] = optarg;
            break;
        case O_CHAT: chat = 1; break;
        case O_TEMPLATE: template_arg = optarg; break;
        case O_SYSTEM: system = optarg; break;
        case O_PRINTIDS: print_ids = 1; break;
        case O_DUMP: dump = optarg; break;
        case 't':
            if (gg_parse_int(optarg, 1, 1024, &threads)) gg_die(TOOL, "--threads: '%s' is not a number from 1 to 1024", optarg);
            break;
        case O_CTX:
            if (gg_parse_int(optarg, 1, 1L << 30, &n_ctx_arg)) gg_die(TOOL, "--ctx: '%s' is not a count", optarg);
            break;
        case O_BATCH:
            if (gg_parse_int(optarg, 1, 65536, &batch)) gg_die(TOOL, "--batch: '%s' is not a number from 1 to 65536", optarg);
            break;
        case O_IGNORE_EOS: ignore_eos = 1; break;
        case O_INT8: int8 = 1; break;
        case O_DEVICE: device = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case O_VERSION: printf("gggen %s\n", GG_VERSION_STRING); return 0;
        case ':': gg_die(TOOL, "%s needs an argument (see gggen --help)", argv[optind - 1]);
        default: gg_die(TOOL, "unknown option '%s' (see gggen --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) gg_die(TOOL, "unexpected argument '%s' (the prompt goes in -p or on stdin)", argv[optind]);
    if (!model_path) gg_die(TOOL, "missing -m MODEL.gg");
    if (prompt && ids_arg) gg_die(TOOL, "-p and --ids do not go together");
    if (chat && ids_arg) gg_die(TOOL, "--chat needs a text prompt, not --ids");
    if ((template_arg || system) && !chat) gg_die(TOOL, "--template and --system need --chat");
    if (!seed_set) sp.seed = (uint64_t)time(NULL);

    gg_err err;
    double t_load = gg_now();
    gg_file *f;
    if (gg_file_open(&f, model_path, 0, &err)) gg_die(TOOL, "%s", err.msg);
    gg_backend *be = gg_tool_backend(device, (int)threads, &err);
    if (!be) gg_die(TOOL, "%s", err.msg);
    be->int8_matmul = int8;
    gg_model *m;
    if (gg_model_load(&m, f, be, &err)) gg_die(TOOL, "%s", err.msg);
    const gg_model_config *cfg = gg_model_cfg(m);
    gg_tokenizer *tok = NULL;
    gg_err tok_err;
    if (gg_meta_find(f, "tokenizer.json") && gg_tokenizer_load_gg(&tok, f, &tok_err))
        gg_die(TOOL, "%s", tok_err.msg);
    gg_lora *loras[MAX_ADAPTERS];
    float scales[MAX_ADAPTERS];
    for (int i = 0; i < nad; i++) {
        char *path;
        if (gg_tool_adapter_arg(adapters[i], &path, &scales[i], &err) ||
            gg_tool_load_adapter(&loras[i], m, f, path, &err))
            gg_die(TOOL, "%s", err.msg);
        free(path);
    }

    /* The prompt. */
    int32_t *ids;
    size_t n_prompt;
    if (ids_arg) {
        ids = parse_ids(ids_arg, &n_prompt);
    } else {
        char *text;
        size_t tlen;
        if (prompt) {
            text = strdup(prompt);
            tlen = strlen(prompt);
        } else {
            if (isatty(STDIN_FILENO)) gg_die(TOOL, "no prompt: give -p TEXT, --ids \"1 2 3\" or pipe text on stdin");
            if (!(text = gg_read_stream(stdin, &tlen))) gg_die(TOOL, "reading stdin: %s", strerror(errno));
        }
        if (!tok) gg_die(TOOL, "%s has no tokenizer: give the prompt with --ids", model_path);
        int add_special = 1;
        if (chat) {
            char *r = render_chat(tok, template_arg, system, text);
            free(text);
            text = r;
            tlen = strlen(r);
            add_special = 0; /* the template writes BOS, as apply_chat_template */
        }
        size_t n;
        if (gg_tokenizer_encode(tok, text, tlen, add_special, &ids, &n, &err)) gg_die(TOOL, "%s", err.msg);
        n_prompt = n;
        free(text);
    }
    if (n_prompt == 0) gg_die(TOOL, "the prompt is empty (no tokens)");
    if (!print_ids && n_predict > 0 && !tok) gg_die(TOOL, "%s has no tokenizer: use --print-ids", model_path);
    for (size_t i = 0; i < n_prompt; i++)
        if (ids[i] >= cfg->vocab)
            gg_die(TOOL, "prompt token %zu: id %d is outside the vocabulary (0..%lld)", i, ids[i],
                   (long long)cfg->vocab - 1);
    if ((int64_t)n_prompt > cfg->context_length)
        gg_die(TOOL, "the prompt has %zu tokens; the model's context is %lld", n_prompt,
               (long long)cfg->context_length);
    int64_t n_ctx = n_ctx_arg ? n_ctx_arg : (int64_t)n_prompt + n_predict;
    if (n_ctx > cfg->context_length) {
        if (n_ctx_arg)
            gg_die(TOOL, "--ctx %ld is larger than the model's context (%lld)", n_ctx_arg, (long long)cfg->context_length);
        n_ctx = cfg->context_length;
    }
    if ((int64_t)n_prompt > n_ctx) gg_die(TOOL, "the prompt has %zu tokens; --ctx is %lld", n_prompt, (long long)n_ctx);

    gg_session *s;
    if (gg_session_new(&s, m, n_ctx, batch, &err)) gg_die(TOOL, "%s", err.msg);
    if (nad && gg_session_set_adapters(s, loras, scales, (size_t)nad, &err)) gg_die(TOOL, "%s", err.msg);

    size_t cap = n_prompt + (size_t)n_predict + 1;
    int32_t *all = malloc(cap * sizeof *all);
    float *logits = malloc((dump ? n_prompt : 1) * (size_t)cfg->vocab * sizeof *logits);
    if (!all || !logits) gg_die(TOOL, "out of memory");
    memcpy(all, ids, n_prompt * sizeof *ids);
    free(ids);

    double t0 = gg_now();
    if (gg_session_eval(s, all, (int64_t)n_prompt, logits, dump != NULL, &err)) gg_die(TOOL, "%s", err.msg);
    double t1 = gg_now();
    if (dump) write_logits(dump, logits, n_prompt * (size_t)cfg->vocab);
    const float *last = logits + (dump ? (n_prompt - 1) * (size_t)cfg->vocab : 0);
    if (dump && n_predict > 0) memmove(logits, last, (size_t)cfg->vocab * sizeof *logits);

    gg_sampler *smp = gg_sampler_new(&sp, cfg->vocab);
    if (!smp) gg_die(TOOL, "out of memory");
    int32_t eos = ignore_eos ? -1 : (int32_t)cfg->eos_id, eos2 = -1;
    if (tok && !ignore_eos) eos2 = gg_tokenizer_eos_id(tok);
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);

    streamer st = {.tok = tok, .ids = all, .stops = stops, .nstops = nstops};
    for (int i = 0; i < nstops; i++)
        if (strlen(stops[i]) > st.max_stop) st.max_stop = strlen(stops[i]);
    st.read = n_prompt;
    st.prefix = n_prompt > 4 ? n_prompt - 4 : 0;
    size_t n = n_prompt;
    long generated = 0;
    const char *why = NULL;
    while (generated < n_predict) {
        if ((int64_t)n >= n_ctx) {
            why = "the context is full";
            break;
        }
        int32_t next = gg_sampler_next(smp, logits, all, n);
        all[n++] = next;
        generated++;
        if (next == eos || next == eos2) {
            why = NULL;
            break;
        }
        if (print_ids) {
            printf(generated > 1 ? " %d" : "%d", next);
            fflush(stdout);
        } else {
            stream_step(&st, n);
            if (st.stopped) break;
        }
        if (generated == n_predict) break;
        if (gg_session_eval(s, &next, 1, logits, 0, &err)) gg_die(TOOL, "%s", err.msg);
    }
    double t2 = gg_now();
    if (!print_ids && tok && !st.stopped) flush_pending(&st, 1);
    if (print_ids && generated) putchar('\n');
    if (fflush(stdout) || ferror(stdout)) gg_die(TOOL, "writing stdout: %s", strerror(errno ? errno : EIO));
    if (why) fprintf(stderr, "%s: stopped: %s (%lld tokens)\n", TOOL, why, (long long)n_ctx);
    if (!quiet) {
        double gen_s = t2 - t1;
        /* the first generated token comes from the prompt's logits */
        long evals = generated > 1 ? generated - 1 : 0;
        fprintf(stderr,
                "%s: prompt %zu tokens in %.3f s (%.1f tokens/s); generated %ld tokens in %.3f s (%.1f tokens/s); "
                "load %.3f s\n",
                TOOL, n_prompt, t1 - t0, (double)n_prompt / (t1 - t0), generated, gen_s,
                gen_s > 0 && evals ? (double)evals / gen_s : 0.0, t0 - t_load);
    }
    free(st.pending);
    gg_sampler_free(smp);
    free(logits);
    free(all);
    gg_session_free(s);
    for (int i = 0; i < nad; i++) gg_lora_free(loras[i]);
    gg_tokenizer_free(tok);
    gg_model_free(m);
    gg_backend_free(be);
    gg_file_close(f);
    return 0;
}
