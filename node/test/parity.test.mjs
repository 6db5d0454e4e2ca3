// The loader against Python onnxruntime on the same store and packages: labels exactly, scores within 1e-5.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadPackage, openStore } from '../index.mjs';
import { NODE_DIR, compareOutputs, fixtures, scratchDir } from '../test-helpers/fixtures.mjs';

const TOLERANCE = 1e-5;
let fx;
let store;

before(async () => {
  fx = await fixtures();
  store = openStore(fx.store);
});
after(async () => store?.close());

async function checkModel(t, model, expectedModel) {
  let largest = 0;
  for (const { request, expected } of expectedModel.cases) {
    const actual = await model.predict(request);
    for (const name of expectedModel.label_outputs) assert.deepStrictEqual(actual[name], expected[name], `${name} labels`);
    largest = Math.max(largest, compareOutputs(actual, expected, expectedModel.name));
  }
  t.diagnostic(`${expectedModel.name} ${expectedModel.version}: largest difference ${largest.toExponential(3)}`);
  assert.ok(largest <= TOLERANCE, `largest difference ${largest} above ${TOLERANCE}`);
  return largest;
}

const CASES = [
  ['float32 tabular classifier', 'iris'],
  ['float64 regressor', 'house-price'],
  ['multiple outputs of several dtypes, labels partly out of range', 'multi-head'],
  ['raw text through the tokenizer', 'safety'],
];

describe('store parity with Python onnxruntime', () => {
  for (const [title, name] of CASES) {
    test(title, async (t) => {
      const expected = fx.vectors.models[name];
      const model = await store.load(name, expected.version);
      const largest = await checkModel(t, model, expected);
      console.log(`parity ${name}: largest difference ${largest}`);
    });
  }
});

describe('package parity with Python onnxruntime', () => {
  test('every fixture package answers like the store', async (t) => {
    if (!fx.vectors.packages.available) {
      t.skip(fx.vectors.packages.reason);
      return;
    }
    for (const [name, file] of Object.entries(fx.vectors.packages.files)) {
      const model = await loadPackage(path.join(fx.dir, file));
      assert.equal(model.name, name);
      try {
        await checkModel(t, model, fx.vectors.models[name]);
      } finally {
        await model.release();
      }
    }
  });
});

describe('bin/predict-rows.mjs', () => {
  test('prints the same outputs as Python for every body form', () => {
    const tmp = scratchDir('onnxgate-rows-');
    for (const expectedModel of Object.values(fx.vectors.models)) {
      const { request, expected } = expectedModel.cases[0];
      const rowsPath = path.join(tmp, `${expectedModel.name}.json`);
      fs.writeFileSync(rowsPath, JSON.stringify(request));
      const result = spawnSync(process.execPath, [path.join(NODE_DIR, 'bin', 'predict-rows.mjs'), '--store', fx.store,
        '--name', expectedModel.name, '--version', expectedModel.version, '--rows', rowsPath], { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr);
      const { outputs } = JSON.parse(result.stdout);
      assert.ok(compareOutputs(outputs, expected, expectedModel.name) <= TOLERANCE);
    }
  });

  test('exits 1 with a one-line message on stderr', () => {
    const result = spawnSync(process.execPath, [path.join(NODE_DIR, 'bin', 'predict-rows.mjs'), '--store', fx.store,
      '--name', 'no-such-model', '--version', 'v1.0.0', '--rows', path.join(fx.dir, 'vectors.json')], { encoding: 'utf8' });
    assert.equal(result.status, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^predict-rows: MODEL_NOT_FOUND: .*no-such-model.*\n$/);
  });
});
