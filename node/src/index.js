'use strict';

/** @onnxgate/loader: load onnxgate stores and packages in Node.js and answer exactly as the Python gateway does. */
const { CODES, LoaderError } = require('./errors');
const { Store, openStore } = require('./store');
const { loadPackage, readPackage } = require('./package');
const { Model } = require('./model');
const { RemoteStore } = require('./remote');
const { bucketOf, canaryThreshold, chooseVersion } = require('./routing');
const { compareVersions, sortVersions } = require('./versions');
const { formatOutputs } = require('./outputs');

module.exports = {
  CODES,
  LoaderError,
  Model,
  RemoteStore,
  Store,
  bucketOf,
  canaryThreshold,
  chooseVersion,
  compareVersions,
  formatOutputs,
  loadPackage,
  openStore,
  readPackage,
  sortVersions,
};
