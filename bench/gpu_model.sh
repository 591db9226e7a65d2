# bench/gpu_model.sh — sourced by bench/train_gpu.sh and bench/infer_gpu.sh:
# the random-weight checkpoint of $SHAPE ("hidden layers heads kv ffn vocab
# shard_mb") under $DIR, generated once with bench/gen_hf.c ($GEN_HF, else
# $BIN/../bench/gen_hf as tests/gpu_pack.sh carries it, else built here).
# Sets H L NH NKV FFN V and M (the HF folder); gg_file TYPE converts it once
# and prints the .gg path.
read -r H L NH NKV FFN V _ <<<"$SHAPE"
GEN=${GEN_HF:-}
if [ -z "$GEN" ]; then
    for g in "$BIN/../bench/gen_hf" build/bench/gen_hf; do
        if [ -x "$g" ]; then GEN=$g; break; fi
    done
fi
if [ -z "$GEN" ]; then
    mkdir -p build/bench
    cc -std=c11 -O2 -D_GNU_SOURCE bench/gen_hf.c -o build/bench/gen_hf
    GEN=build/bench/gen_hf
fi
M="$DIR/hf-${H}x${L}x${NH}x${NKV}x${FFN}x${V}"
# shellcheck disable=SC2086 # SHAPE is the numbers, one word each
[ -f "$M/config.json" ] || { echo "generating $M ..." >&2; "$GEN" "$M" $SHAPE >&2; }
gg_file() {
    local g="$M-$1.gg"
    [ -f "$g" ] || { echo "converting to $g ..." >&2; "$BIN/ggconvert" -q -t "$1" -o "$DIR/tmp-$1.gg" "$M" >&2; mv "$DIR/tmp-$1.gg" "$g"; }
    echo "$g"
}
