"""The embedded engine's slots and context, sized from the host's cores and memory.

``engine.parallel`` and ``engine.ctx_size`` of 0 (the defaults) mean "size them here":

- **slots** (``parallel``): one per core, at least 2 and at most 16. Decoding one
  sequence on a CPU is bound by memory bandwidth and leaves compute idle, which a batch
  of sequences uses; but each sequence of a batch costs its own arithmetic, so the gain
  ends when the step turns compute-bound. On 2 cores, 4 slots answered 10 concurrent
  users no faster than 2 (docs/performance.md), so the rule gives 2 there, as before.
- **context** (``ctx_size``): 4,096 tokens per slot, what one request could use before
  (8,192 shared by 2 slots), so a prompt that fitted still fits.
- **memory**: the KV cache (K and V for every token of every slot, 16-bit, as llama.cpp
  keeps it) may take at most a quarter of the memory available when the engine starts.
  Its size per token is read from the model's GGUF header (layers, KV heads, head size);
  an unreadable header counts as :data:`UNKNOWN_KV_BYTES` per token. When the cache would
  not fit, slots are dropped first (to 1), then the context shrinks (to 1,024 at least).

A value set in the config (or ``--parallel`` / ``--ctx-size``) is used as given.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from enclave.errors import ConfigError

SLOTS_PER_CORE = 1
MIN_SLOTS = 2
MAX_SLOTS = 16
SLOT_CONTEXT = 4096  # tokens per slot
MIN_CONTEXT = 1024  # per slot, when sized here
MIN_GIVEN_CONTEXT = 256
KV_MEMORY_SHARE = 0.25  # of available memory, at most, for the KV cache
KV_ELEMENT_BYTES = 2  # f16 cache, llama.cpp's default
UNKNOWN_KV_BYTES = 128 * 1024  # per token when the header says nothing (a 7B-class model)


@dataclass(frozen=True)
class Host:
    cores: int
    available_bytes: int

    @classmethod
    def this(cls) -> Host:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return cls(cores, available_memory())


def available_memory() -> int:
    """Memory available to a new process (Linux's MemAvailable: free plus reclaimable
    cache), else the free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sizing:
    parallel: int
    ctx_size: int
    why: str  # one line for the log

    @property
    def slot_context(self) -> int:
        return self.ctx_size // self.parallel


def size(parallel: int, ctx_size: int, *, host: Host, kv_bytes_per_token: int | None) -> Sizing:
    """Slots and total context: the given ones, or (0) sized from ``host``."""
    if 0 < ctx_size < MIN_GIVEN_CONTEXT:
        raise ConfigError(f"engine.ctx_size is {ctx_size}: 0 (auto) or at least 256")
    per_token = kv_bytes_per_token or UNKNOWN_KV_BYTES
    budget = int(host.available_bytes * KV_MEMORY_SHARE)
    fits = max(budget // per_token, 1)  # tokens of KV cache the budget holds
    slots = parallel or _slots(host.cores, fits, ctx_size)
    context = ctx_size or max(min(slots * SLOT_CONTEXT, fits), MIN_CONTEXT * slots)
    why = (
        f"{slots} slots x {context // slots} tokens ({host.cores} cores, KV cache "
        f"{context * per_token / 2**20:.0f} MiB of {host.available_bytes / 2**30:.1f} GiB "
        f"available; {'given' if parallel else 'auto'} slots, "
        f"{'given' if ctx_size else 'auto'} context)"
    )
    return Sizing(slots, context, why)


def _slots(cores: int, fits: int, ctx_size: int) -> int:
    wanted = min(max(SLOTS_PER_CORE * cores, MIN_SLOTS), MAX_SLOTS)
    if ctx_size:  # a given context: no more slots than leave each MIN_CONTEXT
        return max(min(wanted, ctx_size // MIN_CONTEXT), 1)
    return max(min(wanted, fits // SLOT_CONTEXT), 1)


# --- the model's KV cache per token, from its GGUF header ---------------------------------

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}  # fmt: skip
_STRING, _ARRAY = 8, 9
_WANTED = ("block_count", "attention.head_count", "attention.head_count_kv",
           "attention.key_length", "attention.value_length", "embedding_length")  # fmt: skip
MAX_KEYS = 4096  # a header with more is not read further


def kv_bytes_per_token(model: Path) -> int | None:
    """Bytes of KV cache one token takes with ``model`` (f16), or None when its header
    cannot be read or lacks the sizes."""
    try:
        with model.open("rb") as file:
            meta = _header(file)
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return None
    arch = meta.get("general.architecture")
    values = {key: meta.get(f"{arch}.{key}") for key in _WANTED}
    layers, heads = values["block_count"], values["attention.head_count"]
    if not isinstance(layers, int) or not isinstance(heads, int) or heads <= 0:
        return None
    kv_heads = values["attention.head_count_kv"] or heads
    width = values["embedding_length"]
    key = values["attention.key_length"] or (width // heads if isinstance(width, int) else 0)
    value = values["attention.value_length"] or key
    if not (isinstance(kv_heads, int) and key and isinstance(key, int) and isinstance(value, int)):
        return None
    return layers * kv_heads * (key + value) * KV_ELEMENT_BYTES


def _header(file: BinaryIO) -> dict[str, Any]:
    """The GGUF key-values up to the architecture's sizes (the tokenizer's long arrays
    that follow them are not read)."""
    if file.read(4) != b"GGUF":
        raise ValueError("not a GGUF file")
    (version,) = struct.unpack("<I", file.read(4))
    if version < 2:
        raise ValueError(f"GGUF version {version}")
    _tensors, count = struct.unpack("<QQ", file.read(16))
    meta: dict[str, Any] = {}
    for _ in range(min(count, MAX_KEYS)):
        key = _string(file)
        (kind,) = struct.unpack("<I", file.read(4))
        meta[key] = _value(file, kind)
        arch = meta.get("general.architecture")
        if arch and all(f"{arch}.{k}" in meta for k in _WANTED[:3]) and key.startswith("tok"):
            break
    return meta


def _string(file: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", file.read(8))
    if length > 1 << 20:
        raise ValueError("a GGUF string over 1 MiB")
    return file.read(length).decode("utf-8")


def _value(file: BinaryIO, kind: int) -> Any:
    if kind == _STRING:
        return _string(file)
    if kind == _ARRAY:
        item, length = struct.unpack("<IQ", file.read(12))
        if item in _SCALARS:  # skipped whole
            file.seek(length * struct.calcsize("<" + _SCALARS[item]), os.SEEK_CUR)
        else:
            for _ in range(length):
                _value(file, item)
        return None
    if kind not in _SCALARS:
        raise ValueError(f"GGUF value type {kind}")
    fmt = "<" + _SCALARS[kind]
    (value,) = struct.unpack(fmt, file.read(struct.calcsize(fmt)))
    return value
