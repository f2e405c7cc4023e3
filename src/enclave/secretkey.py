"""The installation's secret key: signs audit heads and checkpoints, and web sessions.

32 random bytes, stored as hex in ``settings.secret_file`` (mode 0600). Created on first
use, atomically: the key is written to a private temporary file which is then linked
into place, so a concurrent process either creates the file or reads a complete one.
A file that others can read is refused.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from enclave.errors import ConfigError

KEY_BYTES = 32


def load_or_create(path: Path) -> bytes:
    """The key in ``path``; a new one if the file does not exist."""
    try:
        return read(path)
    except FileNotFoundError:
        pass
    create(path)
    return read(path)


def read(path: Path) -> bytes:
    """The key in ``path``; ConfigError if it is readable by others or malformed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read secret key file {path}: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if mode & stat.S_IRWXO:
            raise ConfigError(
                f"secret key file {path} is accessible to other users "
                f"(mode {stat.S_IMODE(mode):04o}): run chmod 600 {path}"
            )
        data = os.read(fd, 4 * KEY_BYTES)
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"secret key file {path} must hold {KEY_BYTES} bytes as hex")
    return key


def create(path: Path) -> None:
    """Write a new key to ``path`` unless a file is already there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (secrets.token_bytes(KEY_BYTES).hex() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if the file exists: the first creator wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot create secret key file {path}: {exc.strerror}") from exc
