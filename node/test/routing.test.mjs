// The canary split against the shared vectors (tests/vectors/routing.json, buckets from Python's hashlib).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { bucketOf, canaryThreshold, chooseVersion, openStore } from '../index.mjs';
import { REPO_DIR, fixtures } from '../test-helpers/fixtures.mjs';

const committed = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'tests', 'vectors', 'routing.json'), 'utf8'));
let fx;

before(async () => {
  fx = await fixtures();
});

test('the committed vectors are what Python computes now', () => {
  assert.deepStrictEqual(committed, fx.vectors.routing);
});

test('buckets equal Python hashlib for every key (empty, unicode, long)', () => {
  for (const { key, bucket } of committed.buckets) assert.equal(bucketOf(key), bucket, JSON.stringify(key));
});

test('salted buckets equal Python hashlib for every salt and key', () => {
  for (const { salt, key, bucket } of committed.salted_buckets) {
    assert.equal(bucketOf(key, salt), bucket, JSON.stringify([salt, key]));
  }
  const differ = committed.salted_buckets.filter(({ salt, key }) => bucketOf(key, salt) !== bucketOf(key));
  assert.ok(differ.length > committed.salted_buckets.length / 2, 'the salt changes the buckets');
});

test('thresholds round half to even like Python round()', () => {
  for (const { weight, threshold } of committed.thresholds) assert.equal(canaryThreshold(weight), threshold, `${weight}`);
  assert.equal(canaryThreshold(0.125), 12);
  assert.equal(canaryThreshold(0.375), 38);
});

test('chooseVersion picks what the vectors say', () => {
  const { deployment, expected } = committed.choices;
  for (const { key, version } of expected) assert.equal(chooseVersion(deployment, key), version, JSON.stringify(key));
  assert.ok(expected.some((e) => e.version === deployment.canary.version), 'vectors reach the canary');
  assert.ok(expected.some((e) => e.version === deployment.version), 'vectors reach stable');
});

test('chooseVersion reads routing_salt from the deployment and picks what the salted vectors say', () => {
  const { deployment, expected } = committed.salted_choices;
  assert.equal(typeof deployment.routing_salt, 'string');
  for (const { key, version } of expected) assert.equal(chooseVersion(deployment, key), version, JSON.stringify(key));
  assert.ok(expected.some((e) => e.version === deployment.canary.version), 'vectors reach the canary');
  assert.ok(expected.some((e) => e.version === deployment.version), 'vectors reach stable');
  const unsalted = { ...deployment, routing_salt: undefined };
  assert.ok(expected.some(({ key, version }) => chooseVersion(unsalted, key) !== version), 'the salt moves some keys');
  assert.throws(() => chooseVersion({ ...deployment, routing_salt: 42 }, 'k'), { code: 'INVALID_INPUT' });
});

test('no canary, weight 0 and weight 100', () => {
  assert.equal(chooseVersion({ version: 'v1.0.0' }, 'k'), 'v1.0.0');
  const keys = committed.buckets.map((b) => b.key);
  for (const key of keys) {
    assert.equal(chooseVersion({ version: 'v1', canary: { version: 'v2', weight: 0 } }, key), 'v1');
    assert.equal(chooseVersion({ version: 'v1', canary: { version: 'v2', weight: 100 } }, key), 'v2');
  }
});

test('without a key the split is random at the canary weight', () => {
  const deployment = { version: 'v1', canary: { version: 'v2', weight: 12.5 } };
  const draws = 40000;
  let canary = 0;
  for (let i = 0; i < draws; i += 1) if (chooseVersion(deployment) === 'v2') canary += 1;
  assert.ok(Math.abs(canary / draws - 0.125) < 0.01, `canary share ${canary / draws}`);
});

test('store.route reads the canary from registry.json', () => {
  const store = openStore(fx.store);
  const deployment = store.deployment('iris', 'production');
  assert.equal(deployment.canary.weight, 12.5);
  assert.match(deployment.routing_salt, /^[0-9a-f]{32}$/, 'the canary gave the deployment a salt');
  for (const { key } of committed.buckets) {
    const expected = bucketOf(key, deployment.routing_salt) < 1250 ? deployment.canary.version : deployment.version;
    assert.equal(store.route('iris', 'production', key), expected);
  }
  assert.equal(store.route('iris', 'staging', 'anyone'), 'v0.9.0');
});
