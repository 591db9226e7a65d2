# gg — build. `make` builds the CPU tools into ./bin (and the CUDA backend
# when nvcc is found; `make CUDA=1` / `CUDA=0` force it); `make test` builds
# and runs the test suite; `make test SANITIZE=1` does the same under ASan/UBSan (in build/san);
# `make fuzz` runs each fuzz harness for FUZZ_SECONDS; `make deps` installs
# the Debian packages the build needs; `make demo` runs the end-to-end demo.

CC       ?= cc
NVCC     ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
# CUDA=1 builds the CUDA backend; by default it is built when nvcc is found.
CUDA     ?= $(if $(wildcard $(NVCC)),1,0)
SANITIZE ?= 0
# MPI=1 builds ggtrain with data parallelism over MPI (OpenMPI's mpicc);
# by default when mpicc is found. MPI=0 builds it without.
MPICC    ?= $(shell command -v mpicc 2>/dev/null)
MPI      ?= $(if $(MPICC),1,0)
FUZZ_SECONDS ?= 60

CFLAGS_BASE = -std=c11 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
              -Wno-unused-parameter -D_GNU_SOURCE -I. -pthread
LDLIBS   = -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm -ldl -pthread

ifeq ($(SANITIZE),1)
  BUILD  = build/san
  BIN    = build/san/bin
  CFLAGS = $(CFLAGS_BASE) -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address,undefined
else
  BUILD  = build/rel
  BIN    = bin
  CFLAGS = $(CFLAGS_BASE) -O2
endif

LIB_DIRS = ggfmt convert models backend-cpu
LIB_SRC  = $(wildcard $(addsuffix /*.c,$(LIB_DIRS)))
LIB_OBJ  = $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
LIB      = $(BUILD)/libgg.a

# serve/: the HTTP layer of ggserve (libmicrohttpd), its own archive so that
# only ggserve and its tests link libmicrohttpd.
SERVE_SRC = $(wildcard serve/*.c)
SERVE_OBJ = $(patsubst %.c,$(BUILD)/%.o,$(SERVE_SRC))
SERVE_LIB = $(BUILD)/libggserve.a

TOOL_SRC = $(wildcard tools/*.c)
TOOLS    = $(patsubst tools/%.c,$(BIN)/%,$(TOOL_SRC))

TEST_SRC = $(wildcard tests/test_*.c)
TESTS    = $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))

# The CUDA backend is a plugin, $(BIN)/libggcuda.so, that the tools dlopen
# for --device cuda (tools/engine.h): the tools themselves never link CUDA.
# Ampere (sm_80) and Hopper (sm_90) code, plus PTX for newer GPUs.
CUDA_SRC = $(wildcard backend-cuda/*.cu)
CUDA_OBJ = $(patsubst %.cu,$(BUILD)/%.o,$(CUDA_SRC))
CUDA_LIB = $(BIN)/libggcuda.so
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=[sm_90,compute_90]
NVCCFLAGS = -O2 -I. $(CUDA_ARCH) -Xcompiler -fPIC,-Wall,-Wextra,-Werror -Werror all-warnings

ALL = $(TOOLS)
ifeq ($(CUDA),1)
  ALL += $(CUDA_LIB)
endif

.PHONY: all test fuzz deps demo clean bench
all: $(ALL)

$(BUILD)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu $(wildcard */*.h) $(wildcard backend-cuda/*.cuh)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SERVE_LIB): $(SERVE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SERVE_OBJ): $(wildcard serve/*.html)

$(CUDA_LIB): $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	$(NVCC) -shared $(CUDA_ARCH) $^ -lcublas -o $@

ifeq ($(MPI),1)
$(BIN)/ggtrain: private CFLAGS += -DGG_MPI $(shell $(MPICC) --showme:compile)
$(BIN)/ggtrain: private LDLIBS += $(shell $(MPICC) --showme:link)
endif

$(BIN)/ggserve: tools/ggserve.c $(SERVE_LIB) $(LIB) $(wildcard tools/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(SERVE_LIB) $(LIB) $(LDFLAGS) $(LDLIBS) -lmicrohttpd -o $@

$(BUILD)/tests/test_serve%: tests/test_serve%.c tests/check.h $(SERVE_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(SERVE_LIB) $(LIB) $(LDFLAGS) $(LDLIBS) -lmicrohttpd -o $@

$(BIN)/%: tools/%.c $(LIB) $(wildcard tools/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) $(LDFLAGS) $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/check.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) $(LDFLAGS) $(LDLIBS) -o $@

test: $(ALL) $(TESTS)
	@GG_BIN=$(BIN) GG_TESTBIN=$(BUILD)/tests GG_SANITIZE=$(SANITIZE) bash tests/run.sh

# libFuzzer harnesses (clang): tests/fuzz_*.c, each run FUZZ_SECONDS seconds
# on the corpus in tests/fuzz/corpus/NAME.
FUZZ_SRC = $(wildcard tests/fuzz_*.c)
FUZZERS  = $(patsubst tests/%.c,build/fuzz/%,$(FUZZ_SRC))
FUZZ_LIB_SRC = $(LIB_SRC)
build/fuzz/fuzz_serve%: tests/fuzz_serve%.c $(FUZZ_LIB_SRC) $(SERVE_SRC) $(wildcard */*.h) $(wildcard serve/*.html)
	@mkdir -p $(dir $@)
	clang $(CFLAGS_BASE) -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  $< $(FUZZ_LIB_SRC) $(SERVE_SRC) $(LDLIBS) -lmicrohttpd -o $@
build/fuzz/%: tests/%.c $(FUZZ_LIB_SRC) $(wildcard */*.h)
	@mkdir -p $(dir $@)
	clang $(CFLAGS_BASE) -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  $< $(FUZZ_LIB_SRC) $(LDLIBS) -o $@
fuzz: $(FUZZERS)
	@set -e; for f in $(FUZZERS); do n=$$(basename $$f); \
	  mkdir -p build/fuzz/corpus/$$n; cp -n tests/fuzz/corpus/$$n/* build/fuzz/corpus/$$n/ 2>/dev/null || true; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=0 build/fuzz/corpus/$$n 2>&1 | tail -n 3; done

deps:
	bash tests/install-deps.sh

demo: $(TOOLS)
	bash tests/demo.sh

bench: $(TOOLS)
	bash bench/convert.sh

clean:
	rm -rf build bin
