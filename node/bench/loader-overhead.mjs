#!/usr/bin/env node
// Loader overhead: one row through store.load(...).predict(body) against onnxruntime-node's InferenceSession.run
// on the same model file, in the same process, in interleaved rounds (the order flips every round so neither path
// always runs warm). Prints predictions/s and p50/p99 per path and the loader/direct ratios. Target: within 10%.
//
//   node bench/loader-overhead.mjs [--store DIR --name NAME --version VERSION] [--rounds 10] [--calls 2000]
// Without --store it builds the test fixture store (needs the Python venv, see test-helpers/fixtures.mjs) and
// uses the float32 iris classifier.
import path from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { openStore } from '../index.mjs';

const { values } = parseArgs({
  options: {
    store: { type: 'string' },
    name: { type: 'string', default: 'iris' },
    version: { type: 'string', default: 'latest' },
    rounds: { type: 'string', default: '10' },
    calls: { type: 'string', default: '2000' },
  },
});
const rounds = Number(values.rounds);
const calls = Number(values.calls);

async function storeDir() {
  if (values.store) return values.store;
  const { fixtures } = await import('../test-helpers/fixtures.mjs');
  return (await fixtures()).store;
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Per-call latencies (microseconds) and calls per second for one round of `calls` sequential calls. */
async function timeRound(call) {
  const latencies = new Float64Array(calls);
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i += 1) {
    const t0 = process.hrtime.bigint();
    await call(i);
    latencies[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { latencies: Array.from(latencies), perSecond: calls / seconds };
}

function rowFor(spec, i) {
  const width = spec.shape[spec.shape.length - 1];
  return Array.from({ length: width }, (_, j) => ((i + j) % 7) * 0.5 + 0.1);
}

async function main() {
  const store = openStore(await storeDir());
  const model = await store.load(values.name, values.version);
  const spec = model.metadata.inputs[0];
  if (model.metadata.inputs.length !== 1 || spec.dtype !== 'float32') {
    throw new Error('the benchmark feeds one float32 row: pick a single-input float32 model');
  }
  const modelPath = path.join(store.root, model.name, model.version, model.metadata.model_file ?? 'model.onnx');
  const session = await ort.InferenceSession.create(modelPath);
  const width = spec.shape[spec.shape.length - 1];

  const direct = async (i) => {
    const feeds = { [spec.name]: new ort.Tensor('float32', Float32Array.from(rowFor(spec, i)), [1, width]) };
    const results = await session.run(feeds);
    for (const name of session.outputNames) void results[name].data;
  };
  const loader = (i) => model.predict({ inputs: [rowFor(spec, i)] });

  await timeRound(direct);
  await timeRound(loader);
  const samples = { direct: [], loader: [] };
  const throughput = { direct: [], loader: [] };
  for (let round = 0; round < rounds; round += 1) {
    const order = round % 2 === 0 ? ['direct', 'loader'] : ['loader', 'direct'];
    for (const which of order) {
      const { latencies, perSecond } = await timeRound(which === 'direct' ? direct : loader);
      samples[which].push(...latencies);
      throughput[which].push(perSecond);
    }
  }
  const report = {};
  for (const which of ['direct', 'loader']) {
    const sorted = samples[which].sort((a, b) => a - b);
    report[which] = {
      median_predictions_per_s: Math.round(median(throughput[which])),
      p50_us: Number(quantile(sorted, 0.5).toFixed(1)),
      p99_us: Number(quantile(sorted, 0.99).toFixed(1)),
    };
  }
  const ratio = {
    throughput_loader_over_direct: Number((report.loader.median_predictions_per_s / report.direct.median_predictions_per_s).toFixed(3)),
    p50_loader_over_direct: Number((report.loader.p50_us / report.direct.p50_us).toFixed(3)),
    p99_loader_over_direct: Number((report.loader.p99_us / report.direct.p99_us).toFixed(3)),
  };
  console.log(JSON.stringify({ model: `${model.name} ${model.version}`, onnxruntime_node: ort.env.versions.node, rounds,
    calls_per_round: calls, ...report, ratio }, null, 2));
  await session.release();
  await store.close();
}

main().catch((error) => {
  console.error(`loader-overhead: ${error.code ? `${error.code}: ` : ''}${error.message}`);
  process.exitCode = 1;
});
