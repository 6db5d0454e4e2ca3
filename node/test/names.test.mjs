// Names and versions are matched whole and bounded, exactly as modelstore/versions.py matches them; metrics are
// finite numbers, as modelstore/metadata.py requires.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { CODES, LoaderError, openStore, sortVersions } from '../index.mjs';
import { copyStore, fixtures } from '../test-helpers/fixtures.mjs';

let fx;

before(async () => {
  fx = await fixtures();
});

function invalidName(pattern) {
  return (error) => {
    assert.ok(error instanceof LoaderError, `expected a LoaderError, got ${error}`);
    assert.equal(error.code, CODES.INVALID_NAME, error.message);
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes('\n'), `a one-line message, got ${JSON.stringify(error.message)}`);
    return true;
  };
}

test('a trailing newline is not part of a valid name or version', async () => {
  const store = openStore(fx.store);
  await assert.rejects(store.load('iris\n', 'v1.0.0'), invalidName(/invalid model name/));
  await assert.rejects(store.load('iris', 'v1.0.0\n'), invalidName(/invalid version/));
  assert.deepStrictEqual(sortVersions(['v1.0.0\n', 'v1.0.0', 'v0.1.0\n']), ['v1.0.0']);
});

test('over-long names and versions are refused with a short message, never ENAMETOOLONG', async () => {
  const store = openStore(fx.store);
  const longVersion = `v1.0.0-${'a'.repeat(5000)}`;
  await assert.rejects(store.load('iris', longVersion), invalidName(/at most 64 characters/));
  await assert.rejects(store.load('a'.repeat(5000), 'v1.0.0'), invalidName(/5000 characters/));
  const edge = `v1.0.0-${'a'.repeat(64 - 'v1.0.0-'.length)}`;
  assert.deepStrictEqual(sortVersions([edge, `${edge}a`]), [edge]);
  assert.ok(!store.isAvailable('iris', longVersion));
});

test('digits are ASCII digits, as in Python', () => {
  assert.deepStrictEqual(sortVersions(['v\u0661.0.0', 'v1.0.0']), ['v1.0.0']);
});

test('metadata.json with a non-finite metric or a name with a newline is refused by name', async () => {
  const dir = copyStore(fx.store);
  const metadataPath = path.join(dir, 'iris', 'v1.0.0', 'metadata.json');
  const original = fs.readFileSync(metadataPath, 'utf8');
  const metadata = JSON.parse(original);
  fs.writeFileSync(metadataPath, JSON.stringify({ ...metadata, metrics: { accuracy: 1 } }).replace('"accuracy":1', '"accuracy":1e999'));
  await assert.rejects(openStore(dir).load('iris', 'v1.0.0'),
    (error) => error.code === CODES.INVALID_METADATA && /metrics\.accuracy: expected a finite number/.test(error.message));
  fs.writeFileSync(metadataPath, JSON.stringify({ ...metadata, name: 'iris\n' }));
  await assert.rejects(openStore(dir).load('iris', 'v1.0.0'),
    (error) => error.code === CODES.INVALID_METADATA && /name: invalid model name/.test(error.message));
  fs.writeFileSync(metadataPath, original);
  assert.equal((await openStore(dir).load('iris', 'v1.0.0')).version, 'v1.0.0');
});
