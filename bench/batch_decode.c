/* batch_decode.c — decode throughput of B sequences in one batched forward
 * (gg_batch_eval: every weight read once per step) against the same B
 * sequences decoded one at a time (gg_session_eval per sequence), for B in
 * 1, 4, 16 by default.
 *
 *   cc -std=c11 -O2 -D_GNU_SOURCE -I. -pthread bench/batch_decode.c build/rel/libgg.a \
 *      -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm -o build/bench/batch_decode
 *   build/bench/batch_decode MODEL.gg [-b 1,4,16] [-n STEPS] [-p PROMPT] [-t THREADS] [-a ADAPTER]
 *
 * Each sequence first reads a random prompt of PROMPT tokens (default 32,
 * not timed); then STEPS (default 16) decode steps are timed both ways from
 * the same cache state. With -a, every other sequence uses the adapter (a
 * .gg adapter or PEFT folder for this base): rows of the same adapter share
 * one LoRA gemm pair. Tokens/s counts every sequence's tokens; the best of
 * 2 runs of each is printed, by wall clock and by the process's CPU time
 * (tokens per CPU-second: steadier on a shared machine, and with -t 1 free
 * of the thread pool's spinning). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "models/model.h"
#include "tools/engine.h"

static double clk(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now(void) { return clk(CLOCK_MONOTONIC); }
static double cpu(void) { return clk(CLOCK_PROCESS_CPUTIME_ID); }

static int die(const char *what, const gg_err *err) {
    fprintf(stderr, "batch_decode: %s: %s\n", what, err->msg);
    return 1;
}

int main(int argc, char **argv) {
    const char *list = "1,4,16", *adapter = NULL;
    int steps = 16, prompt = 32, threads = 0, opt;
    while ((opt = getopt(argc, argv, "b:n:p:t:a:")) != -1) {
        switch (opt) {
        case 'b': list = optarg; break;
        case 'n': steps = atoi(optarg); break;
        case 'p': prompt = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'a': adapter = optarg; break;
        default:
            fprintf(stderr, "usage: batch_decode MODEL.gg [-b 1,4,16] [-n STEPS] [-p PROMPT] [-t THREADS] [-a ADAPTER]\n");
            return 2;
        }
    }
    if (optind != argc - 1 || steps < 1 || prompt < 1) {
        fprintf(stderr, "usage: batch_decode MODEL.gg [-b 1,4,16] [-n STEPS] [-p PROMPT] [-t THREADS] [-a ADAPTER]\n");
        return 2;
    }
    gg_err err;
    gg_backend *be = gg_tool_backend("cpu", threads, &err);
    if (!be) return die("backend", &err);
    gg_file *f;
    gg_model *m;
    if (gg_file_open(&f, argv[optind], 0, &err) || gg_model_load(&m, f, be, &err)) return die(argv[optind], &err);
    const gg_model_config *c = gg_model_cfg(m);
    gg_lora *lora = NULL;
    if (adapter && gg_tool_load_adapter(&lora, m, f, adapter, &err)) return die(adapter, &err);
    printf("%s: %s, hidden %lld, %lld layers, vocab %lld, %s weights; %d threads; prompt %d, %d decode steps%s\n",
           argv[optind], c->arch, (long long)c->hidden, (long long)c->n_layers, (long long)c->vocab,
           gg_type_name(gg_model_weight_type(m)), be->n_threads, prompt, steps,
           lora ? "; every other sequence with the adapter" : "");
    printf("| seqs | batched tok/s | one at a time tok/s | speed-up | batched tok/CPU-s | one at a time tok/CPU-s | "
           "speed-up |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    srand(1);
    for (const char *p = list; *p;) {
        int B = atoi(p);
        while (*p && *p != ',') p++;
        if (*p == ',') p++;
        if (B < 1) continue;
        int64_t ctx = prompt + 2 * steps + 1;
        gg_session **ss = calloc((size_t)B, sizeof *ss);
        int32_t *ids = malloc((size_t)(B * (prompt + steps)) * sizeof *ids);
        for (int i = 0; i < B * (prompt + steps); i++) ids[i] = rand() % (int)c->vocab;
        float *lg = malloc((size_t)B * (size_t)c->vocab * sizeof *lg);
        float one = 1.0f;
        for (int i = 0; i < B; i++) {
            if (gg_session_new(&ss[i], m, ctx, prompt, &err)) return die("session", &err);
            if (lora && i % 2 && gg_session_set_adapters(ss[i], &lora, &one, 1, &err)) return die("adapter", &err);
            if (gg_session_eval(ss[i], ids + i * (prompt + steps), prompt, lg, 0, &err)) return die("prompt", &err);
        }
        gg_batch *b;
        if (gg_batch_new(&b, m, B, &err)) return die("batch", &err);
        const int32_t **pi = calloc((size_t)B, sizeof *pi);
        int64_t *n = malloc((size_t)B * sizeof *n);
        double best_b = 1e30, best_s = 1e30, cpu_b = 1e30, cpu_s = 1e30;
        for (int run = 0; run < 2; run++) {
            for (int i = 0; i < B; i++) gg_session_truncate(ss[i], prompt);
            double t0 = now(), c0 = cpu();
            for (int k = 0; k < steps; k++) {
                for (int i = 0; i < B; i++) {
                    pi[i] = ids + i * (prompt + steps) + prompt + k;
                    n[i] = 1;
                }
                if (gg_batch_eval(b, ss, pi, n, (size_t)B, lg, NULL, &err)) return die("batch eval", &err);
            }
            double tb = now() - t0, cb = cpu() - c0;
            for (int i = 0; i < B; i++) gg_session_truncate(ss[i], prompt);
            t0 = now();
            c0 = cpu();
            for (int k = 0; k < steps; k++)
                for (int i = 0; i < B; i++)
                    if (gg_session_eval(ss[i], ids + i * (prompt + steps) + prompt + k, 1, lg, 0, &err))
                        return die("eval", &err);
            double ts = now() - t0, cs = cpu() - c0;
            if (tb < best_b) best_b = tb;
            if (ts < best_s) best_s = ts;
            if (cb < cpu_b) cpu_b = cb;
            if (cs < cpu_s) cpu_s = cs;
        }
        double rb = B * steps / best_b, rs = B * steps / best_s, qb = B * steps / cpu_b, qs = B * steps / cpu_s;
        printf("| %4d | %13.1f | %19.1f | %7.2fx | %17.1f | %23.1f | %7.2fx |\n", B, rb, rs, rb / rs, qb, qs,
               qb / qs);
        fflush(stdout);
        gg_batch_free(b);
        for (int i = 0; i < B; i++) gg_session_free(ss[i]);
        free(ss);
        free(ids);
        free(lg);
        free(pi);
        free(n);
    }
    gg_lora_free(lora);
    gg_model_free(m);
    gg_file_close(f);
    gg_backend_free(be);
    return 0;
}
