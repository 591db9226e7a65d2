/* fuzz_adapter.c — libFuzzer harness for the .gg adapter loader
 * (gg_adapter_load_gg): any input is rejected with a message or loaded
 * without a crash, leak or undefined behaviour. The loader takes a path, so
 * each input goes through a memfd. The seed is a real adapter (the
 * llama2-mha fixture's); mutations that break the container's checksums
 * stop at the reader, which fuzz_ggfile.c covers. Run with `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "convert/adapter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int fd = -1;
    if (fd < 0) fd = memfd_create("fuzz_adapter", 0);
    if (fd < 0) return 0;
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    gg_adapter *a = NULL;
    gg_err err;
    err.msg[0] = 0;
    if (gg_adapter_load_gg(&a, path, &err)) {
        if (!err.msg[0]) __builtin_trap(); /* every rejection must say why */
        return 0;
    }
    volatile float sink = 0;
    for (size_t i = 0; i < a->n; i++) sink += a->t[i].a[0] + a->t[i].b[a->t[i].out * a->t[i].r - 1];
    (void)sink;
    gg_adapter_free(a);
    return 0;
}
