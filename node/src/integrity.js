'use strict';

/** sha256 checks of a version's files against metadata.json: a file that differs is refused, never loaded. */
const crypto = require('node:crypto');
const { CODES, loaderError } = require('./errors');

function sha256(buffer) {
  return crypto.createHash('sha256').update(buffer).digest('hex');
}

/** Every file metadata.json lists (model file first) -> its bytes, checked; `files` maps file name -> Buffer. */
function verifiedFiles(metadata, files, where) {
  const modelFile = metadata.model_file ?? 'model.onnx';
  const expected = [[modelFile, metadata.model_sha256], ...Object.entries(metadata.files ?? {})];
  const checked = new Map();
  for (const [fileName, digest] of expected) {
    const data = files.get(fileName);
    if (data === undefined) {
      throw loaderError(CODES.INTEGRITY_ERROR, `${where}/${fileName}: file listed in metadata.json is missing`);
    }
    const actual = sha256(data);
    if (actual !== digest) {
      throw loaderError(CODES.INTEGRITY_ERROR, `${where}/${fileName}: sha256 mismatch (metadata says ` +
        `${String(digest).slice(0, 12)}…, file is ${actual.slice(0, 12)}…): refusing a tampered model`);
    }
    checked.set(fileName, data);
  }
  const modelBytes = checked.get(modelFile);
  if (modelBytes.length !== metadata.model_size) {
    throw loaderError(CODES.INTEGRITY_ERROR, `${where}/${modelFile}: size ${modelBytes.length} differs from ` +
      `metadata's model_size ${metadata.model_size}`);
  }
  return checked;
}

module.exports = { sha256, verifiedFiles };
