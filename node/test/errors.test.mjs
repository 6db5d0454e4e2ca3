// Every failure is an Error with a code and a clear message, thrown or rejected, never a crash.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { CODES, LoaderError, loadPackage, openStore } from '../index.mjs';
import { copyStore, fixtures, scratchDir } from '../test-helpers/fixtures.mjs';
import { packageEntries, writeArchive } from '../test-helpers/packages.mjs';

let fx;

before(async () => {
  fx = await fixtures();
});

function expectCode(code, pattern) {
  return (error) => {
    assert.ok(error instanceof LoaderError, `expected a LoaderError, got ${error}`);
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

describe('store errors', () => {
  test('missing store', () => {
    assert.throws(() => openStore(path.join(os.tmpdir(), 'no-such-store-here')), expectCode(CODES.STORE_NOT_FOUND, /no-such-store-here/));
  });

  test('unknown model and unknown version', async () => {
    const store = openStore(fx.store);
    await assert.rejects(store.load('ghost'), expectCode(CODES.MODEL_NOT_FOUND, /'ghost'/));
    await assert.rejects(store.load('iris', 'v9.9.9'), expectCode(CODES.VERSION_NOT_FOUND, /'v9.9.9'/));
    assert.throws(() => store.listVersions('ghost'), expectCode(CODES.MODEL_NOT_FOUND));
    await assert.rejects(store.load('../../etc', 'v1.0.0'), expectCode(CODES.INVALID_NAME));
    await assert.rejects(store.load('iris', '../v1.0.0'), expectCode(CODES.INVALID_NAME));
  });

  test('corrupt registry.json: not JSON, and JSON of the wrong shape', () => {
    const dir = copyStore(fx.store);
    fs.writeFileSync(path.join(dir, 'registry.json'), '{"deployments": {"iris": ');
    assert.throws(() => openStore(dir).resolve('iris', { environment: 'production' }),
      expectCode(CODES.CORRUPT_REGISTRY, /registry\.json: registry is not valid JSON/));
    fs.writeFileSync(path.join(dir, 'registry.json'), '{"deployments": {"iris": {"production": {"version": 3}}}}');
    assert.throws(() => openStore(dir).route('iris', 'production', 'k'),
      expectCode(CODES.CORRUPT_REGISTRY, /deployments\.iris\.production\.version/));
  });

  test('tampered model.onnx and tokenizer.json are refused', async () => {
    const dir = copyStore(fx.store);
    const modelPath = path.join(dir, 'iris', 'v1.0.0', 'model.onnx');
    const bytes = fs.readFileSync(modelPath);
    bytes[bytes.length - 1] ^= 0xff;
    fs.writeFileSync(modelPath, bytes);
    const store = openStore(dir);
    await assert.rejects(store.load('iris', 'v1.0.0'), expectCode(CODES.INTEGRITY_ERROR, /model\.onnx: sha256 mismatch.*tampered/));
    fs.appendFileSync(path.join(dir, 'safety', 'v1.0.0', 'tokenizer.json'), ' ');
    await assert.rejects(store.load('safety'), expectCode(CODES.INTEGRITY_ERROR, /tokenizer\.json: sha256 mismatch/));
    fs.rmSync(path.join(dir, 'multi-head', fx.vectors.models['multi-head'].version, 'model.onnx'));
    await assert.rejects(store.load('multi-head'), expectCode(CODES.INTEGRITY_ERROR, /missing/));
  });

  test('a failed load is not cached: fixing the file makes the next load work', async () => {
    const dir = copyStore(fx.store);
    const modelPath = path.join(dir, 'iris', 'v0.9.0', 'model.onnx');
    const good = fs.readFileSync(modelPath);
    fs.writeFileSync(modelPath, Buffer.concat([good, Buffer.from('x')]));
    const store = openStore(dir);
    await assert.rejects(store.load('iris', 'v0.9.0'), expectCode(CODES.INTEGRITY_ERROR));
    fs.writeFileSync(modelPath, good);
    assert.equal((await store.load('iris', 'v0.9.0')).version, 'v0.9.0');
    await store.close();
  });
});

describe('input errors name the input and the expected signature', () => {
  let iris;
  let multi;
  let safety;
  before(async () => {
    const store = openStore(fx.store);
    [iris, multi, safety] = await Promise.all([store.load('iris'), store.load('multi-head'), store.load('safety')]);
  });

  test('wrong shape', async () => {
    await assert.rejects(iris.predict({ inputs: [[1, 2, 3]] }),
      expectCode(CODES.INVALID_INPUT, /input 'X': expected X: float32\[batch, 4\], got shape \[1, 3\].*inputs: X: float32\[batch, 4\] ->/));
    await assert.rejects(iris.predict({ inputs: [1, 2, 3, 4] }), expectCode(CODES.INVALID_INPUT, /got shape \[4\]/));
    await assert.rejects(iris.predict({ inputs: [[1, 2, 3, 4], [1, 2]] }), expectCode(CODES.INVALID_INPUT, /ragged/));
    await assert.rejects(iris.predict({ inputs: [] }), expectCode(CODES.INVALID_INPUT, /input 'X'/));
  });

  test('wrong dtype', async () => {
    await assert.rejects(iris.predict({ inputs: [[1, 'two', 3, 4]] }),
      expectCode(CODES.INVALID_INPUT, /input 'X': expected X: float32\[batch, 4\], got "two" where a number belongs/));
    const ids = new Array(12).fill(1.5);
    await assert.rejects(safety.predict({ inputs: { input_ids: [ids], attention_mask: [ids] } }),
      expectCode(CODES.INVALID_INPUT, /input 'input_ids': expected input_ids: int64\[batch, 12\], got 1\.5 where an integer/));
  });

  test('wrong names and wrong body forms', async () => {
    await assert.rejects(multi.predict({ inputs: { Y: [[1, 2, 3]] } }), expectCode(CODES.INVALID_INPUT, /unknown input 'Y'/));
    await assert.rejects(safety.predict({ inputs: { input_ids: [new Array(12).fill(1)] } }),
      expectCode(CODES.INVALID_INPUT, /missing input 'attention_mask'/));
    await assert.rejects(safety.predict({ inputs: [[1]] }), expectCode(CODES.INVALID_INPUT, /has 2 inputs/));
    await assert.rejects(iris.predict('some text'), expectCode(CODES.INVALID_INPUT, /takes tensors, not text/));
    await assert.rejects(safety.predict({ text: [] }), expectCode(CODES.INVALID_INPUT, /text: expected/));
    await assert.rejects(iris.predict(null), expectCode(CODES.INVALID_INPUT));
    await assert.rejects(iris.predict(42), expectCode(CODES.INVALID_INPUT));
  });
});

describe('package errors', () => {
  const versionOf = (name) => fx.vectors.models[name].version;

  test('path traversal, absolute paths and links are refused', async () => {
    const good = packageEntries(fx.store, 'iris', versionOf('iris'));
    const cases = [
      [{ name: '../../evil.sh', data: Buffer.from('echo owned') }, /path traversal/],
      [{ name: 'iris/v1.0.0/../../../evil', data: Buffer.from('x') }, /path traversal/],
      [{ name: '/etc/cron.d/evil', data: Buffer.from('x') }, /path traversal/],
      [{ name: 'iris/v1.0.0/link', type: 'symlink', linkname: '/etc/passwd' }, /symlink -> "\/etc\/passwd".*regular files only/],
      [{ name: 'iris/v1.0.0/hard', type: 'link', linkname: 'manifest.json' }, /link.*regular files only/],
      [{ name: 'iris/v1.0.0/sub', type: 'directory' }, /directory.*regular files only/],
      [{ name: 'iris/v1.0.0/extra.txt', data: Buffer.from('x') }, /not listed in the manifest: iris\/v1\.0\.0\/extra\.txt/],
    ];
    for (const [entry, pattern] of cases) {
      const file = await writeArchive([...good, entry]);
      await assert.rejects(loadPackage(file), expectCode(CODES.UNSAFE_PACKAGE, pattern), entry.name);
    }
  });

  test('a package member that differs from the manifest is refused', async () => {
    const entries = packageEntries(fx.store, 'iris', versionOf('iris'));
    const model = entries.find((e) => e.name.endsWith('model.onnx'));
    model.data = Buffer.from(model.data);
    model.data[10] ^= 0x01;
    await assert.rejects(loadPackage(await writeArchive(entries)), expectCode(CODES.INTEGRITY_ERROR, /model\.onnx does not match the manifest/));
  });

  test('a manifest that agrees with a tampered file is caught by metadata.json', async () => {
    const dir = copyStore(fx.store);
    const modelPath = path.join(dir, 'iris', 'v1.0.0', 'model.onnx');
    fs.appendFileSync(modelPath, Buffer.from([0]));
    await assert.rejects(loadPackage(await writeArchive(packageEntries(dir, 'iris', 'v1.0.0'))),
      expectCode(CODES.INTEGRITY_ERROR, /sha256 mismatch/));
  });

  test('not a gzip file, and a missing file', async () => {
    const dir = scratchDir('onnxgate-bad-');
    fs.writeFileSync(path.join(dir, 'x.tar.gz'), 'not gzip');
    await assert.rejects(loadPackage(path.join(dir, 'x.tar.gz')), expectCode(CODES.INTEGRITY_ERROR, /not a readable/));
    await assert.rejects(loadPackage(path.join(dir, 'missing.tar.gz')), expectCode(CODES.INTEGRITY_ERROR, /ENOENT/));
  });

  test('signatures: verified when a key is given, refused when wrong or missing', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
    const other = crypto.generateKeyPairSync('ed25519').publicKey;
    const pem = publicKey.export({ type: 'spki', format: 'pem' });
    const signed = await writeArchive(packageEntries(fx.store, 'iris', versionOf('iris'), { signWith: privateKey }));
    const model = await loadPackage(signed, { publicKey: pem });
    assert.equal(model.name, 'iris');
    await model.release();
    await assert.rejects(loadPackage(signed, { publicKey: other.export({ type: 'spki', format: 'pem' }) }),
      expectCode(CODES.SIGNATURE_ERROR, /does not verify/));
    const unsigned = await writeArchive(packageEntries(fx.store, 'iris', versionOf('iris')));
    await assert.rejects(loadPackage(unsigned, { publicKey: pem }), expectCode(CODES.SIGNATURE_ERROR, /not signed/));
  });
});
