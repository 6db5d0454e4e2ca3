'use strict';

/**
 * onnxruntime results to the gateway's /predict `outputs` object, as modelstore/outputs.py formats it: nested
 * arrays per shape, and class ids mapped to labels (only for metadata.label_output, only integer outputs, ids out
 * of range stay numbers). Plain loops, since this runs on every request.
 */
const INTEGER_TYPES = new Set(['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64']);

const identity = (value) => value;

function converterFor(type, labels) {
  const toNumber = type === 'int64' || type === 'uint64' ? Number : identity;
  if (labels && INTEGER_TYPES.has(type)) {
    return (value) => {
      const id = toNumber(value);
      return id >= 0 && id < labels.length ? labels[id] : id;
    };
  }
  if (type === 'bool') return Boolean;
  return toNumber;
}

/** Nested arrays over `dims` from the flat `data`, each value passed through `convert`. */
function nest(data, dims, convert) {
  if (dims.length === 0) return convert(data[0]);
  let offset = 0;
  const last = dims.length - 1;
  const build = (depth) => {
    const length = dims[depth];
    const out = new Array(length);
    if (depth === last) {
      for (let i = 0; i < length; i += 1) out[i] = convert(data[offset + i]);
      offset += length;
    } else {
      for (let i = 0; i < length; i += 1) out[i] = build(depth + 1);
    }
    return out;
  };
  return build(0);
}

/** {name: nested array} in the order the model declares its outputs. */
function formatOutputs(metadata, results, outputNames) {
  const labels = Array.isArray(metadata.labels) && metadata.labels.length ? metadata.labels : null;
  const formatted = {};
  for (const name of outputNames) {
    const tensor = results[name];
    const convert = converterFor(tensor.type, name === metadata.label_output ? labels : null);
    formatted[name] = nest(tensor.data, tensor.dims, convert);
  }
  return formatted;
}

module.exports = { formatOutputs };
