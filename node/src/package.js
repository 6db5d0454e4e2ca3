'use strict';

/**
 * Package archives (model_packages/<name>_<version>.tar.gz), streamed into memory and checked before anything is used:
 * manifest.json first, regular files only, no absolute or `..` paths, nothing the manifest does not list, every size
 * and sha256 as the manifest says (sizes checked on the tar header, before the bytes are read), at most MAX_MEMBERS
 * entries and MAX_UNPACKED_BYTES in all, metadata.json consistent with the files, and the Ed25519 signature when a
 * public key is given.
 */
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const { Transform } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const tarStream = require('tar-stream');
const { CODES, LoaderError, loaderError } = require('./errors');
const { sha256 } = require('./integrity');
const { parseMetadata } = require('./metadata');
const { checkName, checkVersion } = require('./versions');
const { createModel } = require('./model');

const FORMAT = 'onnxgate-package';
const FORMAT_VERSION = 1;
const MANIFEST = 'manifest.json';
const SIGNATURE = 'manifest.sig';
// Caps on what a load reads, the same as modelstore/package.py's, checked on tar headers and the manifest before a
// file's bytes are read.
const MAX_UNPACKED_BYTES = 2 ** 31; // all files together (2 GiB): the package is verified in memory
const MAX_MEMBER_BYTES = MAX_UNPACKED_BYTES;
const MAX_MEMBERS = 10_000;
const MAX_MANIFEST_BYTES = 4 * 2 ** 20; // a manifest of MAX_MEMBERS entries is ~1.5 MB
const TAR_BLOCK_BYTES = 512;
const TAR_RECORD_BYTES = 20 * TAR_BLOCK_BYTES;
// Bytes the decompressed tar may hold: the files' cap plus a header and padding per entry and the end blocks
// (tar-stream reads pax and GNU long-name headers whole, so the cap sits under it, not only on entry sizes).
const MAX_STREAM_BYTES = MAX_UNPACKED_BYTES + 2 * MAX_MANIFEST_BYTES + (MAX_MEMBERS + 2) * 2 * TAR_BLOCK_BYTES
  + TAR_RECORD_BYTES;

function unsafe(where, message) {
  return loaderError(CODES.UNSAFE_PACKAGE, `${where}: ${message}`);
}

function checkEntryName(where, name) {
  const parts = name.split('/');
  if (!name || name.startsWith('/') || name.includes('\\') || parts.includes('..') || /^[A-Za-z]:/.test(name)) {
    throw unsafe(where, `entry ${JSON.stringify(name)} would escape the store (path traversal); refusing the package`);
  }
}

function checkEntryHeader(where, header) {
  if (header.type !== 'file') {
    const target = header.linkname ? ` -> ${JSON.stringify(header.linkname)}` : '';
    throw unsafe(where, `entry ${JSON.stringify(header.name)} is a ${header.type}${target}; packages hold regular ` +
      'files only');
  }
  checkEntryName(where, header.name);
  if (header.size > MAX_MEMBER_BYTES) {
    throw unsafe(where, `entry ${JSON.stringify(header.name)} is larger than ${MAX_MEMBER_BYTES} bytes; refusing the package`);
  }
}

/** The decompressed stream passed through, refused once it grows past `limit` bytes (a compression bomb). */
function byteLimit(where, limit) {
  let total = 0;
  return new Transform({
    transform(chunk, _encoding, done) {
      total += chunk.length;
      if (total > limit) {
        done(unsafe(where, `the package expands to more than ${limit} bytes (a compression bomb?); refusing it`));
      } else {
        done(null, chunk);
      }
    },
  });
}

/** An entry's bytes, exactly header.size of them, into one buffer allocated once. */
async function readEntryBytes(entry) {
  const data = Buffer.allocUnsafe(entry.header.size);
  let filled = 0;
  for await (const chunk of entry) {
    if (filled + chunk.length > data.length) throw new Error(`${entry.header.name} is longer than its header says`);
    chunk.copy(data, filled);
    filled += chunk.length;
  }
  if (filled !== data.length) throw new Error(`${entry.header.name} is cut short`);
  return data;
}

/** The manifest's files and sizes, refused before any file is read when they exceed the package caps. */
function declaredSizes(where, manifest) {
  if (manifest.files.length > MAX_MEMBERS) {
    throw unsafe(where, `the manifest lists more than ${MAX_MEMBERS} files; refusing the package`);
  }
  const declared = manifest.files.reduce((sum, entry) => sum + entry.size, 0);
  if (declared > MAX_UNPACKED_BYTES) {
    throw unsafe(where, `the manifest declares ${declared} bytes of files, more than ${MAX_UNPACKED_BYTES}; refusing ` +
      'the package');
  }
  return new Map(manifest.files.map((entry) => [entry.path, entry.size]));
}

/**
 * Take the archive's entries as they stream by: manifest.json first (bounded), then each file only after its tar
 * header agrees with the manifest (listed, same size), so nothing larger than the manifest declares is ever buffered.
 */
async function collectEntries(where, extract) {
  const entries = new Map();
  let manifest = null;
  let listed = null;
  let count = 0;
  let total = 0;
  for await (const entry of extract) {
    const { header } = entry;
    checkEntryHeader(where, header);
    count += 1;
    if (count > MAX_MEMBERS) throw unsafe(where, `more than ${MAX_MEMBERS} entries; refusing the package`);
    if (entries.has(header.name)) throw unsafe(where, `duplicate entry ${JSON.stringify(header.name)}`);
    total += header.size;
    if (total > MAX_UNPACKED_BYTES) {
      throw unsafe(where, `entries add up to more than ${MAX_UNPACKED_BYTES} bytes unpacked; refusing the package`);
    }
    if (listed === null) {
      if (header.name !== MANIFEST) {
        throw unsafe(where, `the first entry must be ${MANIFEST}, found ${JSON.stringify(header.name)}`);
      }
      if (header.size > MAX_MANIFEST_BYTES) throw unsafe(where, `${MANIFEST} is larger than ${MAX_MANIFEST_BYTES} bytes`);
    } else if (header.name === SIGNATURE) {
      if (header.size > MAX_MANIFEST_BYTES) throw unsafe(where, `${SIGNATURE} is larger than ${MAX_MANIFEST_BYTES} bytes`);
    } else if (!listed.has(header.name)) {
      throw unsafe(where, `files not listed in the manifest: ${header.name}`);
    } else if (header.size !== listed.get(header.name)) {
      throw loaderError(CODES.INTEGRITY_ERROR, `${where}: ${header.name} does not match the manifest's size/sha256: ` +
        'refusing a tampered package');
    }
    entries.set(header.name, await readEntryBytes(entry));
    if (listed === null) {
      manifest = parseManifest(where, entries.get(MANIFEST));
      listed = declaredSizes(where, manifest);
    }
  }
  if (manifest === null) throw unsafe(where, `no ${MANIFEST} in the package`);
  return { entries, manifest };
}

function streamFailure(where, error) {
  if (error instanceof LoaderError) return error;
  if (error.syscall) {
    return loaderError(CODES.INTEGRITY_ERROR, `${where}: cannot read the package (${error.code ?? error.message})`, error);
  }
  return loaderError(CODES.INTEGRITY_ERROR, `${where}: not a readable .tar.gz package (${error.message})`, error);
}

/**
 * Stream the file through gunzip into tar-stream, checking every entry before its bytes are read. On any refusal the
 * whole pipeline is destroyed and the file closed before the error is thrown.
 */
async function readEntries(where) {
  const file = fs.createReadStream(where);
  const extract = tarStream.extract();
  const piping = pipeline(file, zlib.createGunzip(), byteLimit(where, MAX_STREAM_BYTES), extract);
  const piped = piping.then(() => null, (error) => error);
  try {
    const result = await collectEntries(where, extract);
    const error = await piped;
    if (error) throw error;
    return result;
  } catch (error) {
    extract.destroy();
    // The stream's own error (unreadable file, bad gzip, the byte cap) is the cause when the iteration only saw
    // the extract being torn down; our refusals win over the "premature close" they cause in the pipeline.
    const cause = error instanceof LoaderError ? error : (await piped) ?? error;
    if (!file.closed) await new Promise((resolve) => { file.once('close', resolve); });
    throw streamFailure(where, cause);
  }
}

function parseManifest(where, raw) {
  let manifest;
  try {
    manifest = JSON.parse(raw.toString('utf8'));
  } catch (error) {
    throw unsafe(where, `invalid ${MANIFEST}: ${error.message}`);
  }
  const allowed = new Set(['format', 'format_version', 'name', 'version', 'files']);
  const extra = Object.keys(manifest ?? {}).filter((key) => !allowed.has(key));
  if (typeof manifest !== 'object' || manifest === null || extra.length || !Array.isArray(manifest.files)) {
    throw unsafe(where, `invalid ${MANIFEST}: expected {format, format_version, name, version, files: [...]}`);
  }
  if (manifest.format !== FORMAT || manifest.format_version !== FORMAT_VERSION) {
    throw unsafe(where, `unsupported package format ${manifest.format} v${manifest.format_version}`);
  }
  checkName(manifest.name);
  checkVersion(manifest.version);
  for (const entry of manifest.files) {
    const keys = Object.keys(entry ?? {}).sort().join(',');
    if (keys !== 'path,sha256,size' || typeof entry.path !== 'string' || !Number.isInteger(entry.size)
      || typeof entry.sha256 !== 'string') {
      throw unsafe(where, `invalid ${MANIFEST} file entry ${JSON.stringify(entry)}`);
    }
  }
  return manifest;
}

function verifySignature(where, manifestBytes, signature, publicKey) {
  if (!signature) throw loaderError(CODES.SIGNATURE_ERROR, `${where}: a public key was given but the package is not signed`);
  let valid = false;
  try {
    valid = crypto.verify(null, manifestBytes, publicKey, Buffer.from(signature.toString('ascii').trim(), 'base64'));
  } catch (error) {
    throw loaderError(CODES.SIGNATURE_ERROR, `${where}: cannot check the signature (${error.message})`, error);
  }
  if (!valid) throw loaderError(CODES.SIGNATURE_ERROR, `${where}: the manifest signature does not verify with this public key`);
}

/** The version's files (file name -> bytes) after every manifest check, with the parsed manifest. */
async function readPackage(tarballPath, { publicKey } = {}) {
  const where = path.resolve(tarballPath);
  const { entries, manifest } = await readEntries(where);
  const prefix = `${manifest.name}/${manifest.version}/`;
  const listed = new Map(manifest.files.map((entry) => [entry.path, entry]));
  const files = new Map();
  for (const [entryPath, entry] of listed) {
    const fileName = entryPath.slice(prefix.length);
    if (!entryPath.startsWith(prefix) || !fileName || fileName.includes('/')) {
      throw unsafe(where, `manifest entry ${JSON.stringify(entryPath)} lies outside ${prefix}`);
    }
    const data = entries.get(entryPath);
    if (data === undefined) {
      throw loaderError(CODES.INTEGRITY_ERROR, `${where}: ${entryPath} is listed in the manifest but missing from the archive`);
    }
    if (data.length !== entry.size || sha256(data) !== entry.sha256) {
      throw loaderError(CODES.INTEGRITY_ERROR, `${where}: ${entryPath} does not match the manifest's size/sha256: ` +
        'refusing a tampered package');
    }
    files.set(fileName, data);
  }
  if (publicKey !== undefined && publicKey !== null) {
    verifySignature(where, entries.get(MANIFEST), entries.get(SIGNATURE), publicKey);
  }
  if (!files.has('metadata.json')) throw unsafe(where, 'no metadata.json in the package');
  const metadata = parseMetadata(files.get('metadata.json'), where);
  if (metadata.name !== manifest.name || metadata.version !== manifest.version) {
    throw loaderError(CODES.INTEGRITY_ERROR, `${where}: metadata says ${metadata.name} ${metadata.version}, manifest says ` +
      `${manifest.name} ${manifest.version}`);
  }
  return { manifest, metadata, files, signed: entries.has(SIGNATURE), where };
}

/** A verified, loaded model straight from a package archive, with no store and no temporary files. */
async function loadPackage(tarballPath, options = {}) {
  const { metadata, files, where } = await readPackage(tarballPath, options);
  return createModel(metadata, files, where);
}

module.exports = { loadPackage, readPackage };
