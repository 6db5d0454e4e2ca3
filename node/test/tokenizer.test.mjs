// Token ids and attention masks equal Python tokenizers' after truncation and padding (accents, emoji, CJK, long).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openStore } from '../index.mjs';
import { fixtures } from '../test-helpers/fixtures.mjs';

let fx;
let store;
let model;

before(async () => {
  fx = await fixtures();
  store = openStore(fx.store);
  model = await store.load(fx.vectors.tokenizer.model);
});
after(async () => store?.close());

test('ids and masks equal Python tokenizers for every vector', () => {
  const { cases } = fx.vectors.tokenizer;
  assert.ok(cases.some((c) => c.attention_mask.every((m) => m === 1)), 'vectors include texts past max_length');
  for (const { text, ids, attention_mask: mask } of cases) {
    const encoded = model.encodeText(text);
    assert.deepStrictEqual(encoded.ids, ids, `ids of ${JSON.stringify(text)}`);
    assert.deepStrictEqual(encoded.attentionMask, mask, `mask of ${JSON.stringify(text)}`);
  }
});

test('every encoding is exactly max_length long and ends a truncated text with the separator', () => {
  const { max_length: maxLength } = model.metadata.tokenizer;
  const long = 'win '.repeat(200);
  const encoded = model.encodeText(long);
  assert.equal(encoded.ids.length, maxLength);
  const full = model.encodeText('win');
  const sep = full.ids[full.attentionMask.lastIndexOf(1)];
  assert.equal(encoded.ids[maxLength - 1], sep);
});

test('a plain string, {text: string} and {text: [string]} give the same answer', async () => {
  const text = fx.vectors.tokenizer.cases[1].text;
  const a = await model.predict(text);
  const b = await model.predict({ text });
  const c = await model.predict({ text: [text] });
  assert.deepStrictEqual(a, b);
  assert.deepStrictEqual(a, c);
});
