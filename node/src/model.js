'use strict';

/** A loaded model version: its verified metadata, an onnxruntime-node session, and the tokenizer for text models. */
const ort = require('onnxruntime-node');
const { CODES, loaderError } = require('./errors');
const { feedsFor } = require('./inputs');
const { formatOutputs } = require('./outputs');
const { signatureText } = require('./metadata');
const { verifiedFiles } = require('./integrity');
const { TextEncoder } = require('./text');

class Model {
  constructor({ metadata, session, encoder, source }) {
    this.metadata = metadata;
    this.name = metadata.name;
    this.version = metadata.version;
    this.source = source;
    this.session = session;
    this.encoder = encoder;
    this.outputNames = session.outputNames;
  }

  get signature() {
    return signatureText(this.metadata);
  }

  /** A gateway request body -> the gateway's `outputs` object. Rejects with code INVALID_INPUT on a bad body. */
  async predict(body) {
    const feeds = feedsFor(this.metadata, this.encoder, body);
    let results;
    try {
      results = await this.session.run(feeds);
    } catch (error) {
      throw loaderError(CODES.RUNTIME_ERROR, `${this.name} ${this.version}: onnxruntime failed (${error.message}); ` +
        `the model expects ${this.signature}`, error);
    }
    return formatOutputs(this.metadata, results, this.outputNames);
  }

  /** Token ids and attention mask exactly as the model receives them (text models only). */
  encodeText(text) {
    if (!this.encoder) throw loaderError(CODES.INVALID_INPUT, `${this.name} ${this.version} is not a text model`);
    return this.encoder.encode(text);
  }

  async release() {
    await this.session.release();
  }
}

/**
 * Verify `files` (file name -> Buffer) against `metadata`, then build the session from the same verified bytes, so
 * nothing can change between the check and the load.
 */
async function createModel(metadata, files, where) {
  const checked = verifiedFiles(metadata, files, where);
  let encoder = null;
  if (metadata.tokenizer) {
    const file = metadata.tokenizer.file ?? 'tokenizer.json';
    let tokenizerJson;
    try {
      tokenizerJson = JSON.parse(checked.get(file).toString('utf8'));
    } catch (error) {
      throw loaderError(CODES.INVALID_METADATA, `${where}/${file}: not valid JSON (${error.message})`, error);
    }
    encoder = new TextEncoder(tokenizerJson, metadata.tokenizer, `${where}/${file}`);
  }
  const modelBytes = checked.get(metadata.model_file ?? 'model.onnx');
  let session;
  try {
    session = await ort.InferenceSession.create(modelBytes);
  } catch (error) {
    throw loaderError(CODES.RUNTIME_ERROR, `${where}: onnxruntime-node cannot load the model (${error.message})`, error);
  }
  return new Model({ metadata, session, encoder, source: where });
}

module.exports = { Model, createModel };
