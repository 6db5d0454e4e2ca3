#!/usr/bin/env node
// predict-rows --store DIR --name NAME --version VERSION --rows rows.json
// rows.json holds a gateway body ({"inputs": ...} or {"text": [...]}); prints {"outputs": {...}} on stdout.
// Exit 1 with a one-line message on stderr on any error. The Python exporters call this: keep it stable.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { openStore } from '../index.mjs';

const USAGE = 'usage: predict-rows.mjs --store DIR --name NAME --version VERSION --rows rows.json';

async function main() {
  const { values } = parseArgs({
    options: {
      store: { type: 'string' },
      name: { type: 'string' },
      version: { type: 'string', default: 'latest' },
      rows: { type: 'string' },
    },
    strict: true,
  });
  if (!values.store || !values.name || !values.rows) throw new Error(USAGE);
  let body;
  try {
    body = JSON.parse(fs.readFileSync(values.rows, 'utf8'));
  } catch (error) {
    throw new Error(`${values.rows}: cannot read the rows (${error.message})`);
  }
  const store = openStore(values.store);
  try {
    const model = await store.load(values.name, values.version);
    const outputs = await model.predict(body);
    process.stdout.write(`${JSON.stringify({ outputs })}\n`);
  } finally {
    await store.close();
  }
}

main().catch((error) => {
  process.stderr.write(`predict-rows: ${error.code ? `${error.code}: ` : ''}${error.message}\n`);
  process.exitCode = 1;
});
