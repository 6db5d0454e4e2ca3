'use strict';

/**
 * The canary split, bit for bit the gateway's: bucket = first 8 bytes of sha256(UTF-8 salt + NUL + UTF-8 key) as an
 * unsigned big-endian integer, modulo 10000, where salt is the deployment's `routing_salt` in registry.json (hex);
 * a deployment without one (from before salts) hashes the key alone. The canary gets the request iff
 * bucket < round(weight * 100).
 */
const crypto = require('node:crypto');
const { CODES, loaderError } = require('./errors');

const BUCKETS = 10000n;

const SEPARATOR = Buffer.from([0]);

function bucketOf(routingKey, salt) {
  const hash = crypto.createHash('sha256');
  if (salt !== undefined && salt !== null) hash.update(String(salt), 'utf8').update(SEPARATOR);
  const digest = hash.update(String(routingKey), 'utf8').digest();
  return Number(digest.readBigUInt64BE(0) % BUCKETS);
}

/** Python's round(): halves go to the even neighbour (12.5 -> 12), where Math.round would go up. */
function roundHalfEven(value) {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction < 0.5) return floor;
  if (fraction > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

function canaryThreshold(weight) {
  return roundHalfEven(weight * 100);
}

/**
 * The version to serve for `deployment` ({version, canary?: {version, weight}, routing_salt?}); random without a
 * routing key.
 */
function chooseVersion(deployment, routingKey) {
  if (!deployment || typeof deployment.version !== 'string') {
    throw loaderError(CODES.INVALID_INPUT, 'chooseVersion needs a deployment object with a version (registry.json ' +
      'deployments[name][environment])');
  }
  const { canary } = deployment;
  const salt = deployment.routing_salt ?? null;
  if (salt !== null && typeof salt !== 'string') {
    throw loaderError(CODES.INVALID_INPUT, 'chooseVersion: the deployment\'s routing_salt must be a string');
  }
  if (!canary || typeof canary.version !== 'string') return deployment.version;
  const weight = Number(canary.weight);
  const toCanary = routingKey === undefined || routingKey === null
    ? Math.random() * 100 < weight
    : bucketOf(routingKey, salt) < canaryThreshold(weight);
  return toCanary ? canary.version : deployment.version;
}

module.exports = { bucketOf, canaryThreshold, chooseVersion, roundHalfEven };
