// A real Python gateway (`onnxgate serve`, with $ONNXGATE_PYTHON as in fixtures.mjs) over a store directory, with its
// ops API on and a tokens file holding one read token, on a free loopback port; stopped with stop().
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { NODE_DIR, REPO_DIR, scratchDir } from './fixtures.mjs';

const PYTHON = process.env.ONNXGATE_PYTHON ?? path.join(NODE_DIR, '..', '.venv', 'bin', 'python');
const START_DEADLINE_MS = 90_000;
const LISTENING = /Uvicorn running on http:\/\/127\.0\.0\.1:(\d+)/;

/** {url, adminUrl, token, stop}: the gateway's base URL, its ops API's, and a valid read token's secret. */
export async function startGateway(storeDir) {
  const token = crypto.randomBytes(32).toString('base64url');
  const digest = crypto.createHash('sha256').update(token).digest('hex');
  const tokens = path.join(scratchDir('onnxgate-tokens-'), 'tokens.toml');
  fs.writeFileSync(tokens, `[[tokens]]\nname = "node-reader"\nsha256 = "${digest}"\nrole = "read"\n`, { mode: 0o600 });
  const child = spawn(PYTHON, ['-m', 'onnxgate', 'serve', '--env', 'production', '--env', 'staging', '--port', '0',
    '--store', storeDir, '--admin-tokens', tokens], { cwd: REPO_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));
  let output = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gateway did not start in ${START_DEADLINE_MS} ms:\n${output}`)),
      START_DEADLINE_MS);
    const read = (chunk) => {
      output += chunk;
      const match = LISTENING.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited with ${code}:\n${output}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null) {
      resolve();
      return;
    }
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
  return { url, adminUrl: `${url}/admin/v1`, token, stop };
}
