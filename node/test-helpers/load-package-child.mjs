// Loads one package in a process of its own and prints, as JSON, how the load ended, the process's peak RSS, the
// file descriptors still open on the package afterwards (Linux /proc) and any unhandled rejection, so a test can check
// the memory and the clean-up of a refused load.
import fs from 'node:fs';
import path from 'node:path';
import { loadPackage } from '../index.mjs';

const file = path.resolve(process.argv[2]);
const unhandled = [];
process.on('unhandledRejection', (reason) => { unhandled.push(String(reason)); });

function descriptorsOn(target) {
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === target;
    } catch {
      return false; // the directory listing's own descriptor, closed by now
    }
  }).length;
}

let outcome;
try {
  const model = await loadPackage(file);
  outcome = { loaded: model.name };
  await model.release();
} catch (error) {
  outcome = { code: error.code, message: error.message };
}
const packageFdsOpen = descriptorsOn(file); // right as the load settled
await new Promise((resolve) => { setTimeout(resolve, 200); }); // let any stray rejection surface
process.stdout.write(JSON.stringify({
  ...outcome, maxRssBytes: process.resourceUsage().maxRSS * 1024, packageFdsOpen, unhandled,
}));
