'use strict';

/**
 * Package archives (model_packages/<name>_<version>.tar.gz), read into memory and checked before anything is used:
 * regular files only, no absolute or `..` paths, nothing the manifest does not list, every size and sha256 as the
 * manifest says, metadata.json consistent with the files, and the Ed25519 signature when a public key is given.
 */
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const { promisify } = require('node:util');
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
const MAX_ARCHIVE_BYTES = 2 ** 31 - 1;
const gunzip = promisify(zlib.gunzip);

function unsafe(where, message) {
  return loaderError(CODES.UNSAFE_PACKAGE, `${where}: ${message}`);
}

function checkEntryName(where, name) {
  const parts = name.split('/');
  if (!name || name.startsWith('/') || name.includes('\\') || parts.includes('..') || /^[A-Za-z]:/.test(name)) {
    throw unsafe(where, `entry ${JSON.stringify(name)} would escape the store (path traversal); refusing the package`);
  }
}

/** Every entry of the archive -> its bytes, refusing anything that is not a plain, safely named file. */
async function readEntries(where, tarBytes) {
  const entries = new Map();
  const extract = tarStream.extract();
  extract.end(tarBytes);
  try {
    for await (const entry of extract) {
      const { header } = entry;
      if (header.type !== 'file') {
        const target = header.linkname ? ` -> ${JSON.stringify(header.linkname)}` : '';
        throw unsafe(where, `entry ${JSON.stringify(header.name)} is a ${header.type}${target}; packages hold regular ` +
          'files only');
      }
      checkEntryName(where, header.name);
      if (entries.has(header.name)) throw unsafe(where, `duplicate entry ${JSON.stringify(header.name)}`);
      const chunks = [];
      for await (const chunk of entry) chunks.push(chunk);
      entries.set(header.name, Buffer.concat(chunks));
    }
  } catch (error) {
    if (error instanceof LoaderError) throw error;
    throw loaderError(CODES.INTEGRITY_ERROR, `${where}: not a readable tar archive (${error.message})`, error);
  }
  return entries;
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
  let gzipped;
  try {
    gzipped = await fs.promises.readFile(where);
  } catch (error) {
    throw loaderError(CODES.INTEGRITY_ERROR, `${where}: cannot read the package (${error.code ?? error.message})`, error);
  }
  let tarBytes;
  try {
    tarBytes = await gunzip(gzipped, { maxOutputLength: MAX_ARCHIVE_BYTES });
  } catch (error) {
    throw loaderError(CODES.INTEGRITY_ERROR, `${where}: not a readable .tar.gz package (${error.message})`, error);
  }
  const entries = await readEntries(where, tarBytes);
  if (!entries.has(MANIFEST)) throw unsafe(where, `no ${MANIFEST} in the package`);
  const manifest = parseManifest(where, entries.get(MANIFEST));
  const prefix = `${manifest.name}/${manifest.version}/`;
  const listed = new Map(manifest.files.map((entry) => [entry.path, entry]));
  const extras = [...entries.keys()].filter((name) => !listed.has(name) && name !== MANIFEST && name !== SIGNATURE);
  if (extras.length) throw unsafe(where, `files not listed in the manifest: ${extras.sort().join(', ')}`);
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
