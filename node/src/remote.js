'use strict';

/**
 * A model store read through a gateway's ops API (`http(s)://host:port/admin/v1`, a bearer token of any role), for
 * Node services with neither the store's disk nor database or bucket credentials. The same answers as a directory
 * Store, asynchronously: every file is checked as a directory load checks it (metadata.json's sha256 for each file,
 * model_size), and also against the server's listing, which records metadata.json's own sha256 and the digests it
 * holds; a file that differs is refused, never loaded. Loaded models are cached per (name, version).
 */
const { CODES, loaderError } = require('./errors');
const { sha256 } = require('./integrity');
const { parseMetadata } = require('./metadata');
const { chooseVersion } = require('./routing');
const { checkName, checkVersion, sortVersions } = require('./versions');
const { createModel } = require('./model');
const { releaseAll } = require('./loaded');

const METADATA_FILE = 'metadata.json';
const LATEST = 'latest';
const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_FILE_BYTES = 2 ** 31; // as a package's cap: files are verified in memory

function isRemote(location) {
  return typeof location === 'string' && /^https?:\/\//i.test(location);
}

function sameDigests(listed, recorded) {
  const a = Object.entries(listed ?? {}).sort();
  const b = Object.entries(recorded).sort();
  return JSON.stringify(a) === JSON.stringify(b);
}

class RemoteStore {
  constructor(url, { token, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    this.root = url.replace(/\/+$/, '');
    this.token = token;
    this.timeoutMs = timeoutMs;
    this.models = new Map(); // "name/version" -> Promise<Model>
    this.loadedMetadata = new Map(); // "name/version" -> sha256 of the metadata.json the cached model was built from
  }

  /** Models with at least one version, sorted. */
  async listModels() {
    const { versions } = await this.getJson('/models', 'the model list');
    return [...new Set(versions.map((row) => row.name))].sort();
  }

  /** Versions whose metadata.json can be read, oldest first (semantic order, pre-releases before their release). */
  async listVersions(name) {
    return sortVersions((await this.listing(name)).map((entry) => entry.version));
  }

  async isAvailable(name, spec = LATEST) {
    try {
      await this.resolve(name, spec);
      return true;
    } catch {
      return false;
    }
  }

  /** 'latest' | version | {environment} -> a concrete version, asked of the gateway each call. */
  async resolve(name, spec = LATEST) {
    if (spec === LATEST) {
      const versions = await this.listVersions(name);
      if (!versions.length) throw loaderError(CODES.VERSION_NOT_FOUND, `model '${name}' has no versions at ${this.root}`);
      return versions[versions.length - 1];
    }
    if (typeof spec === 'string') {
      checkVersion(spec);
      if (!(await this.listVersions(name)).includes(spec)) {
        throw loaderError(CODES.VERSION_NOT_FOUND, `model '${name}' has no version '${spec}' at ${this.root}`);
      }
      return spec;
    }
    if (spec && typeof spec.environment === 'string') return (await this.deployment(name, spec.environment)).version;
    throw loaderError(CODES.INVALID_INPUT, `version must be 'latest', a version such as v1.2.0, or {environment}`);
  }

  /** The registry's deployment of `name` in `environment`: {version, canary?: {version, weight}, ...}. */
  async deployment(name, environment) {
    const detail = await this.getJson(`/models/${encodeURIComponent(checkName(name))}`, `model '${name}'`);
    const deployment = detail.deployments?.[environment];
    if (!deployment) {
      throw loaderError(CODES.NOT_DEPLOYED, `model '${name}' has nothing deployed to environment '${environment}'`);
    }
    return deployment;
  }

  /** The version serving this request in `environment`: stable or canary, split exactly as the gateway splits. */
  async route(name, environment, routingKey) {
    return chooseVersion(await this.deployment(name, environment), routingKey);
  }

  /** A verified, loaded model; one session per (name, version), shared by concurrent callers. */
  async load(name, spec = LATEST) {
    const version = await this.resolve(name, spec);
    const key = `${name}/${version}`;
    let pending = this.models.get(key);
    if (!pending) {
      pending = this.loadVersion(name, version, key);
      this.models.set(key, pending);
      pending.catch(() => this.models.delete(key));
    }
    return pending;
  }

  /** Drop cached models whose version is gone or whose metadata.json changed (republished). Returns what was dropped. */
  async reload() {
    const dropped = [];
    const listings = new Map();
    for (const [key, pending] of this.models) {
      const model = await pending.catch(() => null);
      if (!model) continue;
      if (!listings.has(model.name)) listings.set(model.name, await this.listing(model.name).catch(() => []));
      const entry = listings.get(model.name).find((e) => e.version === model.version);
      if (entry?.metadata?.sha256 !== this.loadedMetadata.get(key)) {
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

  /** The gateway's listing of `name`'s readable versions: {version, metadata: {sha256, size}, files, ...}. */
  async listing(name) {
    const path = `/models/${encodeURIComponent(checkName(name))}/versions`;
    const { versions } = await this.getJson(path, `model '${name}'`);
    return versions.filter((entry) => entry.metadata);
  }

  async loadVersion(name, version, key) {
    const where = `${this.root}/models/${name}/versions/${version}`;
    const entry = (await this.listing(name)).find((e) => e.version === version);
    if (!entry) throw loaderError(CODES.VERSION_NOT_FOUND, `model '${name}' has no version '${version}' at ${this.root}`);
    const metadataRaw = await this.getFile(name, version, METADATA_FILE, where);
    if (metadataRaw.length !== entry.metadata.size || sha256(metadataRaw) !== entry.metadata.sha256) {
      throw loaderError(CODES.INTEGRITY_ERROR, `${where}/${METADATA_FILE}: does not match the listing's size/sha256: ` +
        'refusing a tampered model');
    }
    const metadata = parseMetadata(metadataRaw, where);
    if (metadata.name !== name || metadata.version !== version) {
      throw loaderError(CODES.INTEGRITY_ERROR, `${where}: metadata.json says ${metadata.name} ${metadata.version}`);
    }
    const modelFile = metadata.model_file ?? 'model.onnx';
    if (!sameDigests(entry.files, { [modelFile]: metadata.model_sha256, ...(metadata.files ?? {}) })) {
      throw loaderError(CODES.INTEGRITY_ERROR, `${where}: the listing's file digests differ from metadata.json's`);
    }
    const files = new Map();
    for (const fileName of [modelFile, ...Object.keys(metadata.files ?? {})]) {
      files.set(fileName, await this.getFile(name, version, fileName, where));
    }
    const model = await createModel(metadata, files, where); // sha256 and model_size, as from a directory
    this.loadedMetadata.set(key, entry.metadata.sha256);
    return model;
  }

  async getFile(name, version, fileName, where) {
    const path = `/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/files/` +
      encodeURIComponent(fileName);
    const response = await this.request(path, `${where}/${fileName}`);
    const declared = Number(response.headers.get('content-length'));
    if (declared > MAX_FILE_BYTES) {
      await response.body?.cancel();
      throw loaderError(CODES.INTEGRITY_ERROR, `${where}/${fileName}: larger than ${MAX_FILE_BYTES} bytes; refusing it`);
    }
    return Buffer.from(await response.arrayBuffer());
  }

  async getJson(path, what) {
    const response = await this.request(path, what);
    try {
      return await response.json();
    } catch (error) {
      throw loaderError(CODES.STORE_UNAVAILABLE, `${this.root}${path}: the answer is not JSON (${error.message})`, error);
    }
  }

  /** A 200 response to GET `path`, else the LoaderError its status means. */
  async request(path, what) {
    const url = `${this.root}${path}`;
    const headers = this.token ? { authorization: `Bearer ${this.token}` } : {};
    let response;
    try {
      response = await fetch(url, { headers, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      throw loaderError(CODES.STORE_UNAVAILABLE, `${url}: cannot reach the ops API (${error.cause?.code ?? error.message})`,
        error);
    }
    if (response.ok) return response;
    let message = '';
    try {
      message = (await response.json()).error ?? '';
    } catch {
      // not JSON: the status says enough
    }
    throw loaderError(codeOfStatus(response.status, path), `${what}: ${response.status} from ${url}` +
      (message ? `: ${message}` : ''));
  }
}

function codeOfStatus(status, path) {
  if (status === 401 || status === 403) return CODES.UNAUTHORIZED;
  if (status === 404) {
    if (path.includes('/files/')) return CODES.VERSION_NOT_FOUND;
    return CODES.MODEL_NOT_FOUND;
  }
  if (status === 409) return CODES.INTEGRITY_ERROR;
  return CODES.STORE_UNAVAILABLE;
}

module.exports = { RemoteStore, isRemote };
