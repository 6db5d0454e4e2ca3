'use strict';

/**
 * Text to model inputs with the package's tokenizer.json. @huggingface/tokenizers gives the same ids as Python's
 * `tokenizers` but ignores the truncation and padding saved in tokenizer.json, so they are applied here exactly as
 * the Rust post-processing step does: cut the sequence to max_length minus the special tokens the template adds
 * (keeping the end the tokenizer's truncation direction names), add the specials, then pad to max_length.
 */
const { Tokenizer } = require('@huggingface/tokenizers');
const { CODES, loaderError } = require('./errors');

class TextEncoder {
  /**
   * @param {object} tokenizerJson parsed tokenizer.json
   * @param {object} info metadata.tokenizer: {max_length, pad_id, input_ids, attention_mask, truncation}
   * @param {string} where names the file in error messages
   */
  constructor(tokenizerJson, info, where) {
    try {
      this.tokenizer = new Tokenizer(tokenizerJson, {});
    } catch (error) {
      throw loaderError(CODES.INVALID_METADATA, `${where}: cannot build the tokenizer (${error.message})`, error);
    }
    checkAgreement(tokenizerJson, info, where);
    this.maxLength = info.max_length;
    this.padId = info.pad_id ?? 0;
    this.truncate = info.truncation !== false;
    this.truncateLeft = tokenizerJson.truncation?.direction === 'Left';
    this.padLeft = tokenizerJson.padding?.direction === 'Left';
    this.padToMultipleOf = tokenizerJson.padding?.pad_to_multiple_of ?? null;
    this.unkId = this.tokenizer.model?.unk_token_id;
    const processor = this.tokenizer.post_processor;
    this.addSpecials = processor ? (tokens) => processor(tokens, null, true).tokens : (tokens) => tokens;
    this.specialCount = this.addSpecials([]).length;
    if (this.truncate && this.specialCount > this.maxLength) {
      throw loaderError(CODES.INVALID_METADATA, `${where}: max_length ${this.maxLength} is shorter than the ` +
        `${this.specialCount} special tokens the tokenizer adds`);
    }
  }

  /** One text -> {ids, attentionMask} (plain number arrays), the same as Python's tokenizer.encode(text). */
  encode(text) {
    let tokens = this.tokenizer.tokenize(text, { add_special_tokens: false });
    const room = this.maxLength - this.specialCount;
    if (this.truncate && tokens.length > room) {
      tokens = this.truncateLeft ? tokens.slice(tokens.length - room) : tokens.slice(0, room);
    }
    const ids = this.addSpecials(tokens).map((token) => this.idOf(token));
    const attentionMask = new Array(ids.length).fill(1);
    const padding = this.paddedLength(ids.length) - ids.length;
    if (padding > 0) {
      const padIds = new Array(padding).fill(this.padId);
      const padMask = new Array(padding).fill(0);
      return this.padLeft
        ? { ids: padIds.concat(ids), attentionMask: padMask.concat(attentionMask) }
        : { ids: ids.concat(padIds), attentionMask: attentionMask.concat(padMask) };
    }
    return { ids, attentionMask };
  }

  paddedLength(length) {
    let target = Math.max(length, this.maxLength);
    const multiple = this.padToMultipleOf;
    if (multiple && target % multiple !== 0) target += multiple - (target % multiple);
    return target;
  }

  idOf(token) {
    const id = this.tokenizer.token_to_id(token);
    return id === undefined ? this.unkId : id;
  }
}

/** metadata.tokenizer is what the loader applies; a tokenizer.json that says otherwise is refused, not guessed. */
function checkAgreement(tokenizerJson, info, where) {
  const problems = [];
  const { truncation, padding } = tokenizerJson;
  if (truncation && truncation.max_length !== info.max_length) {
    problems.push(`truncation max_length ${truncation.max_length} != ${info.max_length}`);
  }
  if (padding && padding.pad_id !== undefined && padding.pad_id !== (info.pad_id ?? 0)) {
    problems.push(`pad_id ${padding.pad_id} != ${info.pad_id}`);
  }
  const fixed = padding?.strategy?.Fixed;
  if (fixed !== undefined && fixed !== info.max_length) problems.push(`padding length ${fixed} != ${info.max_length}`);
  if (problems.length) {
    throw loaderError(CODES.INVALID_METADATA, `${where}: tokenizer.json disagrees with metadata.tokenizer ` +
      `(${problems.join('; ')})`);
  }
}

module.exports = { TextEncoder };
