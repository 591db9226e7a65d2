// tests/ref/tokenize_ref.mjs — the reference tokenizer, loading a local
// tokenizer.json (+ tokenizer_config.json), offline.
//
//   node tests/ref/tokenize_ref.mjs [--impl js|rust] [--encode-only] TOKENIZER_DIR < in.jsonl > out.jsonl
//
// --impl js (default): @huggingface/tokenizers, Hugging Face's JS port of
//   `tokenizers` (the tokenizer inside @huggingface/transformers 4.x).
// --impl rust: `tokenizers`, Hugging Face's Node bindings of the Rust
//   library itself (the one Python's `tokenizers` wraps; it reads only
//   tokenizer.json, as the Rust library does).
// Each input line {"text": ...} gives one output line
//   {"ids": [...], "ids_special": [...], "decoded": ...}
// ids: add_special_tokens=false; ids_special: add_special_tokens=true;
// decoded: decode(ids, skip_special_tokens=true), no clean-up (as Rust's
// decode). --encode-only prints just {"ids": [...]} with special tokens
// (ggtok's default), for timing. Blank lines stay blank.
// The libraries are found in build/npm/tok (tests/fetch-tokenizers.sh
// installs them there, pinned by tests/ref/tok-package.json) or in
// $GG_TOK_REF_PREFIX. Exit status 3 when the chosen one is not installed.
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { writeAll } from './io.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
let impl = 'js', encodeOnly = false;
while (args.length && args[0].startsWith('--')) {
  const a = args.shift();
  if (a === '--encode-only') encodeOnly = true;
  else if (a === '--impl' && (args[0] === 'js' || args[0] === 'rust')) impl = args.shift();
  else args.length = 0;
}
if (args.length !== 1) {
  process.stderr.write('usage: node tokenize_ref.mjs [--impl js|rust] [--encode-only] TOKENIZER_DIR < in.jsonl > out.jsonl\n');
  process.exit(2);
}
const dir = args[0];
const prefix = path.resolve(process.env.GG_TOK_REF_PREFIX || path.join(here, '..', '..', 'build', 'npm', 'tok'));
const pkg = impl === 'js' ? '@huggingface/tokenizers' : 'tokenizers';
let lib;
try {
  lib = createRequire(path.join(prefix, 'package.json'))(pkg);
} catch (e) {
  process.stderr.write(`tokenize_ref: ${pkg} is not installed in ${prefix} (run tests/fetch-tokenizers.sh): ${e.message.split('\n')[0]}\n`);
  process.exit(3);
}

// encode(text, special) -> ids; decode(ids) -> text (skip special tokens).
let encode, decode;
if (impl === 'js') {
  const readJson = (f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  const config = fs.existsSync(path.join(dir, 'tokenizer_config.json')) ? readJson('tokenizer_config.json') : {};
  const tok = new lib.Tokenizer(readJson('tokenizer.json'), config);
  encode = async (text, special) => tok.encode(text, { add_special_tokens: special }).ids;
  decode = async (ids) => (ids.length ? tok.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }) : '');
} else {
  const tok = lib.Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  encode = async (text, special) => (await tok.encode(text, null, { addSpecialTokens: special })).getIds();
  decode = async (ids) => tok.decode(ids, true);
}

const out = [];
let pending = 0;
const flush = () => {
  if (out.length) writeAll(out.join(''));
  out.length = 0;
  pending = 0;
};
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
let no = 0;
for await (const line of rl) {
  no++;
  if (!line.trim()) {
    out.push('\n');
    continue;
  }
  let text;
  try {
    text = JSON.parse(line).text;
  } catch (e) {
    process.stderr.write(`tokenize_ref: stdin line ${no}: ${e.message}\n`);
    process.exit(1);
  }
  if (typeof text !== 'string') {
    process.stderr.write(`tokenize_ref: stdin line ${no}: no "text" string\n`);
    process.exit(1);
  }
  let s;
  if (encodeOnly) {
    s = JSON.stringify({ ids: await encode(text, true) });
  } else {
    const ids = await encode(text, false);
    s = JSON.stringify({ ids, ids_special: await encode(text, true), decoded: await decode(ids) });
  }
  out.push(s, '\n');
  pending += s.length;
  if (pending > 1 << 20) flush();
}
flush();
