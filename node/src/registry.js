'use strict';

/**
 * registry.json, read-only: which version each environment serves and its canary. Writers (the Python CLI) replace
 * the file atomically, so a read sees a whole file; a file that does not parse is reported, never guessed at.
 */
const fs = require('node:fs');
const { CODES, loaderError } = require('./errors');

const EMPTY = Object.freeze({ models: {}, deployments: {} });

function readRegistry(registryPath) {
  let raw;
  try {
    raw = fs.readFileSync(registryPath, 'utf8');
  } catch (error) {
    if (error.code === 'ENOENT') return EMPTY;
    throw loaderError(CODES.CORRUPT_REGISTRY, `${registryPath}: cannot read the registry (${error.message})`, error);
  }
  let data;
  try {
    data = JSON.parse(raw);
  } catch (error) {
    throw loaderError(CODES.CORRUPT_REGISTRY, `${registryPath}: registry is not valid JSON (${error.message})`, error);
  }
  const problem = registryProblem(data);
  if (problem) throw loaderError(CODES.CORRUPT_REGISTRY, `${registryPath}: registry is invalid at ${problem}`);
  return { models: data.models ?? {}, deployments: data.deployments ?? {} };
}

function isPlainObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The parts of the schema the loader relies on; returns where the first problem is, or null. */
function registryProblem(data) {
  if (!isPlainObject(data)) return '(root): expected an object';
  for (const key of ['models', 'deployments']) {
    if (data[key] !== undefined && !isPlainObject(data[key])) return `${key}: expected an object`;
  }
  for (const [name, environments] of Object.entries(data.deployments ?? {})) {
    if (!isPlainObject(environments)) return `deployments.${name}: expected an object`;
    for (const [environment, deployment] of Object.entries(environments)) {
      const where = `deployments.${name}.${environment}`;
      if (!isPlainObject(deployment) || typeof deployment.version !== 'string') return `${where}.version: expected a string`;
      const { canary } = deployment;
      if (canary === undefined || canary === null) continue;
      if (!isPlainObject(canary) || typeof canary.version !== 'string') return `${where}.canary.version: expected a string`;
      if (typeof canary.weight !== 'number' || !(canary.weight >= 0 && canary.weight <= 100)) {
        return `${where}.canary.weight: expected a percent between 0 and 100`;
      }
    }
  }
  return null;
}

module.exports = { readRegistry };
