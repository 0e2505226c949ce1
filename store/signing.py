"""Ed25519 signing keys of the audit log: loaded from a 0600 file, identified by key id.

The key file holds the 32-byte Ed25519 seed as 64 hex characters. It is created
on first use when absent, and refused when group or others can read it: anyone
holding the seed can sign audit records in Steward's name.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

SEED_BYTES = 32
SIGNATURE_BYTES = 64


class SigningKeyError(RuntimeError):
    """The signing key file cannot be used; the message says how to fix it."""


def key_id_for(public_key: bytes) -> str:
    """The key id of a public key: the first 16 hex characters of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key with its public half and key id."""

    signing_key: SigningKey = field(repr=False)

    @classmethod
    def generate(cls) -> Signer:
        """A fresh random key."""
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        """The key derived from a 32-byte seed."""
        if len(seed) != SEED_BYTES:
            raise SigningKeyError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        return cls(SigningKey(seed))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return bytes(self.signing_key.verify_key)

    @property
    def public_key_hex(self) -> str:
        """The public key as lowercase hex."""
        return self.public_key.hex()

    @property
    def key_id(self) -> str:
        """The key id recorded next to every signature."""
        return key_id_for(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of `message`."""
        return self.signing_key.sign(message).signature


def verify_key(public_key_hex: str) -> VerifyKey:
    """A verifier for a hex public key (raises ValueError when malformed)."""
    raw = bytes.fromhex(public_key_hex)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return VerifyKey(raw)


def signature_valid(key: VerifyKey, message: bytes, signature: bytes) -> bool:
    """True when `signature` is `key`'s signature of `message`."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        key.verify(message, signature)
    except BadSignatureError:
        return False
    return True


def create_private_file(path: Path, content: bytes) -> None:
    """Create `path` holding `content`, mode 0600; fails if the file already exists.

    O_CREAT|O_EXCL with mode 0600 means the secret is never readable by others,
    not even for the instant between creating the file and a chmod.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private_file(path: Path | str, make: Callable[[], bytes], what: str) -> bytes:
    """The secret in `path`, created from `make()` (mode 0600) when the file is absent.

    A file that group or others can read is refused with the command that fixes it.
    """
    path = Path(path)
    try:
        content = make()
        create_private_file(path, content)
        return content.strip()
    except FileExistsError:
        pass
    except OSError as exc:
        raise SigningKeyError(
            f"cannot create the {what} {path}: {exc.strerror}; "
            "check the directory exists and is writable"
        ) from exc
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(
            f"the {what} {path} is readable by other users; run `chmod 600 {path}`"
        )
    return path.read_bytes().strip()


def _new_seed() -> bytes:
    return (bytes(SigningKey.generate()).hex() + "\n").encode()


def write_new_key(path: Path) -> Signer:
    """Create `path` holding a fresh key, mode 0600; fails if the file already exists."""
    content = _new_seed()
    create_private_file(path, content)
    return Signer.from_seed(bytes.fromhex(content.decode().strip()))


def load_signer(path: Path | str) -> Signer:
    """The signing key in `path`, created (mode 0600) when the file is absent."""
    text = read_private_file(path, _new_seed, "audit signing key").decode("ascii", "replace")
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != SEED_BYTES:
        raise SigningKeyError(
            f"{path} does not hold an Ed25519 seed (64 hex characters); restore it from "
            "backup, or point STEWARD_SIGNING_KEY_FILE at the right file"
        )
    return Signer.from_seed(seed)
