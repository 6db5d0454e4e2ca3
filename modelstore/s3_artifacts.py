"""Versions' files in an S3-compatible object store (AWS S3, MinIO, ...): objects <prefix>/<name>/<version>/<file>.

The endpoint, credentials and region come from the standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, or any other source boto3 reads); addressing is path-style, which every
S3-compatible server accepts. A version is visible once its metadata.json is there: writers upload it last.
Files read are verified against metadata.json's sha256 and kept in a local cache by sha256 (modelstore.artifact_cache).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from modelstore.artifact_cache import ArtifactCache
from modelstore.errors import (
    ArtifactUnreadable,
    IntegrityError,
    InvalidLocation,
    InvalidMetadata,
    ModelNotFound,
    VersionNotFound,
)
from modelstore.file_artifacts import LATEST_LINK, METADATA_FILE, check_sha256, expected_files
from modelstore.metadata import ModelMetadata, parse_metadata
from modelstore.versions import check_name, check_version, sort_versions

try:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as exc:  # pragma: no cover - the s3 extra is part of dev
    raise InvalidLocation(f"an s3:// artifacts URL needs the s3 extra ({exc.name} is not installed): "
                          "pip install 'onnxgate[s3]'") from None

READ_CHUNK_BYTES = 1 << 20
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # '' or ending in '/'

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
            raise InvalidLocation(f"artifacts URL {url!r}: expected s3://bucket or s3://bucket/prefix")
        prefix = parsed.path.strip("/")
        return cls(parsed.netloc, f"{prefix}/" if prefix else "")

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def s3_client(**overrides: object):
    """An S3 client configured as every S3-compatible server accepts it: path-style addressing, standard retries."""
    config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 4},
                    connect_timeout=5, read_timeout=60, max_pool_connections=16)
    return boto3.session.Session().client("s3", config=config, **overrides)


def open_artifacts(url: str, *, cache_dir: Path, poll_s: float = 5.0) -> S3Artifacts:
    return S3Artifacts(S3Location.parse(url), s3_client(), ArtifactCache(cache_dir), poll_s=poll_s)


class S3Artifacts:
    """`multipart_threshold`: files at least this large are uploaded in parts (boto3's managed transfer). `poll_s`:
    how often a change feed compares the listing (modelstore.backends.PolledArtifacts)."""

    def __init__(self, location: S3Location, client: object, cache: ArtifactCache, *,
                 multipart_threshold: int = 64 << 20, multipart_chunksize: int = 16 << 20, poll_s: float = 5.0) -> None:
        self.location = location
        self.poll_s = poll_s
        self.client = client
        self.cache = cache
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize)

    def __repr__(self) -> str:
        return f"S3Artifacts({self.location.url(self.location.prefix)!r})"

    # -- listing -------------------------------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        pages = self._pages(Prefix=self.location.prefix, Delimiter="/")
        names = {p["Prefix"][len(self.location.prefix):].rstrip("/") for page in pages
                 for p in page.get("CommonPrefixes", [])}
        return sorted(n for n in names if n and not n.startswith("."))

    def list_versions(self, name: str) -> list[str]:
        model_prefix = self.location.key(check_name(name), "")
        keys = [obj["Key"][len(model_prefix):] for obj in self._objects(model_prefix)]
        if not keys:
            raise ModelNotFound(f"model {name!r} not found in store {self.location.url(self.location.prefix)}")
        return sort_versions([key.split("/")[0] for key in keys if key.count("/") == 1
                              and key.endswith(f"/{METADATA_FILE}")])

    def resolve_version(self, name: str, version: str) -> str:
        versions = self.list_versions(name)
        if version == LATEST_LINK:
            if not versions:
                raise VersionNotFound(f"model {name!r} has no versions in store {self.location.url(self.location.prefix)}")
            return versions[-1]
        if check_version(version) not in versions:
            raise VersionNotFound(f"model {name!r} has no version {version!r} in store "
                                  f"{self.location.url(self.location.prefix)}")
        return version

    def version_stamp(self, name: str, version: str) -> str:
        """Name, size and ETag of every object of the version, from one listing: no object is read."""
        version_prefix = self.location.key(check_name(name), check_version(version), "")
        return "|".join(f"{obj['Key'][len(version_prefix):]}:{obj['Size']}:{obj['ETag']}"
                        for obj in sorted(self._objects(version_prefix), key=lambda o: o["Key"]))

    def listing_stamp(self) -> str:
        """A digest of every key and ETag under the prefix, for the change feed's slow poll; never raises (an
        unreachable store reads as a stamp of its own, and the loads then say what is wrong)."""
        digest = hashlib.sha256()
        try:
            for obj in self._objects(self.location.prefix):
                digest.update(f"{obj['Key']}\0{obj['ETag']}\n".encode())
        except ArtifactUnreadable as exc:
            return f"unreachable: {exc}"
        return digest.hexdigest()

    # -- reading ---------------------------------------------------------------------------------------------------

    def read_metadata(self, name: str, version: str) -> ModelMetadata:
        version = self.resolve_version(name, version)
        key = self.location.key(name, version, METADATA_FILE)
        try:
            raw = self._get(key)
        except IntegrityError:
            raise InvalidMetadata(f"{self.location.url(key)}: metadata.json is missing") from None
        return parse_metadata(raw, self.location.url(key))

    def read_file(self, name: str, version: str, file_name: str) -> bytes:
        """The file's bytes, verified against metadata.json's sha256 (a file it does not list: as stored): from the
        cache when it holds them for the object's current ETag, else downloaded, checked, then cached."""
        key = self.location.key(check_name(name), check_version(version), file_name)
        if "/" in file_name or file_name in ("", ".", ".."):
            raise IntegrityError(f"{self.location.url(key)}: file name {file_name!r} leaves the version directory")
        digest = expected_files(self.read_metadata(name, version)).get(file_name)
        if digest is None:
            return self._get(key)
        etag = self._head(key)["ETag"]
        cached = self.cache.get(digest, etag)
        if cached is not None:
            return cached
        data, actual = self.cache.fill(digest, etag, self._chunks(key, IfMatch=etag))
        if actual != digest:  # not cached: the same refusal as the loader's
            check_sha256(data, digest, self.location.url(key))
        return data

    def verify_version(self, name: str, version: str) -> ModelMetadata:
        metadata = self.read_metadata(name, version)
        for file_name in expected_files(metadata):
            self.read_file(name, metadata.version, file_name)  # verified as it is read
        return metadata

    # -- writing ---------------------------------------------------------------------------------------------------

    def publish_version(self, metadata: ModelMetadata, directory: Path) -> None:
        """Upload the staged version: metadata.json removed first (a replaced version disappears while its files
        change), every other file uploaded and verified, objects the new version lacks removed, metadata.json last."""
        version_prefix = self.location.key(check_name(metadata.name), check_version(metadata.version), "")
        files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != METADATA_FILE)
        self._call("delete_object", Bucket=self.location.bucket, Key=version_prefix + METADATA_FILE)
        for path in files:
            self._upload(path, version_prefix + path.name)
        keep = {version_prefix + p.name for p in files}
        for obj in self._objects(version_prefix):
            if obj["Key"] not in keep:
                self._call("delete_object", Bucket=self.location.bucket, Key=obj["Key"])
        self._upload(directory / METADATA_FILE, version_prefix + METADATA_FILE)

    def _upload(self, path: Path, key: str) -> None:
        try:
            self.client.upload_file(str(path), self.location.bucket, key, Config=self.transfer)
        except (BotoCoreError, ClientError) as exc:
            raise ArtifactUnreadable(f"{self.location.url(key)}: upload failed ({exc})") from None
        size = path.stat().st_size
        stored = self._head(key)["ContentLength"]
        if stored != size:
            raise IntegrityError(f"{self.location.url(key)}: {stored} bytes stored, {size} uploaded")
        local, remote = _file_sha256(path), self._stream_sha256(key)
        if local != remote:
            raise IntegrityError(f"{self.location.url(key)}: the stored object's sha256 ({remote[:12]}…) is not the "
                                 f"uploaded file's ({local[:12]}…)")

    # -- S3 calls, their errors as store errors --------------------------------------------------------------------

    def _call(self, operation: str, **kwargs: object) -> dict:
        key = str(kwargs.get("Key", kwargs.get("Prefix", "")))
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in MISSING_CODES:
                raise IntegrityError(f"{self.location.url(key)}: file listed in metadata.json is missing") from None
            if code in ("PreconditionFailed", "412"):
                raise ArtifactUnreadable(f"{self.location.url(key)}: changed while being read; try again") from None
            raise ArtifactUnreadable(f"{self.location.url(key)}: {operation} failed ({code or exc})") from None
        except BotoCoreError as exc:
            raise ArtifactUnreadable(f"{self.location.url(key)}: {operation} failed ({exc})") from None

    def _head(self, key: str) -> dict:
        return self._call("head_object", Bucket=self.location.bucket, Key=key)

    def _get(self, key: str, **conditions: str) -> bytes:
        response = self._call("get_object", Bucket=self.location.bucket, Key=key, **conditions)
        try:
            return response["Body"].read()
        except (BotoCoreError, OSError) as exc:
            raise ArtifactUnreadable(f"{self.location.url(key)}: reading failed ({exc})") from None

    def _chunks(self, key: str, **conditions: str) -> Iterator[bytes]:
        body = self._call("get_object", Bucket=self.location.bucket, Key=key, **conditions)["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK_BYTES)
        except (BotoCoreError, OSError) as exc:
            raise ArtifactUnreadable(f"{self.location.url(key)}: reading failed ({exc})") from None

    def _stream_sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        for chunk in self._chunks(key):
            digest.update(chunk)
        return digest.hexdigest()

    def _pages(self, **kwargs: str) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            yield from paginator.paginate(Bucket=self.location.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise ArtifactUnreadable(f"{self.location.url(kwargs.get('Prefix', ''))}: listing failed ({code or exc})") from None
        except BotoCoreError as exc:
            raise ArtifactUnreadable(f"{self.location.url(kwargs.get('Prefix', ''))}: listing failed ({exc})") from None

    def _objects(self, prefix: str) -> list[dict]:
        return [obj for page in self._pages(Prefix=prefix) for obj in page.get("Contents", [])]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()

