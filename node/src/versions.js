'use strict';

/** Model names and semantic versions: the same patterns and ordering as modelstore/versions.py. */
const { CODES, loaderError } = require('./errors');

// No `m` flag: `$` matches only at the very end (Python uses re.fullmatch for the same rule).
const NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const VERSION_PATTERN = /^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-([0-9A-Za-z.-]+))?$/;
const MAX_VERSION_CHARS = 64;

function shown(text, limit) {
  return text.length <= limit ? JSON.stringify(text) : `${JSON.stringify(text.slice(0, limit))}... (${text.length} characters)`;
}

function checkName(name) {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    const text = typeof name === 'string' ? shown(name, 64) : String(name);
    throw loaderError(CODES.INVALID_NAME, `invalid model name ${text}: use 1-64 lowercase letters, ` +
      "digits, '_' or '-', starting with a letter or digit");
  }
  return name;
}

function checkVersion(version) {
  if (!isVersion(version)) {
    const text = typeof version === 'string' ? shown(version, MAX_VERSION_CHARS) : String(version);
    throw loaderError(CODES.INVALID_NAME,
      `invalid version ${text}: use a semantic version such as v1.2.0, at most ${MAX_VERSION_CHARS} characters`);
  }
  return version;
}

function isVersion(text) {
  return typeof text === 'string' && text.length <= MAX_VERSION_CHARS && VERSION_PATTERN.test(text);
}

// Numbers as BigInt so versions past 2^53 still order exactly as Python's int() does.
function versionKey(version) {
  const [, major, minor, patch, pre] = VERSION_PATTERN.exec(version);
  return { release: [BigInt(major), BigInt(minor), BigInt(patch)], pre: pre === undefined ? null : pre.split('.') };
}

function comparePreParts(a, b) {
  const aNumeric = /^\d+$/.test(a);
  const bNumeric = /^\d+$/.test(b);
  if (aNumeric && bNumeric) return compareBig(BigInt(a), BigInt(b));
  if (aNumeric !== bNumeric) return aNumeric ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareBig(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Negative, zero or positive like a comparator; a pre-release sorts before its release (semver rule). */
function compareVersions(a, b) {
  const ka = versionKey(a);
  const kb = versionKey(b);
  for (let i = 0; i < 3; i += 1) {
    const order = compareBig(ka.release[i], kb.release[i]);
    if (order !== 0) return order;
  }
  if (ka.pre === null || kb.pre === null) return (ka.pre === null ? 1 : 0) - (kb.pre === null ? 1 : 0);
  const shared = Math.min(ka.pre.length, kb.pre.length);
  for (let i = 0; i < shared; i += 1) {
    const order = comparePreParts(ka.pre[i], kb.pre[i]);
    if (order !== 0) return order;
  }
  return ka.pre.length - kb.pre.length;
}

/** Valid versions only, oldest first; Array.prototype.sort is stable, like Python's sorted(). */
function sortVersions(versions) {
  return versions.filter(isVersion).sort(compareVersions);
}

module.exports = { checkName, checkVersion, isVersion, compareVersions, sortVersions, MAX_VERSION_CHARS };
