"""Optional Ed25519 signatures of package manifests and of the audit chain's head, with the `cryptography` library
(the `sign` extra)."""
from __future__ import annotations

import base64
from collections.abc import Callable

from modelstore.errors import SignatureError


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    except ImportError:
        raise SignatureError("signing needs the 'cryptography' package: pip install 'onnxgate[sign]'") from None
    return InvalidSignature, serialization, Ed25519PrivateKey, Ed25519PublicKey


def generate_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM)."""
    _, serialization, private_cls, _ = _crypto()
    private = private_cls.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def load_signer(private_pem: bytes) -> Callable[[bytes], bytes]:
    """A function signing a message with this private key (base64, no newline); raises SignatureError now, not when
    it signs, for a key that cannot be used."""
    _, serialization, private_cls, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"cannot read the private key: {exc}") from None
    if not isinstance(key, private_cls):
        raise SignatureError("the private key is not an Ed25519 key")
    return lambda message: base64.b64encode(key.sign(message))


def sign(private_pem: bytes, message: bytes) -> bytes:
    return load_signer(private_pem)(message) + b"\n"


def verify_signature(public_pem: bytes, message: bytes, signature_b64: bytes, *, where: str,
                     what: str = "the manifest signature") -> None:
    invalid_signature, serialization, _, public_cls = _crypto()
    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"cannot read the public key: {exc}") from None
    if not isinstance(key, public_cls):
        raise SignatureError("the public key is not an Ed25519 key")
    try:
        key.verify(base64.b64decode(signature_b64.strip(), validate=True), message)
    except (invalid_signature, ValueError):
        raise SignatureError(f"{where}: {what} does not verify with this public key") from None
