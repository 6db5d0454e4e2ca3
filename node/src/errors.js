'use strict';

/**
 * Every error the loader throws: an Error with a stable `code` and a one-line message. The codes mirror
 * modelstore/errors.py so a Node service can branch on the same failures the Python gateway reports; a remote store
 * (src/remote.js) adds STORE_UNAVAILABLE (the ops API cannot be reached or answers 5xx) and UNAUTHORIZED (401/403).
 */
const CODES = Object.freeze({
  STORE_NOT_FOUND: 'STORE_NOT_FOUND',
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  UNAUTHORIZED: 'UNAUTHORIZED',
  MODEL_NOT_FOUND: 'MODEL_NOT_FOUND',
  VERSION_NOT_FOUND: 'VERSION_NOT_FOUND',
  NOT_DEPLOYED: 'NOT_DEPLOYED',
  INVALID_NAME: 'INVALID_NAME',
  INVALID_METADATA: 'INVALID_METADATA',
  CORRUPT_REGISTRY: 'CORRUPT_REGISTRY',
  INTEGRITY_ERROR: 'INTEGRITY_ERROR',
  UNSAFE_PACKAGE: 'UNSAFE_PACKAGE',
  SIGNATURE_ERROR: 'SIGNATURE_ERROR',
  INVALID_INPUT: 'INVALID_INPUT',
  RUNTIME_ERROR: 'RUNTIME_ERROR',
});

class LoaderError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'LoaderError';
    this.code = code;
  }
}

function loaderError(code, message, cause) {
  return new LoaderError(code, message, cause === undefined ? undefined : { cause });
}

module.exports = { CODES, LoaderError, loaderError };
