// io.mjs — stdout helper shared by the node scripts of the tests.
import fs from 'node:fs';

// Write all of s (string or Buffer) to stdout; a pipe may be non-blocking,
// so EAGAIN is retried.
export function writeAll(s) {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s, 'utf8');
  for (let off = 0; off < b.length; ) {
    try {
      off += fs.writeSync(1, b, off);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
    }
  }
}
