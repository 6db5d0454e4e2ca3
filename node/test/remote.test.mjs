// openStore('http://host:port/admin/v1', {token}) against a real Python gateway over a copy of the shared fixture
// store: the same listings, resolutions and answers as the directory loader (and as Python onnxruntime, the vectors),
// a wrong token refused, a tampered file refused.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CODES, RemoteStore, openStore } from '../index.mjs';
import { compareOutputs, copyStore, fixtures } from '../test-helpers/fixtures.mjs';
import { startGateway } from '../test-helpers/gateway.mjs';

const TOLERANCE = 1e-5;
let fx;
let storeDir;
let gateway;
let local;
let remote;

before(async () => {
  fx = await fixtures();
  storeDir = copyStore(fx.store);
  gateway = await startGateway(storeDir);
  local = openStore(storeDir);
  remote = openStore(gateway.adminUrl, { token: gateway.token });
});

after(async () => {
  await remote?.close();
  await local?.close();
  await gateway?.stop();
});

describe('a store read through the ops API', () => {
  test('openStore(url) gives a RemoteStore listing what the directory lists', async () => {
    assert.ok(remote instanceof RemoteStore);
    assert.deepStrictEqual(await remote.listModels(), local.listModels());
    for (const name of local.listModels()) assert.deepStrictEqual(await remote.listVersions(name), local.listVersions(name));
  });

  test("resolve: 'latest', a version and an environment as the directory resolves them", async () => {
    assert.equal(await remote.resolve('iris'), local.resolve('iris'));
    assert.equal(await remote.resolve('iris', 'v0.10.0'), 'v0.10.0');
    for (const environment of Object.keys(fx.vectors.deployments.iris)) {
      assert.equal(await remote.resolve('iris', { environment }), local.resolve('iris', { environment }));
      for (const key of ['user-1', 'user-2', 'user-3', 'user-4', 'user-5', 'user-6', 'user-7', 'user-8']) {
        assert.equal(await remote.route('iris', environment, key), local.route('iris', environment, key), key);
      }
    }
    await assert.rejects(remote.resolve('iris', { environment: 'nowhere' }), { code: CODES.NOT_DEPLOYED });
    await assert.rejects(remote.load('ghost'), { code: CODES.MODEL_NOT_FOUND });
    await assert.rejects(remote.load('iris', 'v9.9.9'), { code: CODES.VERSION_NOT_FOUND });
    assert.equal(await remote.isAvailable('iris', 'v9.9.9'), false);
    assert.equal(await remote.isAvailable('iris', { environment: 'production' }), true);
  });

  for (const name of ['iris', 'house-price', 'multi-head', 'safety']) {
    test(`${name}: the same answers as the directory loader and Python onnxruntime`, async (t) => {
      const expected = fx.vectors.models[name];
      const [fromGateway, fromDisk] = await Promise.all([remote.load(name, expected.version),
        local.load(name, expected.version)]);
      assert.equal(fromGateway.version, expected.version);
      assert.equal(await remote.load(name, expected.version), fromGateway, 'cached per (name, version)');
      let largest = 0;
      for (const { request, expected: answer } of expected.cases) {
        const actual = await fromGateway.predict(request);
        assert.deepStrictEqual(actual, await fromDisk.predict(request));
        for (const output of expected.label_outputs) assert.deepStrictEqual(actual[output], answer[output]);
        largest = Math.max(largest, compareOutputs(actual, answer, name));
      }
      t.diagnostic(`${name} ${expected.version} over the ops API: largest difference ${largest.toExponential(3)}`);
      assert.ok(largest <= TOLERANCE, `largest difference ${largest} above ${TOLERANCE}`);
    });
  }

  test('a wrong token or none is refused', async () => {
    for (const token of ['not-a-token', undefined]) {
      const store = openStore(gateway.adminUrl, { token });
      await assert.rejects(store.listModels(), { code: CODES.UNAUTHORIZED, message: /401/ });
      await assert.rejects(store.load('iris', 'v1.0.0'), { code: CODES.UNAUTHORIZED });
    }
  });

  test('a tampered file is refused, never loaded', async () => {
    const modelPath = path.join(storeDir, 'iris', 'v0.10.0', 'model.onnx');
    const bytes = fs.readFileSync(modelPath);
    bytes[bytes.length - 1] ^= 0xff;
    fs.writeFileSync(modelPath, bytes);
    const store = openStore(gateway.adminUrl, { token: gateway.token });
    try {
      await assert.rejects(store.load('iris', 'v0.10.0'), { code: CODES.INTEGRITY_ERROR, message: /sha256 mismatch/ });
      await assert.rejects(local.load('iris', 'v0.10.0'), { code: CODES.INTEGRITY_ERROR }, 'as from the directory');
    } finally {
      await store.close();
    }
  });

  test('an unreachable gateway is STORE_UNAVAILABLE', async () => {
    const store = openStore('http://127.0.0.1:9/admin/v1', { token: gateway.token, timeoutMs: 5000 });
    await assert.rejects(store.listModels(), { code: CODES.STORE_UNAVAILABLE });
  });
});
