// Package import limits, the same as modelstore/package.py's: entry count, unpacked total, manifest size and place,
// and every entry checked against the manifest on its tar header, before its bytes are read.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { CODES, LoaderError, loadPackage } from '../index.mjs';
import { fixtures, NODE_DIR } from '../test-helpers/fixtures.mjs';
import { manifestEntry, packageEntries, writeArchive, writeClaimingArchive } from '../test-helpers/packages.mjs';

const GiB = 2 ** 30;
const MAX_MEMBERS = 10_000;
const MAX_RSS_BYTES = 300 * 2 ** 20;

let fx;
let good;

before(async () => {
  fx = await fixtures();
  good = packageEntries(fx.store, 'iris', fx.vectors.models.iris.version);
});

function expectCode(code, pattern, file) {
  return (error) => {
    assert.ok(error instanceof LoaderError, `expected a LoaderError, got ${error}`);
    assert.equal(error.code, code, error.message);
    assert.match(error.message, pattern);
    assert.ok(error.message.startsWith(file), `the message names the package: ${error.message}`);
    return true;
  };
}

function loadInChild(file) {
  const stdout = execFileSync(process.execPath, [path.join(NODE_DIR, 'test-helpers', 'load-package-child.mjs'), file],
    { encoding: 'utf8', timeout: 120_000 });
  return JSON.parse(stdout);
}

describe('package limits', () => {
  test('a compression bomb: an entry claiming 3 GiB is refused on its header, in little memory', () => {
    const [manifest] = good;
    const model = good.find((e) => e.name.endsWith('/model.onnx'));
    const file = writeClaimingArchive([manifest], { name: model.name, claimedSize: 3 * GiB, zeroMiB: 512 });
    const result = loadInChild(file);
    assert.equal(result.code, CODES.UNSAFE_PACKAGE, result.message);
    assert.match(result.message, /model\.onnx" is larger than 2147483648 bytes/);
    assert.ok(result.message.startsWith(file), result.message);
    assert.ok(result.maxRssBytes < MAX_RSS_BYTES, `peak RSS ${result.maxRssBytes} bytes`);
    assert.equal(result.packageFdsOpen, 0, 'the package file is closed after the refusal');
    assert.deepEqual(result.unhandled, []);
  });

  test('a manifest declaring more than 2 GiB in all is refused before any file is read', async () => {
    const files = [{ name: 'iris/v1.0.0/a.bin', size: 1.5 * GiB }, { name: 'iris/v1.0.0/b.bin', size: 1.5 * GiB }];
    const file = writeClaimingArchive([manifestEntry('iris', 'v1.0.0', files)],
      { name: files[0].name, claimedSize: files[0].size });
    await assert.rejects(loadPackage(file), expectCode(CODES.UNSAFE_PACKAGE, /declares 3221225472 bytes.*more than 2147483648/, file));
  });

  test('more than 10,000 entries are refused', async () => {
    const files = Array.from({ length: MAX_MEMBERS }, (_, i) => ({ name: `iris/v1.0.0/f${i}`, data: Buffer.alloc(0) }));
    const file = await writeArchive([manifestEntry('iris', 'v1.0.0', files), ...files]);
    await assert.rejects(loadPackage(file), expectCode(CODES.UNSAFE_PACKAGE, /more than 10000 entries/, file));
    const listed = [...files, { name: 'iris/v1.0.0/one-more', data: Buffer.alloc(0) }];
    const manifestOnly = await writeArchive([manifestEntry('iris', 'v1.0.0', listed)]);
    await assert.rejects(loadPackage(manifestOnly),
      expectCode(CODES.UNSAFE_PACKAGE, /the manifest lists more than 10000 files/, manifestOnly));
  });

  test('an entry the manifest does not list is refused on its header', async () => {
    const file = writeClaimingArchive(good, { name: 'iris/v1.0.0/payload.bin', claimedSize: GiB });
    await assert.rejects(loadPackage(file),
      expectCode(CODES.UNSAFE_PACKAGE, /files not listed in the manifest: iris\/v1\.0\.0\/payload\.bin/, file));
  });

  test('an entry whose size differs from the manifest is refused on its header', async () => {
    const model = good.find((e) => e.name.endsWith('/model.onnx'));
    const rest = good.filter((e) => e !== model);
    const file = writeClaimingArchive(rest, { name: model.name, claimedSize: GiB });
    await assert.rejects(loadPackage(file),
      expectCode(CODES.INTEGRITY_ERROR, /model\.onnx does not match the manifest's size\/sha256/, file));
    const grown = await writeArchive(good.map((e) => (e === model ? { ...e, data: Buffer.concat([e.data, Buffer.from([0])]) } : e)));
    await assert.rejects(loadPackage(grown), expectCode(CODES.INTEGRITY_ERROR, /model\.onnx does not match the manifest/, grown));
  });

  test('manifest.json must come first and be at most 4 MiB', async () => {
    const [manifest, ...files] = good;
    const late = await writeArchive([...files, manifest]);
    await assert.rejects(loadPackage(late),
      expectCode(CODES.UNSAFE_PACKAGE, /the first entry must be manifest\.json, found "iris\/v1\.0\.0\/[a-z.]+"/, late));
    const huge = writeClaimingArchive([], { name: 'manifest.json', claimedSize: 4 * 2 ** 20 + 1 });
    await assert.rejects(loadPackage(huge), expectCode(CODES.UNSAFE_PACKAGE, /manifest\.json is larger than 4194304 bytes/, huge));
    const empty = await writeArchive([]);
    await assert.rejects(loadPackage(empty), expectCode(CODES.UNSAFE_PACKAGE, /no manifest\.json in the package/, empty));
  });

  test('a well-formed package still loads after the refusals', async () => {
    const model = await loadPackage(await writeArchive(good));
    assert.equal(model.name, 'iris');
    await model.release();
  });
});
