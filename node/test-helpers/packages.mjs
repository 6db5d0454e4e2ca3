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
