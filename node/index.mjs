// ESM entry: the same objects as the CommonJS entry (src/index.js), so both kinds of importer share one cache.
import loader from './src/index.js';

export const {
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
} = loader;
export default loader;
