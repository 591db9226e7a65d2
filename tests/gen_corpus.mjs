// tests/gen_corpus.mjs — a deterministic tokenizer parity corpus, as JSONL
// lines {"text": ...} (the same bytes on every run for a given source tree).
//
//   node tests/gen_corpus.mjs [--size BYTES] > corpus.jsonl
//   node tests/gen_corpus.mjs --invalid-utf8 > bad.txt
//
// Default: the project's own C sources and docs (whole files), the fixture
// texts (../shared/fixtures/tokenizers/corpus.txt when present), special
// token strings inside text, random Unicode (mixed scripts, emoji with ZWJ,
// skin tones, flags and keycaps, combining marks, decomposed letters, wide
// and compatibility forms, odd spaces, control characters, astral
// characters), long whitespace runs, numbers, and about 1 MB of mixed
// text. --size BYTES sets the size of the mixed text (bench/tokenize.sh
// uses a bigger one).
//
// --invalid-utf8 writes raw lines (not JSON: JSON cannot carry invalid
// UTF-8) for ggtok's plain mode: truncated, overlong and surrogate
// sequences, stray continuation bytes, bytes 0xF5-0xFF, NUL bytes.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeAll } from './ref/io.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
let mixedBytes = 1 << 20;
let invalid = false;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--size') mixedBytes = Number(args[++i]);
  else if (args[i] === '--invalid-utf8') invalid = true;
  else {
    process.stderr.write('usage: node tests/gen_corpus.mjs [--size BYTES | --invalid-utf8]\n');
    process.exit(2);
  }
}

// mulberry32: a small deterministic PRNG.
let seed = 0x9e3779b9;
function rnd() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n) => Math.floor(rnd() * n);
const pick = (a) => a[int(a.length)];
const range = (lo, hi) => lo + int(hi - lo + 1);
const cp = (lo, hi) => String.fromCodePoint(range(lo, hi));

const out = [];
let outBytes = 0;
function emit(text) {
  const s = JSON.stringify({ text }) + '\n';
  out.push(s);
  outBytes += s.length;
  if (outBytes > (1 << 20)) flush();
}
function flush() {
  if (out.length) writeAll(out.join(''));
  out.length = 0;
  outBytes = 0;
}

if (invalid) {
  const lines = [
    [0x61, 0x80, 0x62], // stray continuation byte
    [0xc3], // truncated 2-byte sequence at the end
    [0xc3, 0x28, 0x41], // bad continuation
    [0xe2, 0x82], // truncated 3-byte
    [0xe2, 0x82, 0x41, 0xe2, 0x82, 0xac], // truncated 3-byte, then a good €
    [0xf0, 0x9f, 0x98], // truncated 4-byte
    [0xf0, 0x9f, 0x98, 0x20, 0xf0, 0x9f, 0x98, 0x80], // truncated, then 😀
    [0xc0, 0xaf], // overlong '/'
    [0xe0, 0x80, 0xaf], // overlong
    [0xed, 0xa0, 0x80], // UTF-16 surrogate D800
    [0xed, 0xbf, 0xbf, 0x20, 0x41], // surrogate DFFF
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    [0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff],
    [0x48, 0x69, 0x00, 0x74, 0x68, 0x65, 0x72, 0x65], // NUL inside
    [0x00],
    [0x00, 0x00, 0x20, 0x00],
    [0xff, 0xfe, 0x48, 0x00, 0x69, 0x00], // UTF-16LE BOM and text
    [0xef, 0xbb, 0xbf, 0x48, 0x69], // UTF-8 BOM
    [0x20, 0x20, 0xa0, 0xa0, 0x20], // Latin-1 NBSPs
    Array.from(Buffer.from('caf\xe9 na\xefve r\xe9sum\xe9', 'latin1')), // Latin-1 text
  ];
  for (let i = 0; i < 40; i++) {
    const n = range(1, 64), b = [];
    for (let j = 0; j < n; j++) {
      const x = int(256);
      if (x !== 0x0a) b.push(x);
    }
    lines.push(b);
  }
  writeAll(Buffer.concat(lines.map((b) => Buffer.concat([Buffer.from(b), Buffer.from('\n')]))));
  process.exit(0);
}

// 1. The project's own sources and docs, whole files, sorted.
function walk(dir, re) {
  let r = [];
  let ents;
  try {
    ents = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return r;
  }
  for (const e of ents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) r = r.concat(walk(p, re));
    else if (re.test(e.name)) r.push(p);
  }
  return r;
}
const srcFiles = ['ggfmt', 'convert', 'models', 'backend-cpu', 'backend-cuda', 'tools', 'tests', 'bench', 'docs']
  .flatMap((d) => walk(path.join(root, d), /\.(c|h|cu|cuh|sh|md|mjs)$/))
  .concat(['README.md', 'Makefile'].map((f) => path.join(root, f)).filter((f) => fs.existsSync(f)));
for (const f of srcFiles) {
  const t = fs.readFileSync(f);
  const s = t.toString('utf8');
  if (Buffer.from(s, 'utf8').equals(t) && t.length <= 256 << 10) emit(s);
}

// 2. The fixture texts.
for (const f of [path.join(root, 'tests/fixtures/tokenizers/corpus.txt'), path.join(root, '../shared/fixtures/tokenizers/corpus.txt')]) {
  if (fs.existsSync(f)) {
    for (const t of fs.readFileSync(f, 'utf8').split('\n=====\n')) emit(t);
    break;
  }
}

// 3. Edge cases and special-token strings inside text.
const specials = ['<s>', '</s>', '<unk>', '<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>',
  '<|start_header_id|>', '<|end_header_id|>', '<|im_start|>', '<|im_end|>', '<|endoftext|>',
  '<think>', '</think>', '<bos>', '<eos>', '<pad>', '<start_of_turn>', '<end_of_turn>',
  '<start_of_image>', '[INST]', '[/INST]', '<|reserved_special_token_5|>', '<0x0A>', '▁'];
for (const t of ['', ' ', '  ', '\n', '\n\n', '\t', '\r\n', 'a', 'A', '0', '.', "'", "'s", 'é', '€', '😀',
  ' Hello', 'Hello ', '  Hello  ', 'hello\u00a0world', 'x\u2581y', '\u2581\u2581', '▁Hello',
  "I'm you're he's we've they'd she'll I'M YOU'RE HE'S WE'VE THEY'D SHE'LL",
  'don\u2019t won\u2019t', '"quoted" (paren) [bracket] {brace}']) emit(t);
for (const s of specials) {
  emit(s);
  emit(` ${s} `);
  emit(`abc${s}def`);
  emit(`${s}${s}\n${s} x`);
  emit(s.slice(0, Math.max(1, s.length - 2)));
}
emit(specials.join(''));
emit(specials.join(' '));
emit('<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n');
emit('<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n');
emit('<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n');

// 4. Random Unicode.
const scripts = [
  () => cp(0x61, 0x7a), () => cp(0x41, 0x5a), () => cp(0xc0, 0xff), () => cp(0x100, 0x17f),
  () => cp(0x391, 0x3c9), () => cp(0x410, 0x44f), () => cp(0x5d0, 0x5ea), () => cp(0x621, 0x64a),
  () => cp(0x905, 0x939), () => cp(0xe01, 0xe2e), () => cp(0x3041, 0x3096), () => cp(0x30a1, 0x30fa),
  () => cp(0x4e00, 0x9fff), () => cp(0xac00, 0xd7a3), () => cp(0x10a0, 0x10ff), () => cp(0x531, 0x556),
  () => cp(0x1100, 0x1112), () => cp(0xff01, 0xff5e), () => cp(0x2460, 0x24ff), () => cp(0xfb00, 0xfb06),
  () => cp(0x1d400, 0x1d6a3), () => cp(0x20000, 0x2a6df), () => cp(0x1f300, 0x1f5ff),
  () => cp(0x660, 0x669), () => cp(0x966, 0x96f), () => cp(0x2000, 0x200f), () => cp(0xe000, 0xe0ff),
  () => cp(0x2028, 0x2029), () => cp(0x1, 0x1f), () => cp(0x7f, 0x9f), () => cp(0x2190, 0x21ff),
  () => cp(0x2200, 0x22ff), () => cp(0xfe00, 0xfe0f),
];
const emoji = ['😀', '👍🏽', '👩‍💻', '👨‍👩‍👧‍👦', '🏳️‍🌈', '❤️', '🇫🇷', '🇯🇵', '1️⃣', '#️⃣', '🧑🏿‍🚀', '🤷‍♀️', '😶‍🌫️', '👁️‍🗨️', '🐈‍⬛'];
const combining = () => cp(0x300, 0x36f);
function randomUnicode(n) {
  let s = '';
  while (s.length < n) {
    const r = rnd();
    if (r < 0.55) s += pick(scripts)();
    else if (r < 0.65) s += pick(emoji);
    else if (r < 0.75) s += cp(0x61, 0x7a) + combining() + (rnd() < 0.3 ? combining() : '');
    else if (r < 0.82) s += 'e\u0301a\u0300o\u0308n\u0303c\u0327A\u030a\u1100\u1161\u11a8'.slice(int(10), 11);
    else if (r < 0.9) s += pick([' ', ' ', '  ', '\n', '\t', '\u00a0', '\u3000', '\r\n', '\u200b', '\u200d', '\ufeff']);
    else s += pick(['.', ',', '!', '?', '…', '—', '«', '»', '“', '”', '、', '。', '¿', '¡', '%', '$', '€']);
  }
  return s;
}
for (let i = 0; i < 600; i++) emit(randomUnicode(range(1, i < 500 ? 120 : 2000)));

// 5. Long whitespace runs.
const ws = [' ', '\t', '\n', '\r\n', '\u00a0', '\u3000', '\u2003', '\v', '\f'];
for (const w of ws) for (const n of [2, 3, 7, 16, 33, 100, 257, 1000]) {
  emit(w.repeat(n));
  emit('a' + w.repeat(n) + 'b');
  emit('x' + w.repeat(n));
}
for (let i = 0; i < 150; i++) {
  let s = '';
  for (let j = range(1, 20); j > 0; j--) s += pick(ws).repeat(range(1, 80)) + pick(['', 'word', '{', '}', 'if (x)', '1', '😀', 'é']);
  emit(s);
}

// 6. Numbers.
const digits = (n) => Array.from({ length: n }, () => int(10)).join('');
for (let n = 1; n <= 40; n++) emit(digits(n));
for (let i = 0; i < 300; i++) {
  const parts = [];
  for (let j = range(1, 12); j > 0; j--) {
    parts.push(pick([
      () => digits(range(1, 12)), () => '-' + digits(range(1, 6)), () => digits(range(1, 4)) + '.' + digits(range(1, 8)),
      () => Number(digits(range(1, 7))).toLocaleString('en-US'), () => digits(1) + '.' + digits(3) + 'e-' + digits(2),
      () => `20${digits(2)}-${range(10, 12)}-${range(10, 28)}`, () => '0x' + int(1 << 30).toString(16),
      () => `+1 (${digits(3)}) ${digits(3)}-${digits(4)}`, () => `${digits(2)}:${digits(2)}:${digits(2)}`,
      () => '$' + digits(range(1, 5)) + '.' + digits(2), () => digits(range(1, 3)) + '%', () => 'v' + digits(1) + '.' + digits(2) + '.' + digits(1),
      () => '١٢٣٤', () => '१२३', () => '１２３', () => '½ ⅓ ²³',
    ])());
  }
  emit(parts.join(pick([' ', ', ', '\n', '', '/', ' + '])));
}

// 7. ~mixedBytes of mixed text: prose, code, markup, URLs, chat, other scripts.
const words = ('the of and to in is was that for it with as his on be at by had are but from or have an they which one you were ' +
  'her all she there would their we him been has when who will more no if out so said what up its about into than them can ' +
  'only other new some could time these two may then do first any my now such like our over man me even most made after also ' +
  'did many before must through back years where much your way well down should because each just those people how too little ' +
  'state good very make world still own see men work long get here between both life being under never day same another know ' +
  'while last might us great old year off come since against go came right used take three tokenizer model weight tensor ' +
  'quantize gradient adapter layer attention embedding vocabulary merges byte-level normalization inference Transformer Llama ' +
  'Qwen Gemma CUDA GPU CPU memory-mapped checksum fine-tune QLoRA LoRA').split(' ');
const other = ['Le renard brun rapide saute par-dessus le chien paresseux.', 'Der schnelle braune Fuchs springt über den faulen Hund. Größe, Maß, Straße.',
  'El veloz murciélago hindú comía feliz cardillo y kiwi.', 'Съешь же ещё этих мягких французских булок, да выпей чаю.',
  'Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.', '敏捷的棕色狐狸跳过了懒狗。我们今天去公园散步吧！', 'いろはにほへと ちりぬるを わかよたれそ つねならむ。東京は晴れです。',
  '다람쥐 헌 쳇바퀴에 타고파. 안녕하세요, 반갑습니다!', 'الثعلب البني السريع يقفز فوق الكلب الكسول.', 'דג סקרן שט בים מאוכזב ולפתע מצא חברה.',
  'नमस्ते, आप कैसे हैं? मैं ठीक हूँ।', 'เป็นมนุษย์สุดประเสริฐเลิศคุณค่า', 'Tiếng Việt có dấu: Đường phố Hà Nội rất đẹp.', 'İstanbul’da ılık bir gün; ŞŞ ğğ ıı.'];
const code = [
  'for (int i = 0; i < n; i++) {\n    sum += a[i] * b[i];\n}\n', 'def f(x):\n    return {"a": [1, 2, 3], \'b\': None}\n',
  '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); return 0; }\n', 'const x = await fetch(`https://example.com/api?q=${q}&n=10`);\n',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;\n', '<div class="x"><a href="/p?id=1&amp;t=2">link</a></div>\n',
  '$ ls -la /usr/local/bin | grep -E "^-rwx" && echo ok\n', '```python\nimport numpy as np\nnp.zeros((3, 4), dtype=np.float32)\n```\n',
  '{"key": "value", "n": 3.14, "arr": [true, false, null]}\n', 'fn main() -> Result<(), Box<dyn Error>> { Ok(()) }\n',
  '    \t// mixed    indentation\n\t\t    x = y;;\n', 'https://en.wikipedia.org/wiki/Byte_pair_encoding#Algorithm user@example.com\n',
  '| a | b |\n|---|---|\n| 1 | 2 |\n', 'x+=1;y-=2;z*=3;w/=4;v%=5;u<<=6;t>>=7;s&&=r||q;', '\\begin{equation} E = mc^2 \\end{equation}',
];
function sentence() {
  const n = range(3, 25);
  const w = [];
  for (let i = 0; i < n; i++) {
    let x = pick(words);
    const r = rnd();
    if (r < 0.08) x = x[0].toUpperCase() + x.slice(1);
    else if (r < 0.1) x = x.toUpperCase();
    else if (r < 0.14) x += pick(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", '’s']);
    else if (r < 0.18) x += pick([',', ';', ':', '...', ' -', '—']);
    else if (r < 0.2) x = pick(['(', '"', '\'', '[']) + x + pick([')', '"', '\'', ']']);
    else if (r < 0.22) x = digits(range(1, 5));
    w.push(x);
  }
  const s = w.join(' ');
  return s[0].toUpperCase() + s.slice(1) + pick(['.', '.', '.', '?', '!', '!!', '?!']);
}
let made = 0;
while (made < mixedBytes) {
  let t = '';
  const target = rnd() < 0.05 ? range(8000, 64000) : range(40, 3000);
  while (t.length < target) {
    const r = rnd();
    if (r < 0.6) t += sentence() + pick([' ', ' ', '  ', '\n', '\n\n']);
    else if (r < 0.75) t += pick(code);
    else if (r < 0.85) t += pick(other) + pick([' ', '\n']);
    else if (r < 0.9) t += pick(specials) + pick(['', ' ', '\n']);
    else if (r < 0.95) t += randomUnicode(range(1, 40)) + ' ';
    else t += pick(ws).repeat(range(2, 40));
  }
  emit(t);
  made += Buffer.byteLength(t, 'utf8');
}
flush();
