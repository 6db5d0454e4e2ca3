// Hand-made package archives for the refusal tests: real tar.gz files written with tar-stream.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import tarStream from 'tar-stream';
import { scratchDir } from './fixtures.mjs';

/** entries: [{name, data?, type?, linkname?}] in archive order -> path of a new .tar.gz. */
export async function writeArchive(entries) {
  const pack = tarStream.pack();
  const chunks = [];
  pack.on('data', (chunk) => chunks.push(chunk));
  const finished = new Promise((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const entry of entries) {
    const header = { name: entry.name, type: entry.type ?? 'file', mode: 0o644, mtime: new Date(0) };
    if (entry.linkname) header.linkname = entry.linkname;
    pack.entry(header, header.type === 'file' ? entry.data ?? Buffer.alloc(0) : undefined);
  }
  pack.finalize();
  await finished;
  const dir = scratchDir('onnxgate-pkg-');
  const file = path.join(dir, 'package.tar.gz');
  fs.writeFileSync(file, zlib.gzipSync(Buffer.concat(chunks)));
  return file;
}

/** The entries of a well-formed package for a store version directory, in the format's order. */
export function packageEntries(storeDir, name, version, { signWith } = {}) {
  const versionDir = path.join(storeDir, name, version);
  const files = fs.readdirSync(versionDir).sort().map((file) => {
    const data = fs.readFileSync(path.join(versionDir, file));
    return { name: `${name}/${version}/${file}`, data };
  });
  const manifest = {
    files: files.map((f) => ({ path: f.name, sha256: crypto.createHash('sha256').update(f.data).digest('hex'), size: f.data.length })),
    format: 'onnxgate-package',
    format_version: 1,
    name,
    version,
  };
  const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  const entries = [{ name: 'manifest.json', data: manifestBytes }];
  if (signWith) {
    const signature = crypto.sign(null, manifestBytes, signWith).toString('base64');
    entries.push({ name: 'manifest.sig', data: Buffer.from(`${signature}\n`) });
  }
  return [...entries, ...files];
}

const BLOCK = 512;

/** A ustar header block for a regular file that claims `size` bytes (up to 8 GiB - 1), whatever really follows it. */
export function tarHeader(name, size) {
  const block = Buffer.alloc(BLOCK);
  const octal = (value, width) => `${value.toString(8).padStart(width - 1, '0')}\0`;
  block.write(name, 0, 100, 'utf8');
  block.write(octal(0o644, 8), 100);
  block.write(octal(0, 8), 108);
  block.write(octal(0, 8), 116);
  block.write(octal(size, 12), 124);
  block.write(octal(0, 12), 136);
  block.write(' '.repeat(8), 148);
  block.write('0', 156);
  block.write('ustar\u000000', 257, 'latin1');
  let checksum = 0;
  for (const byte of block) checksum += byte;
  block.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

function tarEntry({ name, data }) {
  const padding = Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK);
  return Buffer.concat([tarHeader(name, data.length), data, padding]);
}

/**
 * A package whose last entry's header claims `claimedSize` bytes while only `zeroMiB` MiB of zeros follow (and no
 * end of archive): a compression bomb that stays small on disk, since concatenated gzip members decompress as one
 * stream and each MiB of zeros compresses to about 1 KiB. Nothing of the claimed size is ever built in memory.
 */
export function writeClaimingArchive(entries, { name, claimedSize, zeroMiB = 1 }) {
  const zeros = zlib.gzipSync(Buffer.alloc(2 ** 20));
  const members = [zlib.gzipSync(Buffer.concat([...entries.map(tarEntry), tarHeader(name, claimedSize)]))];
  for (let i = 0; i < zeroMiB; i += 1) members.push(zeros);
  const file = path.join(scratchDir('onnxgate-bomb-'), 'package.tar.gz');
  fs.writeFileSync(file, Buffer.concat(members));
  return file;
}

/** A manifest.json entry for the given files ([{name, data}] or [{name, size}] for files never written). */
export function manifestEntry(name, version, files) {
  const manifest = {
    files: files.map((f) => ({
      path: f.name,
      sha256: crypto.createHash('sha256').update(f.data ?? '').digest('hex'),
      size: f.size ?? f.data.length,
    })),
    format: 'onnxgate-package',
    format_version: 1,
    name,
    version,
  };
  return { name: 'manifest.json', data: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`) };
}
