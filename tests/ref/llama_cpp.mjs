// tests/ref/llama_cpp.mjs — runs a GGUF file through llama.cpp (the build
// that node-llama-cpp ships, pinned in tests/ref/llama-cpp-package.json) for
// tests/t_gguf_llama_cpp.sh. Subcommands:
//   logits MODEL.gguf "ID ID ..." OUT.f32   raw logits of every position,
//                                           [n, vocab] little-endian float32
//   tokenize MODEL.gguf TEXT_FILE           token ids of each line (with the
//                                           model's BOS rule), one line each
//   greedy MODEL.gguf "ID ID ..." N         N greedily generated ids
//   cmp A.f32 B.f32 VOCAB                   compare two logit files of the
//                                           same shape (B may be longer: its
//                                           first rows are used): prints
//                                           "max_abs MAX scale S argmax_agree K/N"
// Prints one line "error: ..." and exits 1 on failure.
import {getLlama} from "node-llama-cpp";
import fs from "node:fs";

const [, , cmd, model, arg, arg2] = process.argv;
function f32(path) {
    const b = fs.readFileSync(path);
    return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
}
if (cmd === "cmp") {
    const a = f32(model), b = f32(arg), V = Number(arg2), n = a.length / V;
    let max = 0, scale = 0, agree = 0;
    for (let i = 0; i < n; i++) {
        let ia = 0, ib = 0;
        for (let j = 0; j < V; j++) {
            const x = a[i * V + j], y = b[i * V + j];
            max = Math.max(max, Math.abs(x - y));
            scale = Math.max(scale, Math.abs(y));
            if (x > a[i * V + ia]) ia = j;
            if (y > b[i * V + ib]) ib = j;
        }
        agree += ia === ib;
    }
    console.log(`max_abs ${max.toExponential(3)} scale ${scale.toFixed(3)} argmax_agree ${agree}/${n}`);
    process.exit(0);
}
try {
    const llama = await getLlama({gpu: false, build: "never", logLevel: "error", progressLogs: false});
    const m = await llama.loadModel({modelPath: model});
    if (cmd === "tokenize") {
        const lines = fs.readFileSync(arg, "utf8").split("\n").filter((l) => l.length > 0);
        for (const l of lines) console.log(m.tokenize(l, true).join(" "));
        process.exit(0);
    }
    const ids = arg.split(/[ ,]+/).filter(Boolean).map(Number);
    // float32 KV cache and no flash attention: llama.cpp defaults to an f16
    // cache and, on the CPU, flash attention that rounds through f16; either
    // alone moves logits by ~1e-4.
    const ctx = await m.createContext({contextSize: Math.max(64, ids.length + 64), batchSize: 512, threads: 1,
                                       experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
                                       flashAttention: false});
    const seq = ctx.getSequence();
    if (cmd === "logits") {
        const vocab = m.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0;
        const out = await seq.controlledEvaluate(ids.map((t) => [t, {generateNext: {logits: true}}]));
        const n = out.length;
        const V = vocab || out[0].next.logits.size;
        const buf = new Float32Array(n * V);
        for (let i = 0; i < n; i++) {
            const lg = out[i].next.logits;
            if (lg.size !== V) throw new Error(`position ${i}: ${lg.size} logits, expected ${V}`);
            for (const [tok, v] of lg) buf[i * V + tok] = v;
        }
        fs.writeFileSync(arg2, Buffer.from(buf.buffer));
        console.log(`${n} ${V}`);
    } else if (cmd === "greedy") {
        const n = Number(arg2);
        const got = [];
        for await (const t of seq.evaluate(ids, {temperature: 0})) {
            got.push(t);
            if (got.length >= n) break;
        }
        console.log(got.join(" "));
    } else {
        throw new Error(`unknown subcommand '${cmd}'`);
    }
    process.exit(0);
} catch (e) {
    console.log(`error: ${String(e.message || e).split("\n")[0]}`);
    process.exit(1);
}
