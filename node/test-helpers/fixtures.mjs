// Builds the shared parity store once per content of the Python fixture code, with the Python in $ONNXGATE_PYTHON
// (default ../.venv/bin/python relative to node/). node --test runs each file in its own process, so the build is
// cached in the temp dir under a hash of the builder's sources, guarded by a lock directory: one process builds,
// the others wait for it. Set ONNXGATE_NODE_FIXTURES=DIR to use an already built directory instead.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const NODE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = path.dirname(NODE_DIR);
const PYTHON = process.env.ONNXGATE_PYTHON ?? path.join(NODE_DIR, '..', '.venv', 'bin', 'python');
const SOURCES = [path.join(REPO_DIR, 'tests', 'node_fixtures'), path.join(REPO_DIR, 'modelstore')];
const WAIT_MS = 300_000;

function sourceHash() {
  const hash = crypto.createHash('sha256').update(PYTHON);
  for (const dir of SOURCES) {
    for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.py')).sort()) {
      hash.update(name).update(fs.readFileSync(path.join(dir, name)));
    }
  }
  return hash.digest('hex').slice(0, 16);
}

function build(outdir) {
  const result = spawnSync(PYTHON, ['-m', 'tests.node_fixtures', outdir], { cwd: REPO_DIR, encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`fixture build failed (${PYTHON} -m tests.node_fixtures): ${result.error?.message ?? ''}\n` +
      `${result.stderr}`);
  }
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function cachedBuild() {
  const dir = path.join(os.tmpdir(), `onnxgate-node-fixtures-${sourceHash()}`);
  const lock = `${dir}.lock`;
  const deadline = Date.now() + WAIT_MS;
  while (!fs.existsSync(path.join(dir, 'vectors.json'))) {
    try {
      fs.mkdirSync(lock);
    } catch {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock} (remove it if no build is running)`);
      await sleep(250);
      continue;
    }
    try {
      const staging = `${dir}.tmp-${process.pid}`;
      fs.rmSync(staging, { recursive: true, force: true });
      build(staging);
      fs.renameSync(staging, dir);
    } finally {
      fs.rmSync(lock, { recursive: true, force: true });
    }
  }
  return dir;
}

let pending = null;

/** {dir, store, vectors}: the fixture directory, its store path, and the parsed vectors.json. */
export function fixtures() {
  pending ??= (async () => {
    const dir = process.env.ONNXGATE_NODE_FIXTURES ?? (await cachedBuild());
    const vectors = JSON.parse(fs.readFileSync(path.join(dir, 'vectors.json'), 'utf8'));
    return { dir, store: path.join(dir, vectors.store), vectors };
  })();
  return pending;
}

const scratchDirs = [];
process.on('exit', () => {
  for (const dir of scratchDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A new empty directory, removed when the test process exits. */
export function scratchDir(prefix = 'onnxgate-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  scratchDirs.push(dir);
  return dir;
}

/** A private, writable copy of the fixture store for tests that change or break it. */
export function copyStore(storeDir) {
  const target = scratchDir('onnxgate-store-');
  fs.cpSync(storeDir, target, { recursive: true, verbatimSymlinks: true });
  return target;
}

/** Largest |a - b| over matching numbers; labels and other non-numbers must be identical. */
export function compareOutputs(actual, expected, where = '') {
  if (typeof expected === 'number' && typeof actual === 'number') return Math.abs(actual - expected);
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) {
      throw new Error(`${where}: expected an array of ${expected.length}, got ${JSON.stringify(actual)?.slice(0, 80)}`);
    }
    return expected.reduce((max, item, i) => Math.max(max, compareOutputs(actual[i], item, `${where}[${i}]`)), 0);
  }
  if (expected && typeof expected === 'object') {
    const keys = Object.keys(expected);
    if (!actual || JSON.stringify(Object.keys(actual)) !== JSON.stringify(keys)) {
      throw new Error(`${where}: expected keys ${keys}, got ${actual && Object.keys(actual)}`);
    }
    return keys.reduce((max, key) => Math.max(max, compareOutputs(actual[key], expected[key], `${where}.${key}`)), 0);
  }
  if (actual !== expected) throw new Error(`${where}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  return 0;
}
