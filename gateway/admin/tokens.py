"""The tokens file: per token a name, the SHA-256 of its secret (never the secret) and a role. TOML
(`[[tokens]]` tables) or JSON (`{"tokens": [...]}`), by the file's suffix; validated by pydantic, so a file holding a
plaintext secret, an unknown role or a duplicate is refused when the gateway starts. `create_token` makes a secret,
appends its hash, and returns the secret (shown once, kept nowhere)."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Role = Literal["read", "deploy", "approve", "admin"]
ROLES: tuple[str, ...] = ("read", "deploy", "approve", "admin")
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
SECRET_BYTES = 32
SECRET_FIELDS = ("secret", "token", "value", "password")


class InvalidTokens(Exception):
    """The tokens file cannot be read, parsed or validated: the ops API does not start on it."""


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=TOKEN_NAME_PATTERN, description="who the token is: the actor of its audit entries")
    sha256: str = Field(description="hex SHA-256 of the secret")
    role: Role

    @model_validator(mode="before")
    @classmethod
    def _no_plaintext(cls, value: object) -> object:
        if isinstance(value, dict) and any(key in value for key in SECRET_FIELDS):
            raise ValueError("holds a plaintext secret: keep only its sha256 (onnxgate token create writes it)")
        return value

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower()):
            raise ValueError("must be the 64-hex-digit SHA-256 of the secret, not the secret itself")
        return value.lower()

    @property
    def digest(self) -> bytes:
        return bytes.fromhex(self.sha256)


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct(self) -> TokensFile:
        for what, values in (("name", [t.name for t in self.tokens]), ("secret", [t.sha256 for t in self.tokens])):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                shown = ", ".join(repeated) if what == "name" else f"{len(repeated)} hash(es)"
                raise ValueError(f"two tokens with the same {what}: {shown}")
        return self


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def is_toml(path: Path) -> bool:
    return path.suffix.lower() != ".json"


def load_tokens(path: Path) -> TokensFile:
    """The file, validated; an unreadable, unparsable or invalid one raises InvalidTokens naming the problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidTokens(f"cannot read the tokens file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8")) if is_toml(path) else json.loads(raw)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InvalidTokens(f"tokens file {path} is not valid {'TOML' if is_toml(path) else 'JSON'}: {exc}") from None
    try:
        return TokensFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"])) or "top level"
        raise InvalidTokens(f"tokens file {path}: {where}: {error['msg'].removeprefix('Value error, ')}") from None


def render(tokens: Iterable[TokenEntry], toml: bool) -> str:
    entries = [token.model_dump() for token in tokens]
    if not toml:
        return json.dumps({"tokens": entries}, indent=2) + "\n"
    # names, digests and roles are validated to plain ASCII: a JSON string is a TOML basic string
    return "".join(f"[[tokens]]\nname = {json.dumps(e['name'])}\nsha256 = {json.dumps(e['sha256'])}\n"
                   f"role = {json.dumps(e['role'])}\n\n" for e in entries)


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically, readable by its owner only (0600)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on the directory itself (no lock file left behind): one writer of its tokens file at once."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def create_token(path: Path, name: str, role: str) -> str:
    """Append a new token `name` with `role` to the tokens file (created 0600 when missing) and return its secret.
    Concurrent calls on one file each add their token (read, append, replace under a lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with directory_lock(path.parent):
        return _append_token(path, name, role)


def _append_token(path: Path, name: str, role: str) -> str:
    current = load_tokens(path) if path.exists() else TokensFile()
    if any(token.name == name for token in current.tokens):
        raise InvalidTokens(f"tokens file {path} already has a token named {name!r}")
    secret = secrets.token_urlsafe(SECRET_BYTES)
    try:
        entry = TokenEntry(name=name, sha256=secret_digest(secret).hex(), role=role)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidTokens(f"token {'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    updated = TokensFile(tokens=[*current.tokens, entry])
    write_private(path, render(updated.tokens, is_toml(path)))
    return secret
