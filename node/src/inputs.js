'use strict';

/**
 * Request bodies to onnxruntime feeds, checked against the signature. Accepts the gateway's body forms:
 * {inputs: [[...]]} for single-input models, {inputs: {name: [[...]]}}, and {text: [...]} or a plain string for
 * text models. Every refusal names the input and the expected signature.
 */
const ort = require('onnxruntime-node');
const { CODES, loaderError } = require('./errors');
const { describeSpec, signatureText } = require('./metadata');

function integerRange(min, max) {
  return (v) => Number.isInteger(v) && v >= min && v <= max;
}

const isNumber = (v) => typeof v === 'number';
const isSafeInteger = (v) => Number.isSafeInteger(v) || typeof v === 'bigint';

// dtype -> how JSON values are checked and stored. int64 takes safe integers (JSON cannot carry more exactly).
const DTYPES = {
  float32: { array: Float32Array, accepts: isNumber, kind: 'a number' },
  float64: { array: Float64Array, accepts: isNumber, kind: 'a number' },
  int8: { array: Int8Array, accepts: integerRange(-128, 127), kind: 'an int8' },
  int16: { array: Int16Array, accepts: integerRange(-32768, 32767), kind: 'an int16' },
  int32: { array: Int32Array, accepts: integerRange(-2147483648, 2147483647), kind: 'an int32' },
  uint8: { array: Uint8Array, accepts: integerRange(0, 255), kind: 'a uint8' },
  uint16: { array: Uint16Array, accepts: integerRange(0, 65535), kind: 'a uint16' },
  uint32: { array: Uint32Array, accepts: integerRange(0, 4294967295), kind: 'a uint32' },
  int64: { array: BigInt64Array, accepts: isSafeInteger, kind: 'an integer', convert: BigInt },
  uint64: { array: BigUint64Array, accepts: (v) => isSafeInteger(v) && v >= 0, kind: 'a non-negative integer', convert: BigInt },
  bool: { array: Uint8Array, accepts: (v) => typeof v === 'boolean' || v === 0 || v === 1, kind: 'a boolean', convert: Number },
  string: { array: Array, accepts: (v) => typeof v === 'string', kind: 'a string' },
};

function invalid(metadata, message) {
  return loaderError(CODES.INVALID_INPUT, `${message}; ${metadata.name} ${metadata.version} expects ${signatureText(metadata)}`);
}

/** The texts of a text request, or null when the body is not one. */
function textsOf(body) {
  if (typeof body === 'string') return [body];
  if (body && typeof body === 'object' && !Array.isArray(body) && 'text' in body) {
    return typeof body.text === 'string' ? [body.text] : body.text;
  }
  return null;
}

/** The {name: nested array} a tensor request carries. */
function namedInputs(metadata, body) {
  const given = Array.isArray(body) ? body : body?.inputs;
  if (Array.isArray(given)) {
    if (metadata.inputs.length !== 1) {
      throw invalid(metadata, `the model has ${metadata.inputs.length} inputs: send {inputs: {name: rows}}`);
    }
    return { [metadata.inputs[0].name]: given };
  }
  if (given && typeof given === 'object') return given;
  throw invalid(metadata, 'expected a body {inputs: rows}, {inputs: {name: rows}} or, for text models, {text: [...]}');
}

function tensorFeeds(metadata, body) {
  const named = namedInputs(metadata, body);
  const signature = compiled(metadata);
  for (const name of Object.keys(named)) {
    if (!signature.names.has(name)) throw invalid(metadata, `unknown input '${name}'`);
  }
  const feeds = {};
  for (const spec of metadata.inputs) {
    if (!Object.hasOwn(named, spec.name)) throw invalid(metadata, `missing input '${spec.name}'`);
    feeds[spec.name] = tensorFor(metadata, spec, named[spec.name]);
  }
  return feeds;
}

// The input names as a Set, computed once per metadata object (predict runs per request).
const signatures = new WeakMap();
function compiled(metadata) {
  let signature = signatures.get(metadata);
  if (!signature) {
    signature = { names: new Set(metadata.inputs.map((spec) => spec.name)) };
    signatures.set(metadata, signature);
  }
  return signature;
}

/** A value of the wrong type met while copying; tensorFor turns it into an INVALID_INPUT naming the input. */
class BadValue {
  constructor(value) {
    this.value = value;
  }
}

function tensorFor(metadata, spec, value) {
  const dtype = DTYPES[spec.dtype];
  if (!dtype) throw invalid(metadata, `input '${spec.name}' has dtype ${spec.dtype}, which the Node loader does not support`);
  const dims = [];
  for (let node = value; Array.isArray(node); node = node[0]) dims.push(node.length);
  let size = 1;
  let fits = dims.length === spec.shape.length;
  for (let i = 0; i < dims.length; i += 1) {
    size *= dims[i];
    if (dims[i] === 0 || (fits && Number.isInteger(spec.shape[i]) && spec.shape[i] !== dims[i])) fits = false;
  }
  if (!fits) throw shapeError(metadata, spec, dims);
  const data = new dtype.array(size);
  try {
    if (dims.length === 0) {
      fillScalar(value, data, dtype);
    } else if (fill(value, dims, 0, data, 0, dtype) !== size) {
      throw shapeError(metadata, spec, null);
    }
  } catch (error) {
    if (!(error instanceof BadValue)) throw error;
    const shown = JSON.stringify(error.value) ?? String(error.value);
    throw invalid(metadata, `input '${spec.name}': expected ${describeSpec(spec)}, got ${shown} where ${dtype.kind} belongs`);
  }
  return new ort.Tensor(spec.dtype, data, dims);
}

function shapeError(metadata, spec, dims) {
  const got = dims === null || dims.includes(0) ? 'a ragged or empty array' : `shape [${dims.join(', ')}]`;
  return invalid(metadata, `input '${spec.name}': expected ${describeSpec(spec)}, got ${got}`);
}

function fillScalar(value, data, dtype) {
  if (!dtype.accepts(value)) throw new BadValue(value);
  data[0] = dtype.convert ? dtype.convert(value) : value;
}

/** Copy a nested array into `data` from `offset`, checking every level's length and every value's type; returns
 * the offset after the last value, or -1 when the nesting is ragged. Plain loops: this runs on every request. */
function fill(node, dims, depth, data, offset, dtype) {
  if (!Array.isArray(node) || node.length !== dims[depth]) return -1;
  if (depth === dims.length - 1) {
    const { accepts, convert } = dtype;
    for (let i = 0; i < node.length; i += 1) {
      const item = node[i];
      if (!accepts(item)) {
        if (Array.isArray(item)) return -1;
        throw new BadValue(item);
      }
      data[offset + i] = convert ? convert(item) : item;
    }
    return offset + node.length;
  }
  for (let i = 0; i < node.length; i += 1) {
    offset = fill(node[i], dims, depth + 1, data, offset, dtype);
    if (offset < 0) return -1;
  }
  return offset;
}

/** Token ids and mask for a batch of texts, typed as the signature says. */
function textFeeds(metadata, encoder, texts) {
  if (!Array.isArray(texts) || texts.length === 0 || texts.some((t) => typeof t !== 'string')) {
    throw invalid(metadata, 'text: expected a string or a non-empty list of strings');
  }
  const info = metadata.tokenizer;
  const encodings = texts.map((text) => encoder.encode(text));
  const length = encodings[0].ids.length;
  const feeds = {};
  const idsSpec = metadata.inputs.find((spec) => spec.name === (info.input_ids ?? 'input_ids'));
  if (!idsSpec) throw invalid(metadata, `the tokenizer feeds '${info.input_ids}', which is not a model input`);
  feeds[idsSpec.name] = tensorFor(metadata, idsSpec, encodings.map((e) => e.ids));
  if (info.attention_mask) {
    const maskSpec = metadata.inputs.find((spec) => spec.name === info.attention_mask);
    if (!maskSpec) throw invalid(metadata, `the tokenizer feeds '${info.attention_mask}', which is not a model input`);
    feeds[maskSpec.name] = tensorFor(metadata, maskSpec, encodings.map((e) => e.attentionMask));
  }
  if (encodings.some((e) => e.ids.length !== length)) throw invalid(metadata, 'texts encoded to different lengths');
  return feeds;
}

/** Feeds for any accepted body form. */
function feedsFor(metadata, encoder, body) {
  const texts = textsOf(body);
  if (texts !== null) {
    if (!encoder) throw invalid(metadata, 'this model takes tensors, not text: send {inputs: ...}');
    return textFeeds(metadata, encoder, texts);
  }
  return tensorFeeds(metadata, body);
}

module.exports = { feedsFor };
