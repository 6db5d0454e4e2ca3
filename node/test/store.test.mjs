// Listing, version order, resolution, caching and reload on a real store written by the Python side.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { createRequire } from 'node:module';
import * as esm from '../index.mjs';
import { CODES, openStore, sortVersions } from '../index.mjs';
import { NODE_DIR, copyStore, fixtures } from '../test-helpers/fixtures.mjs';

let fx;

before(async () => {
  fx = await fixtures();
});

test('listModels and listVersions match the Python store', () => {
  const store = openStore(fx.store);
  assert.deepStrictEqual(store.listModels(), ['house-price', 'iris', 'multi-head', 'safety']);
  assert.deepStrictEqual(store.listVersions('iris'), fx.vectors.versions.iris);
});

test('version order equals modelstore.versions.sort_versions, pre-releases included', () => {
  assert.deepStrictEqual(sortVersions(fx.vectors.versions.sample), fx.vectors.versions.sample_sorted);
});

test("resolve: 'latest', a version, and an environment from registry.json", () => {
  const store = openStore(fx.store);
  const versions = fx.vectors.versions.iris;
  assert.equal(store.resolve('iris'), versions[versions.length - 1]);
  assert.equal(store.resolve('iris', 'latest'), 'v1.0.0');
  assert.equal(store.resolve('iris', 'v0.10.0'), 'v0.10.0');
  for (const [environment, version] of Object.entries(fx.vectors.deployments.iris)) {
    assert.equal(store.resolve('iris', { environment }), version);
  }
  assert.throws(() => store.resolve('iris', { environment: 'nowhere' }), { code: CODES.NOT_DEPLOYED });
});

test('isAvailable answers without throwing', () => {
  const store = openStore(fx.store);
  assert.equal(store.isAvailable('iris', 'v0.9.0'), true);
  assert.equal(store.isAvailable('iris'), true);
  assert.equal(store.isAvailable('iris', { environment: 'production' }), true);
  assert.equal(store.isAvailable('iris', 'v9.9.9'), false);
  assert.equal(store.isAvailable('nope'), false);
  assert.equal(store.isAvailable('../etc', 'v1.0.0'), false);
});

test('sessions are cached per (name, version), also across concurrent loads', async () => {
  const store = openStore(fx.store);
  try {
    const [a, b] = await Promise.all([store.load('iris', 'v1.0.0'), store.load('iris', 'v1.0.0')]);
    assert.equal(a, b);
    assert.equal(await store.load('iris'), a);
    assert.equal(await store.load('iris', { environment: 'production' }), a);
    assert.notEqual(await store.load('iris', 'v0.9.0'), a);
  } finally {
    await store.close();
  }
});

function publishCopy(storeDir, name, from, to) {
  const target = path.join(storeDir, name, to);
  fs.cpSync(path.join(storeDir, name, from), target, { recursive: true });
  const metadataPath = path.join(target, 'metadata.json');
  const metadata = JSON.parse(fs.readFileSync(metadataPath, 'utf8'));
  fs.writeFileSync(metadataPath, JSON.stringify({ ...metadata, version: to }, null, 2));
}

test('reload() picks up a new latest and a new deployment', async () => {
  const dir = copyStore(fx.store);
  const store = openStore(dir);
  try {
    assert.equal((await store.load('iris')).version, 'v1.0.0');
    assert.equal(store.resolve('iris', { environment: 'staging' }), 'v0.9.0');
    publishCopy(dir, 'iris', 'v1.0.0', 'v1.1.0');
    assert.equal((await store.load('iris')).version, 'v1.0.0', 'cached until reload');
    const registryPath = path.join(dir, 'registry.json');
    const registry = JSON.parse(fs.readFileSync(registryPath, 'utf8'));
    registry.deployments.iris.staging.version = 'v0.10.0';
    fs.writeFileSync(registryPath, JSON.stringify(registry));
    assert.equal(store.resolve('iris', { environment: 'staging' }), 'v0.9.0');
    await store.reload();
    assert.equal((await store.load('iris')).version, 'v1.1.0');
    assert.equal((await store.load('iris', { environment: 'staging' })).version, 'v0.10.0');
  } finally {
    await store.close();
  }
});

test('reload() drops a cached model whose version was republished', async () => {
  const dir = copyStore(fx.store);
  const store = openStore(dir);
  try {
    const before = await store.load('iris', 'v0.9.0');
    fs.rmSync(path.join(dir, 'iris', 'v0.9.0'), { recursive: true });
    publishCopy(dir, 'iris', 'v1.0.0', 'v0.9.0');
    const { dropped } = await store.reload();
    assert.deepStrictEqual(dropped, ['iris/v0.9.0']);
    assert.notEqual(await store.load('iris', 'v0.9.0'), before);
  } finally {
    await store.close();
  }
});

test('CommonJS and ESM entries export the same objects, all declared in index.d.ts', () => {
  const cjs = createRequire(import.meta.url)('../src/index.js');
  const declarations = fs.readFileSync(path.join(NODE_DIR, 'index.d.ts'), 'utf8');
  for (const [name, value] of Object.entries(cjs)) {
    assert.equal(esm[name], value, name);
    assert.match(declarations, new RegExp(`export declare (const|class|function) ${name}\\b`), name);
  }
});
