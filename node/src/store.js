'use strict';

/**
 * A model store on disk (`ml/models`): <name>/<version>/{model.onnx, metadata.json, ...}, registry.json at the root.
 * Listing reads the directory every call. Loaded models are cached per (name, version), and the answers to
 * 'latest' and {environment} are cached with the registry; reload() refreshes both.
 */
const fs = require('node:fs');
const path = require('node:path');
const { CODES, loaderError } = require('./errors');
const { checkName, checkVersion, sortVersions } = require('./versions');
const { parseMetadata } = require('./metadata');
const { readRegistry } = require('./registry');
const { chooseVersion } = require('./routing');
const { createModel } = require('./model');
const { releaseAll } = require('./loaded');
const { RemoteStore, isRemote } = require('./remote');

const METADATA_FILE = 'metadata.json';
const REGISTRY_FILE = 'registry.json';
const LATEST = 'latest';

function isDirectory(p) {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

class Store {
  constructor(root) {
    this.root = path.resolve(root);
    this.models = new Map(); // "name/version" -> Promise<Model>
    this.resolved = new Map(); // "name|latest" or "name|env:<environment>" -> version
    this.registryCache = null;
    this.loadedMetadata = new Map(); // "name/version" -> the metadata.json bytes the cached model was built from
  }

  get registryPath() {
    return path.join(this.root, REGISTRY_FILE);
  }

  listModels() {
    this.requireRoot();
    return fs.readdirSync(this.root, { withFileTypes: true })
      .filter((entry) => !entry.name.startsWith('.')
        && (entry.isDirectory() || (entry.isSymbolicLink() && isDirectory(path.join(this.root, entry.name)))))
      .map((entry) => entry.name)
      .sort();
  }

  /** Versions that have a metadata.json, oldest first (semantic order, pre-releases before their release). */
  listVersions(name) {
    const modelDir = this.modelDir(name);
    if (!isDirectory(modelDir)) {
      this.requireRoot();
      throw loaderError(CODES.MODEL_NOT_FOUND, `model '${name}' not found in store ${this.root}`);
    }
    const names = fs.readdirSync(modelDir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && isFile(path.join(modelDir, entry.name, METADATA_FILE)))
      .map((entry) => entry.name);
    return sortVersions(names);
  }

  /** Whether `spec` ('latest', a version or {environment}) names a version present in the store; never throws. */
  isAvailable(name, spec = LATEST) {
    try {
      const version = this.resolveFresh(name, spec);
      return isFile(path.join(this.versionDir(name, version), METADATA_FILE));
    } catch {
      return false;
    }
  }

  /** 'latest' | version | {environment} -> a concrete version (cached until reload()). */
  resolve(name, spec = LATEST) {
    if (typeof spec === 'string' && spec !== LATEST) return this.resolveFresh(name, spec);
    const key = `${name}|${typeof spec === 'string' ? spec : `env:${spec?.environment}`}`;
    if (!this.resolved.has(key)) this.resolved.set(key, this.resolveFresh(name, spec));
    return this.resolved.get(key);
  }

  /** registry.json's deployments[name][environment]: {version, canary?: {version, weight}, ...}. */
  deployment(name, environment) {
    checkName(name);
    const deployment = this.registry().deployments[name]?.[environment];
    if (!deployment) {
      if (!isDirectory(this.modelDir(name))) {
        this.requireRoot();
        throw loaderError(CODES.MODEL_NOT_FOUND, `model '${name}' not found in store ${this.root}`);
      }
      throw loaderError(CODES.NOT_DEPLOYED, `model '${name}' has nothing deployed to environment '${environment}'`);
    }
    return deployment;
  }

  /** The version serving this request in `environment`: stable or canary, split exactly as the gateway splits. */
  route(name, environment, routingKey) {
    return chooseVersion(this.deployment(name, environment), routingKey);
  }

  /** A verified, loaded model; one session per (name, version), shared by concurrent callers. */
  async load(name, spec = LATEST) {
    const version = this.resolve(name, spec);
    const key = `${name}/${version}`;
    let pending = this.models.get(key);
    if (!pending) {
      pending = this.loadVersion(name, version, key);
      this.models.set(key, pending);
      pending.catch(() => this.models.delete(key));
    }
    return pending;
  }

  /**
   * Re-read the registry and the version lists, so the next load() of 'latest' or an environment sees what was
   * published or deployed since. Drops cached models whose directory is gone or whose metadata.json changed (a
   * version republished with --force). Returns what was dropped.
   */
  async reload() {
    this.registryCache = null;
    this.resolved.clear();
    this.registry();
    const dropped = [];
    for (const [key, pending] of this.models) {
      const model = await pending.catch(() => null);
      if (model && this.isStale(key, model)) {
        this.models.delete(key);
        this.loadedMetadata.delete(key);
        dropped.push(key);
        await model.release().catch(() => {});
      }
    }
    return { dropped };
  }

  async close() {
    await releaseAll(this.models);
  }

  // --- internals ---

  requireRoot() {
    if (!isDirectory(this.root)) {
      throw loaderError(CODES.STORE_NOT_FOUND, `model store ${this.root} does not exist or is not a directory`);
    }
  }

  modelDir(name) {
    return path.join(this.root, checkName(name));
  }

  versionDir(name, version) {
    return path.join(this.modelDir(name), checkVersion(version));
  }

  registry() {
    if (this.registryCache === null) {
      this.requireRoot();
      this.registryCache = readRegistry(this.registryPath);
    }
    return this.registryCache;
  }

  resolveFresh(name, spec) {
    if (spec === LATEST) {
      const versions = this.listVersions(name);
      if (!versions.length) throw loaderError(CODES.VERSION_NOT_FOUND, `model '${name}' has no versions in store ${this.root}`);
      return versions[versions.length - 1];
    }
    if (typeof spec === 'string') {
      if (!isDirectory(this.versionDir(name, spec))) {
        this.listVersions(name); // MODEL_NOT_FOUND / STORE_NOT_FOUND first, as they say more
        throw loaderError(CODES.VERSION_NOT_FOUND, `model '${name}' has no version '${spec}' in store ${this.root}`);
      }
      return spec;
    }
    if (spec && typeof spec.environment === 'string') return this.deployment(name, spec.environment).version;
    throw loaderError(CODES.INVALID_INPUT, `version must be 'latest', a version such as v1.2.0, or {environment}`);
  }

  async readVersionFiles(name, version) {
    const dir = this.versionDir(name, version);
    const where = dir;
    let metadataRaw;
    try {
      metadataRaw = await fs.promises.readFile(path.join(dir, METADATA_FILE));
    } catch (error) {
      throw loaderError(CODES.INVALID_METADATA, `${where}: metadata.json is missing or unreadable (${error.code})`, error);
    }
    const metadata = parseMetadata(metadataRaw, where);
    if (metadata.name !== name || metadata.version !== version) {
      throw loaderError(CODES.INTEGRITY_ERROR, `${where}: metadata.json says ${metadata.name} ${metadata.version}`);
    }
    const files = new Map();
    for (const fileName of [metadata.model_file ?? 'model.onnx', ...Object.keys(metadata.files ?? {})]) {
      try {
        files.set(fileName, await fs.promises.readFile(path.join(dir, fileName)));
      } catch (error) {
        if (error.code !== 'ENOENT') throw loaderError(CODES.INTEGRITY_ERROR, `${where}/${fileName}: ${error.message}`, error);
      }
    }
    return { metadata, metadataRaw, files, where };
  }

  async loadVersion(name, version, key) {
    const { metadata, metadataRaw, files, where } = await this.readVersionFiles(name, version);
    const model = await createModel(metadata, files, where);
    this.loadedMetadata.set(key, metadataRaw);
    return model;
  }

  isStale(key, model) {
    try {
      const current = fs.readFileSync(path.join(this.versionDir(model.name, model.version), METADATA_FILE));
      return !current.equals(this.loadedMetadata.get(key));
    } catch {
      return true;
    }
  }
}

/**
 * Open a store directory (ml/models), throwing STORE_NOT_FOUND when it is not there; or, for an http(s) URL of a
 * gateway's ops API (`https://gateway/admin/v1`, with `{token}`), a RemoteStore whose methods are all asynchronous.
 */
function openStore(root, options = {}) {
  if (isRemote(root)) return new RemoteStore(root, options);
  const store = new Store(root);
  store.requireRoot();
  return store;
}

module.exports = { Store, openStore };
