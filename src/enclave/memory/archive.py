"""The memory archive: where old or unused memories go, and come back from.

An archived memory is one JSON object (its text, kind, times and embedding) under the key
``<owner>/<id>.json``. Two stores behind :class:`ArchiveStore`:

- :class:`LocalDirArchive` (the default): files under a directory (``home/archive``);
- :class:`S3Archive`: any S3-compatible object store (MinIO, Ceph, AWS) through boto3,
  with ``endpoint_url`` for the ones inside the network.

The methods are blocking (boto3 is); the memory service runs them in a worker thread.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from enclave.errors import ConfigError, NotFound, UpstreamError

if TYPE_CHECKING:
    from enclave.config import MemorySettings, S3Settings
    from enclave.store.models_memory import Memory


class ArchiveStore(Protocol):
    """Bytes by key; ``keys(prefix)`` lists what is there."""

    name: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def keys(self, prefix: str) -> list[str]: ...

    def delete(self, keys: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class Archived:
    """A memory as kept in the archive."""

    id: int
    owner: str
    kind: str
    text: str
    source: str
    embedder: str
    embedding: bytes
    created_at: str
    updated_at: str
    last_used_at: str | None
    uses: int
    archived_at: str

    def to_json(self) -> bytes:
        fields = {**self.__dict__, "embedding": base64.b64encode(self.embedding).decode()}
        return json.dumps(fields, ensure_ascii=False, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Archived:
        fields = json.loads(data)
        fields["embedding"] = base64.b64decode(fields["embedding"])
        return cls(**fields)

    @classmethod
    def of(cls, row: Memory, when: datetime) -> Archived:
        last = row.last_used_at.isoformat() if row.last_used_at else None
        return cls(
            id=row.id, owner=row.owner, kind=row.kind, text=row.text, source=row.source,
            embedder=row.embedder, embedding=row.embedding,
            created_at=row.created_at.isoformat(), updated_at=row.updated_at.isoformat(),
            last_used_at=last, uses=row.uses, archived_at=when.isoformat(),
        )  # fmt: skip


def owner_prefix(owner: str) -> str:
    """The key prefix of one owner's memories; no ``/`` or ``..`` can come from a name."""
    return quote(owner, safe="").replace(".", "%2E") + "/"


def key_of(owner: str, memory_id: int) -> str:
    return f"{owner_prefix(owner)}{memory_id}.json"


def id_of(key: str) -> int:
    return int(key.rsplit("/", 1)[1].removesuffix(".json"))


class LocalDirArchive:
    """Files under ``root``: ``root/<owner>/<id>.json``, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = f"dir:{root}"

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp, path)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"nothing archived under {key}")
        return path.read_bytes()

    def keys(self, prefix: str) -> list[str]:
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return []
        return sorted(f"{prefix}{p.name}" for p in folder.iterdir() if p.suffix == ".json")

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        if ".." in key.split("/") or key.startswith("/"):
            raise ConfigError(f"bad archive key {key!r}")
        return self.root / key


class S3Archive:
    """An S3 bucket (any S3-compatible server): objects ``<prefix>/<owner>/<id>.json``."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.name = f"s3://{bucket}/{self.prefix}"

    @classmethod
    def from_settings(cls, s3: S3Settings) -> S3Archive:
        try:
            import boto3
        except ImportError as exc:
            raise ConfigError(
                "the S3 archive needs boto3: pip install 'enclave[assistants]'"
            ) from exc
        client = boto3.client(
            "s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
            aws_access_key_id=os.environ.get(s3.access_key_env),
            aws_secret_access_key=os.environ.get(s3.secret_key_env),
        )  # fmt: skip
        return cls(client, s3.bucket, s3.prefix)

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"nothing archived under {key}") from exc
            raise UpstreamError(f"archive {self.name}: {exc}") from exc
        data: bytes = answer["Body"].read()
        return data

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        found = []
        for page in self._pages(pages):
            found += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
        return sorted(found)

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):  # the most one request may delete
            batch = [{"Key": self.prefix + key} for key in keys[start : start + 1000]]
            self._call("delete_objects", Bucket=self.bucket, Delete={"Objects": batch})

    def _call(self, method: str, **params: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(**params)
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamError(f"archive {self.name}: {exc}") from exc

    def _pages(self, pages: Any) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return list(pages)
        except (BotoCoreError, ClientError) as exc:
            raise UpstreamError(f"archive {self.name}: {exc}") from exc


def open_archive(settings: MemorySettings, home: Path) -> ArchiveStore:
    """The configured archive: S3 when ``memory.s3`` is set, else a local directory."""
    if settings.s3 is not None:
        return S3Archive.from_settings(settings.s3)
    return LocalDirArchive(settings.archive_dir or home / "archive" / "memories")
