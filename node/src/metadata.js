'use strict';

/**
 * metadata.json, checked for the fields the loader relies on. The Python side (modelstore/metadata.py) owns the
 * full schema; here a missing or mistyped field is reported by name rather than failing later in a stranger way.
 */
const { CODES, loaderError } = require('./errors');
const { checkName, checkVersion } = require('./versions');

function parseMetadata(raw, where) {
  let metadata;
  try {
    metadata = JSON.parse(Buffer.isBuffer(raw) ? raw.toString('utf8') : raw);
  } catch (error) {
    throw loaderError(CODES.INVALID_METADATA, `${where}: metadata.json is not valid JSON (${error.message})`, error);
  }
  const problem = metadataProblem(metadata);
  if (problem) throw loaderError(CODES.INVALID_METADATA, `${where}: invalid metadata at ${problem}`);
  return metadata;
}

function metadataProblem(m) {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return '(root): expected an object';
  for (const key of ['name', 'version', 'model_sha256']) {
    if (typeof m[key] !== 'string') return `${key}: expected a string`;
  }
  for (const [key, check] of [['name', checkName], ['version', checkVersion]]) {
    try {
      check(m[key]);
    } catch (error) {
      return `${key}: ${error.message}`;
    }
  }
  if (m.metrics !== undefined && (typeof m.metrics !== 'object' || m.metrics === null || Array.isArray(m.metrics))) {
    return 'metrics: expected an object of metric name -> number';
  }
  for (const [key, value] of Object.entries(m.metrics ?? {})) {
    // JSON has no NaN, but JSON.parse reads 1e999 as Infinity (Python reads it as inf and refuses it too)
    if (typeof value !== 'number' || !Number.isFinite(value)) return `metrics.${key}: expected a finite number`;
  }
  if (m.model_file !== undefined && (typeof m.model_file !== 'string' || !isPlainFileName(m.model_file))) {
    return 'model_file: expected a file name';
  }
  if (!Number.isInteger(m.model_size)) return 'model_size: expected an integer';
  for (const key of ['inputs', 'outputs']) {
    if (!Array.isArray(m[key]) || m[key].length === 0) return `${key}: expected a non-empty list`;
    for (const [index, spec] of m[key].entries()) {
      if (typeof spec?.name !== 'string' || typeof spec.dtype !== 'string' || !Array.isArray(spec.shape)) {
        return `${key}.${index}: expected {name, dtype, shape}`;
      }
    }
  }
  if (m.files !== undefined && (typeof m.files !== 'object' || m.files === null || Array.isArray(m.files))) {
    return 'files: expected an object of file name -> sha256';
  }
  for (const fileName of Object.keys(m.files ?? {})) {
    if (!isPlainFileName(fileName)) return `files.${fileName}: expected a file name inside the version directory`;
  }
  if (m.labels !== undefined && m.labels !== null && !Array.isArray(m.labels)) return 'labels: expected a list';
  const t = m.tokenizer;
  if (t !== undefined && t !== null) {
    if (!Number.isInteger(t.max_length) || t.max_length < 1) return 'tokenizer.max_length: expected a positive integer';
    const file = t.file ?? 'tokenizer.json';
    if (!isPlainFileName(file) || !(file in (m.files ?? {}))) return 'tokenizer.file: expected a file listed in files';
  }
  return null;
}

function isPlainFileName(name) {
  return typeof name === 'string' && name.length > 0 && !/[/\\]/.test(name) && name !== '.' && name !== '..';
}

function describeSpec(spec) {
  const dims = spec.shape.map((d) => (d === null || d === undefined ? '?' : String(d))).join(', ');
  return `${spec.name}: ${spec.dtype}[${dims}]`;
}

/** The same text as ModelMetadata.signature_text() in Python. */
function signatureText(metadata) {
  const ins = metadata.inputs.map(describeSpec).join('; ');
  const outs = metadata.outputs.map(describeSpec).join('; ');
  return `inputs: ${ins} -> outputs: ${outs}`;
}

module.exports = { parseMetadata, describeSpec, signatureText, isPlainFileName };
