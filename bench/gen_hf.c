/* gen_hf.c — writes a random-weight Hugging Face Llama checkpoint (bf16,
 * sharded safetensors + index + config.json) of a chosen shape, for the
 * benchmarks. Default: the Llama 3.2 1B shape (1.24 B parameters, 2.47 GB).
 *
 *   gen_hf OUT_DIR [hidden layers heads kv_heads ffn vocab shard_mb]
 *
 * Values are random bf16 in ±[2^-9, 2^-3) (weight-like magnitudes); the
 * data is not meant to be meaningful, only realistic in size and format. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char name[96];
    uint64_t rows, cols; /* cols = 0: 1-D */
} tdesc;

static uint64_t s = 0x243F6A8885A308D3ull;
static inline uint64_t rnd(void) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static void fill(uint16_t *p, uint64_t n, int ones) {
    for (uint64_t i = 0; i < n; i += 4) {
        uint64_t r = rnd();
        for (int k = 0; k < 4 && i + k < n; k++) {
            uint16_t v = (uint16_t)(r >> (16 * k));
            /* sign | exponent 118..124 | 7 random mantissa bits */
            uint16_t e = (uint16_t)(118 + (v >> 7 & 7) % 7);
            p[i + k] = ones ? 0x3F80 : (uint16_t)((v & 0x8000) | (e << 7) | (v & 0x7F));
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 9) {
        fprintf(stderr, "usage: gen_hf OUT_DIR [hidden layers heads kv_heads ffn vocab shard_mb]\n");
        return 1;
    }
    uint64_t H = 2048, L = 16, NH = 32, KV = 8, F = 8192, V = 128256, shard_mb = 2000;
    if (argc == 9) {
        H = strtoull(argv[2], 0, 10); L = strtoull(argv[3], 0, 10); NH = strtoull(argv[4], 0, 10);
        KV = strtoull(argv[5], 0, 10); F = strtoull(argv[6], 0, 10); V = strtoull(argv[7], 0, 10);
        shard_mb = strtoull(argv[8], 0, 10);
    }
    const char *dir = argv[1];
    if (mkdir(dir, 0755) && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    uint64_t HD = H / NH;
    size_t cap = 8 + 9 * L, n = 0;
    tdesc *t = calloc(cap, sizeof *t);
#define ADD(r, c, ...) (snprintf(t[n].name, 96, __VA_ARGS__), t[n].rows = (r), t[n].cols = (c), n++)
    ADD(V, H, "model.embed_tokens.weight");
    for (uint64_t l = 0; l < L; l++) {
        ADD(H, 0, "model.layers.%" PRIu64 ".input_layernorm.weight", l);
        ADD(NH * HD, H, "model.layers.%" PRIu64 ".self_attn.q_proj.weight", l);
        ADD(KV * HD, H, "model.layers.%" PRIu64 ".self_attn.k_proj.weight", l);
        ADD(KV * HD, H, "model.layers.%" PRIu64 ".self_attn.v_proj.weight", l);
        ADD(H, NH * HD, "model.layers.%" PRIu64 ".self_attn.o_proj.weight", l);
        ADD(H, 0, "model.layers.%" PRIu64 ".post_attention_layernorm.weight", l);
        ADD(F, H, "model.layers.%" PRIu64 ".mlp.gate_proj.weight", l);
        ADD(F, H, "model.layers.%" PRIu64 ".mlp.up_proj.weight", l);
        ADD(H, F, "model.layers.%" PRIu64 ".mlp.down_proj.weight", l);
    }
    ADD(H, 0, "model.norm.weight");
    /* Assign tensors to shards of at most shard_mb MB. */
    int *shard = calloc(n, sizeof *shard);
    int nsh = 1;
    uint64_t acc = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t b = 2 * t[i].rows * (t[i].cols ? t[i].cols : 1);
        if (acc && acc + b > shard_mb * 1000000ull) {
            nsh++;
            acc = 0;
        }
        shard[i] = nsh;
        acc += b;
        total += b;
    }
    char path[4096];
    uint16_t *buf = NULL;
    size_t bufcap = 0;
    for (int sh = 1; sh <= nsh; sh++) {
        /* Header JSON. */
        size_t hcap = 1 << 20, hl = 0;
        char *h = malloc(hcap);
        uint64_t off = 0;
        hl += (size_t)snprintf(h + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
        for (size_t i = 0; i < n; i++) {
            if (shard[i] != sh) continue;
            uint64_t b = 2 * t[i].rows * (t[i].cols ? t[i].cols : 1);
            if (t[i].cols)
                hl += (size_t)snprintf(h + hl, hcap - hl, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%" PRIu64 ",%" PRIu64 "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                       t[i].name, t[i].rows, t[i].cols, off, off + b);
            else
                hl += (size_t)snprintf(h + hl, hcap - hl, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%" PRIu64 "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                       t[i].name, t[i].rows, off, off + b);
            off += b;
        }
        hl += (size_t)snprintf(h + hl, hcap - hl, "}");
        while (hl % 8) h[hl++] = ' ';
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, sh, nsh);
        FILE *f = fopen(path, "wb");
        if (!f) {
            perror(path);
            return 1;
        }
        uint64_t hl64 = hl;
        fwrite(&hl64, 8, 1, f);
        fwrite(h, 1, hl, f);
        for (size_t i = 0; i < n; i++) {
            if (shard[i] != sh) continue;
            uint64_t cnt = t[i].rows * (t[i].cols ? t[i].cols : 1);
            if (cnt > bufcap) {
                free(buf);
                buf = malloc(2 * cnt);
                bufcap = cnt;
            }
            fill(buf, cnt, !t[i].cols);
            if (fwrite(buf, 2, cnt, f) != cnt) {
                perror(path);
                return 1;
            }
        }
        if (fclose(f)) {
            perror(path);
            return 1;
        }
        free(h);
    }
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"metadata\":{\"total_size\":%" PRIu64 "},\"weight_map\":{", total);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\"%s\":\"model-%05d-of-%05d.safetensors\"", i ? "," : "", t[i].name, shard[i], nsh);
    fprintf(f, "}}\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    fprintf(f,
            "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":%" PRIu64
            ",\"num_hidden_layers\":%" PRIu64 ",\"num_attention_heads\":%" PRIu64
            ",\"num_key_value_heads\":%" PRIu64 ",\"intermediate_size\":%" PRIu64 ",\"vocab_size\":%" PRIu64
            ",\"head_dim\":%" PRIu64 ",\"hidden_act\":\"silu\",\"max_position_embeddings\":131072,"
            "\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,\"rope_scaling\":{\"factor\":32.0,"
            "\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,\"original_max_position_embeddings\":8192,"
            "\"rope_type\":\"llama3\"},\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\","
            "\"bos_token_id\":128000,\"eos_token_id\":128001}\n",
            H, L, NH, KV, F, V, HD);
    fclose(f);
    printf("%s: %zu tensors, %" PRIu64 " parameters, %" PRIu64 " bytes in %d shards\n", dir, n,
           total / 2, total, nsh);
    return 0;
}
