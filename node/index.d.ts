// Public API of @onnxgate/loader.

import type { InferenceSession } from 'onnxruntime-node';

export type ErrorCode =
  | 'STORE_NOT_FOUND'
  | 'STORE_UNAVAILABLE'
  | 'UNAUTHORIZED'
  | 'MODEL_NOT_FOUND'
  | 'VERSION_NOT_FOUND'
  | 'NOT_DEPLOYED'
  | 'INVALID_NAME'
  | 'INVALID_METADATA'
  | 'CORRUPT_REGISTRY'
  | 'INTEGRITY_ERROR'
  | 'UNSAFE_PACKAGE'
  | 'SIGNATURE_ERROR'
  | 'INVALID_INPUT'
  | 'RUNTIME_ERROR';

export declare const CODES: Readonly<{ [K in ErrorCode]: K }>;

/** Every error the loader throws or rejects with. */
export declare class LoaderError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown });
}

export interface TensorSpec {
  name: string;
  dtype: string;
  /** ints for fixed axes, strings (e.g. "batch") or null for free ones */
  shape: Array<number | string | null>;
}

export interface TokenizerInfo {
  file?: string;
  max_length: number;
  padding?: 'max_length';
  truncation?: boolean;
  pad_id?: number;
  input_ids?: string;
  attention_mask?: string | null;
}

/** metadata.json, as written by the Python exporters (modelstore/metadata.py has the full schema). */
export interface ModelMetadata {
  name: string;
  version: string;
  task: string;
  framework: string;
  framework_version: string;
  opset: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  model_file?: string;
  model_sha256: string;
  model_size: number;
  files?: Record<string, string>;
  labels?: string[] | null;
  label_output?: string | null;
  score_output?: string | null;
  tokenizer?: TokenizerInfo | null;
  [key: string]: unknown;
}

export type NestedArray = unknown[];
/** Nested row arrays for one input. */
export type Rows = NestedArray;

/** The gateway's /predict body forms, plus a bare string for text models. */
export type PredictBody =
  | { inputs: Rows | Record<string, Rows> }
  | { text: string | string[] }
  | string
  | Rows;

/** The gateway's /predict `outputs` object: output name -> nested arrays; class ids mapped to labels. */
export type Outputs = Record<string, NestedArray | number | string | boolean>;

export interface Encoding {
  ids: number[];
  attentionMask: number[];
}

export declare class Model {
  readonly name: string;
  readonly version: string;
  readonly metadata: ModelMetadata;
  /** the store version directory or the package path it was loaded from */
  readonly source: string;
  readonly session: InferenceSession;
  /** "inputs: X: float32[batch, 4] -> outputs: ..." */
  readonly signature: string;
  predict(body: PredictBody): Promise<Outputs>;
  /** Token ids and mask as the model receives them (after truncation and padding); text models only. */
  encodeText(text: string): Encoding;
  release(): Promise<void>;
}

export interface CanaryRef {
  version: string;
  /** percent of traffic, 0-100 */
  weight: number;
}

/** registry.json deployments[name][environment] */
export interface Deployment {
  version: string;
  canary?: CanaryRef | null;
  /** hex salt of the split's buckets, chosen when the first canary or shadow starts; absent: unsalted */
  routing_salt?: string | null;
  [key: string]: unknown;
}

export type VersionSpec = 'latest' | string | { environment: string };

export declare class Store {
  readonly root: string;
  listModels(): string[];
  /** oldest first, semantic order, pre-releases before their release */
  listVersions(name: string): string[];
  isAvailable(name: string, spec?: VersionSpec): boolean;
  /** 'latest' and {environment} answers are cached until reload() */
  resolve(name: string, spec?: VersionSpec): string;
  deployment(name: string, environment: string): Deployment;
  /** stable or canary for this request, split exactly as the gateway splits; random without a key */
  route(name: string, environment: string, routingKey?: string | null): string;
  /** verified and loaded; cached per (name, version) */
  load(name: string, spec?: VersionSpec): Promise<Model>;
  /** re-read registry and versions; drop cached models whose files changed on disk */
  reload(): Promise<{ dropped: string[] }>;
  close(): Promise<void>;
}

export interface RemoteStoreOptions {
  /** a bearer token of the gateway's ops API (any role: reads only) */
  token?: string;
  /** per request; default 60000 */
  timeoutMs?: number;
}

/** A store read through a gateway's ops API (`https://gateway/admin/v1`): the Store's methods, all asynchronous. */
export declare class RemoteStore {
  readonly root: string;
  constructor(url: string, options?: RemoteStoreOptions);
  listModels(): Promise<string[]>;
  listVersions(name: string): Promise<string[]>;
  isAvailable(name: string, spec?: VersionSpec): Promise<boolean>;
  resolve(name: string, spec?: VersionSpec): Promise<string>;
  deployment(name: string, environment: string): Promise<Deployment>;
  route(name: string, environment: string, routingKey?: string | null): Promise<string>;
  /** every file checked against the listing and metadata.json's sha256 before loading; cached per (name, version) */
  load(name: string, spec?: VersionSpec): Promise<Model>;
  /** drop cached models whose version is gone or whose metadata.json changed */
  reload(): Promise<{ dropped: string[] }>;
  close(): Promise<void>;
}

/** A directory (ml/models) gives a Store; an http(s) URL of an ops API gives a RemoteStore. */
export declare function openStore(url: `http://${string}` | `https://${string}`, options?: RemoteStoreOptions): RemoteStore;
export declare function openStore(root: string): Store;

export interface PackageOptions {
  /** PEM Ed25519 public key: when given, manifest.sig must be present and verify */
  publicKey?: string | Uint8Array;
}

export interface PackageManifest {
  format: 'onnxgate-package';
  format_version: 1;
  name: string;
  version: string;
  files: Array<{ path: string; size: number; sha256: string }>;
}

export declare function loadPackage(tarballPath: string, options?: PackageOptions): Promise<Model>;
export declare function readPackage(
  tarballPath: string,
  options?: PackageOptions,
): Promise<{ manifest: PackageManifest; metadata: ModelMetadata; files: Map<string, Uint8Array>; signed: boolean; where: string }>;

/** first 8 bytes of sha256(UTF-8 salt + NUL byte + UTF-8 key) (without a salt: of sha256(UTF-8 key)),
 * unsigned big-endian, modulo 10000 */
export declare function bucketOf(routingKey: string, salt?: string | null): number;
/** round(weight * 100) with Python's rounding (half to even) */
export declare function canaryThreshold(weight: number): number;
export declare function chooseVersion(deployment: Deployment, routingKey?: string | null): string;
export declare function compareVersions(a: string, b: string): number;
export declare function sortVersions(versions: string[]): string[];
export declare function formatOutputs(
  metadata: ModelMetadata,
  results: Record<string, { data: ArrayLike<unknown>; dims: readonly number[]; type: string }>,
  outputNames: readonly string[],
): Outputs;

declare const loader: {
  CODES: typeof CODES;
  LoaderError: typeof LoaderError;
  Model: typeof Model;
  RemoteStore: typeof RemoteStore;
  Store: typeof Store;
  bucketOf: typeof bucketOf;
  canaryThreshold: typeof canaryThreshold;
  chooseVersion: typeof chooseVersion;
  compareVersions: typeof compareVersions;
  formatOutputs: typeof formatOutputs;
  loadPackage: typeof loadPackage;
  openStore: typeof openStore;
  readPackage: typeof readPackage;
  sortVersions: typeof sortVersions;
};
export default loader;
