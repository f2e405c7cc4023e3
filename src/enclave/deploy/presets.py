"""vLLM launch presets for the deployments enclave is put in front of. Pure: no I/O.

A :class:`Preset` holds what is fixed for a model (weights, dtype, parsers, sizes);
:func:`build` turns it and the operator's choices (model directory, port, GPUs) into a
:class:`Launch`: environment, ``vllm serve`` flags, each with the reason it is there, and
the matching ``upstreams:`` entry for enclave's settings file.

Every flag name and value format was checked against vLLM :data:`VLLM_VERSION` (its
released source and docs.vllm.ai); docs/deploy-vllm.md lists the sources.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from dataclasses import dataclass
from typing import Any

from enclave.errors import ConfigError

VLLM_VERSION = "0.33.0"
API_KEY_ENV = "VLLM_API_KEY"
PLACEHOLDER_HOST = "HOST"


@dataclass(frozen=True)
class Setting:
    """One part of the launch: an environment variable or a ``vllm serve`` flag.

    ``value`` is None for a switch. ``verbatim`` marks a value that is shell syntax (a
    variable reference) and is written as is instead of quoted.
    """

    name: str
    value: str | None
    why: str
    verbatim: bool = False

    def words(self) -> list[str]:
        if self.value is None:
            return [self.name]
        return [self.name, self.value if self.verbatim else shlex.quote(self.value)]

    def label(self) -> str:
        return " ".join(self.words())


@dataclass(frozen=True)
class Preset:
    name: str
    model_id: str
    summary: str
    vision: bool
    dtype: str
    dtype_why: str
    tensor_parallel_size: int
    tensor_parallel_why: str
    max_num_seqs: int
    quantization: str | None = None
    quantization_why: str = ""
    max_model_len: int = 16384
    gpu_memory_utilization: float = 0.95
    kv_cache_dtype: str = "fp8"
    images_per_prompt: int = 8
    tool_call_parser: str = "hermes"
    notes: tuple[str, ...] = ()

    @property
    def directory_name(self) -> str:
        """The weights' directory name by convention: the Hugging Face repo's last part."""
        return self.model_id.rsplit("/", 1)[-1]


QWEN3_VL_32B = Preset(
    name="qwen3-vl-32b",
    model_id="Qwen/Qwen3-VL-32B-Instruct",
    summary="Qwen3-VL 32B Instruct, bf16, images + text",
    vision=True,
    dtype="bfloat16",
    dtype_why=(
        "the checkpoint is stored in bfloat16; computing in the same type keeps its range "
        "(float16 can overflow on large activations)"
    ),
    tensor_parallel_size=2,
    tensor_parallel_why=(
        "split each layer across this many GPUs. The bf16 weights are about 67 GB, so one "
        "80 GB card would leave almost nothing for the KV cache: 2 x 80 GB is the smallest "
        "comfortable fit. Use --tp 1 on a 141 GB H200, --tp 4 on 48 GB cards"
    ),
    max_num_seqs=16,
    notes=(
        "Qwen3-VL-32B-Instruct does not emit thinking, so no --reasoning-parser is set. "
        "The -Thinking edition needs --reasoning-parser qwen3.",
        "For a server that never receives videos, vLLM's Qwen3-VL guide recommends "
        'limiting video to 0 (\'{"image": 8, "video": 0}\'): less memory is reserved '
        "for the worst-case video at start-up.",
    ),
)

QWEN25_7B_AWQ = Preset(
    name="qwen2.5-7b-awq",
    model_id="Qwen/Qwen2.5-7B-Instruct-AWQ",
    summary="Qwen2.5 7B Instruct, AWQ 4-bit weights, text",
    vision=False,
    dtype="float16",
    dtype_why=(
        "activations in float16: the AWQ checkpoint was quantised with float16 scales and "
        "every AWQ kernel accepts it. bfloat16 (what the bf16 presets use) works only with "
        "the Marlin kernels (awq_marlin, and vLLM 0.33's unified AWQ path); vLLM's plain "
        "`awq` kernel rejects it ('torch.bfloat16 is not supported for quantization method "
        "awq')"
    ),
    tensor_parallel_size=1,
    tensor_parallel_why=(
        "the 4-bit 7B weights (about 5.5 GB) fit on one GPU; more GPUs would only add "
        "communication. Run more servers instead and let enclave balance between them"
    ),
    max_num_seqs=32,
    quantization="awq_marlin",
    quantization_why=(
        "the weights are AWQ 4-bit; awq_marlin runs them on the fast Marlin kernels. "
        "Plain `awq` forces vLLM's old AWQ kernel, which is much slower and float16-only. "
        "In vLLM 0.33 awq, awq_marlin and auto_awq all lead to one AWQ implementation that "
        "picks Marlin when the GPU supports it; on older releases awq_marlin needs an "
        "Ampere or newer GPU (compute capability 8.0)"
    ),
    notes=(
        "Text only: no --limit-mm-per-prompt, and enclave's entry says vision: false, so "
        "the gateway does not send images here.",
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (QWEN3_VL_32B, QWEN25_7B_AWQ)}

OFFLINE_ENV: tuple[Setting, ...] = (
    Setting(
        "HF_HUB_OFFLINE",
        "1",
        "never contact the Hugging Face Hub: config, tokenizer and weights come only from "
        "the local directory, and a missing file fails at once instead of waiting on a "
        "download that cannot happen",
    ),
    Setting(
        "VLLM_NO_USAGE_STATS",
        "1",
        "switch off vLLM's anonymous usage report, which is on by default and posts the "
        "hardware and model configuration to the vLLM project's stats server",
    ),
    Setting(
        "DO_NOT_TRACK",
        "1",
        "the general opt-out, also honoured by vLLM; set as well so no other library phones home",
    ),
)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(f"unknown preset {name!r}; known presets: {known}") from None


@dataclass(frozen=True)
class Launch:
    preset: Preset
    model_path: str
    model_why: str
    env: tuple[Setting, ...]
    flags: tuple[Setting, ...]
    upstream: dict[str, Any]


def build(
    preset: Preset,
    *,
    model_path: str | None = None,
    host: str = "0.0.0.0",  # noqa: S104 - the GPU server must be reachable from the gateway
    port: int = 8000,
    served_model_name: str | None = None,
    tp: int | None = None,
    max_num_seqs: int | None = None,
    api_key: bool = True,
    ngram_speculation: bool = False,
) -> Launch:
    """The launch of ``preset`` with the operator's choices; defaults come from the preset."""
    path = model_path or f"/models/{preset.directory_name}"
    served = served_model_name or preset.name
    tp_size = tp or preset.tensor_parallel_size
    seqs = max_num_seqs or preset.max_num_seqs
    flags = [
        *_serving_flags(preset, served, host, port, api_key),
        *_model_flags(preset, tp_size, seqs),
        *_feature_flags(preset),
        *([NGRAM_SPECULATION] if ngram_speculation else []),
    ]
    return Launch(
        preset=preset,
        model_path=path,
        model_why=(
            f"the local directory holding {preset.model_id} (config.json, tokenizer, "
            "*.safetensors), copied in from outside: air-gapped hosts cannot download it"
        ),
        env=OFFLINE_ENV,
        flags=tuple(flags),
        upstream=upstream_entry(preset, served, port, seqs, api_key),
    )


def _serving_flags(
    preset: Preset, served: str, host: str, port: int, api_key: bool
) -> list[Setting]:
    flags = [
        Setting(
            "--served-model-name",
            served,
            'the name clients and enclave put in "model"; without it vLLM answers only to '
            "the directory path",
        ),
        Setting(
            "--host",
            host,
            "the address to listen on; 0.0.0.0 = every interface, so the enclave gateway on "
            "another host can connect. Give one address to listen on that network only",
        ),
        Setting("--port", str(port), "the HTTP port; enclave's base_url must use the same"),
    ]
    if api_key:
        flags.append(
            Setting(
                "--api-key",
                f'"${{{API_KEY_ENV}:?set {API_KEY_ENV} to the key enclave will send}}"',
                f"requests to /v1 must carry this key; enclave sends it (api_key_env: "
                f"{API_KEY_ENV}). Read from the shell variable so it is not written in the "
                "script; the shell stops if it is unset. vLLM checks it only on /v1, /v2 and "
                "/inference paths, so keep the port firewalled to the gateway",
                verbatim=True,
            )
        )
    return flags


def _model_flags(preset: Preset, tp: int, max_num_seqs: int) -> list[Setting]:
    flags = [Setting("--tensor-parallel-size", str(tp), preset.tensor_parallel_why)]
    if preset.quantization:
        flags.append(Setting("--quantization", preset.quantization, preset.quantization_why))
    return [
        *flags,
        Setting("--dtype", preset.dtype, preset.dtype_why),
        Setting(
            "--kv-cache-dtype",
            preset.kv_cache_dtype,
            "store the KV cache in 8-bit floats (fp8 = fp8_e4m3 on NVIDIA GPUs): half the "
            "memory of 16-bit, so twice the tokens fit. Without calibrated scales in the "
            "checkpoint the scales are 1.0, which can cost a little accuracy; `auto` keeps "
            "the model's dtype",
        ),
        Setting(
            "--max-model-len",
            str(preset.max_model_len),
            "the most tokens one request may use, prompt + images + answer. The model could "
            "take more, but room reserved for longer requests is room taken from concurrent "
            "ones; enclave's context_length is set to the same value so it refuses longer "
            "requests before they reach the GPU",
        ),
        Setting(
            "--gpu-memory-utilization",
            f"{preset.gpu_memory_utilization:g}",
            "the share of each GPU's memory vLLM may take for weights, activations and KV "
            "cache (vLLM's default is 0.92). 0.95 assumes the GPU serves nothing else; lower "
            "it if another process shares the card",
        ),
        Setting(
            "--max-num-seqs",
            str(max_num_seqs),
            "at most this many requests are decoded together. enclave's max_concurrency is "
            "set to the same number, so extra requests wait in the gateway, which can send "
            "them to another member, instead of in vLLM's own queue",
        ),
    ]


def _feature_flags(preset: Preset) -> list[Setting]:
    flags = [
        Setting(
            "--enable-prefix-caching",
            None,
            "reuse the KV cache of a prompt prefix seen before (system prompts, earlier "
            "turns, the same image): shorter time to first token. On by default in vLLM's "
            "V1 engine; written out so the command means the same on older releases",
        )
    ]
    if preset.vision:
        flags.append(
            Setting(
                "--limit-mm-per-prompt",
                json.dumps({"image": preset.images_per_prompt}),
                f"accept up to {preset.images_per_prompt} images per request (a JSON object "
                "per modality). vLLM reserves memory for the worst case at start-up; "
                "enclave's limits.max_images defaults to the same 8",
            )
        )
    return [
        *flags,
        Setting(
            "--enable-auto-tool-choice",
            None,
            "let the model call tools when a request carries `tools` (tool_choice auto); "
            "needed for OpenAI-style tool calls",
        ),
        Setting(
            "--tool-call-parser",
            preset.tool_call_parser,
            "Qwen's chat template writes tool calls as <tool_call>{json}</tool_call> "
            "(Hermes style); this parser turns them into OpenAI tool_calls. vLLM's tool "
            "calling docs name hermes for Qwen models (qwen3_xml is for Qwen3-Coder)",
        ),
    ]


NGRAM_SPECULATION = Setting(
    "--speculative-config",
    json.dumps({"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 4}),
    "n-gram (prompt lookup) speculative decoding: vLLM looks for the last few tokens (up to "
    "prompt_lookup_max = 4) earlier in the prompt and answer, proposes the 5 tokens that "
    "followed, and checks them in one forward pass. It needs no draft model and does not "
    "change what the model answers. It pays off where answers repeat the prompt (code "
    "edits, rewrites, extraction) at low to medium load; on a busy server, where batching "
    "already fills the GPU, the checks of rejected drafts cost throughput, so it is off by "
    "default (enclave's embedded engine does the same on the CPU: engine.speculative)",
)


def upstream_entry(
    preset: Preset, served: str, port: int, max_concurrency: int, api_key: bool = True
) -> dict[str, Any]:
    """The ``upstreams:`` member for enclave's settings file, in enclave's field names."""
    entry: dict[str, Any] = {
        "name": "gpu1",
        "base_url": f"http://{PLACEHOLDER_HOST}:{port}/v1",
    }
    if api_key:
        entry["api_key_env"] = API_KEY_ENV
    entry |= {
        "models": [served],
        "vision": preset.vision,
        "max_concurrency": max_concurrency,
        "context_length": preset.max_model_len,
    }
    return entry


# --- rendering -----------------------------------------------------------------------


def title(launch: Launch) -> str:
    p = launch.preset
    return (
        f"# {p.name}: {p.summary} ({p.model_id})\n"
        f"# flags checked against vLLM {VLLM_VERSION}; run on the GPU host"
    )


def shell_command(launch: Launch) -> str:
    """The launch as one copy-pasteable shell command, one setting per line."""
    lines = [f"{s.name}={shlex.quote(s.value or '')}" for s in launch.env]
    lines.append(f"vllm serve {shlex.quote(launch.model_path)}")
    lines.extend("  " + flag.label() for flag in launch.flags)
    return " \\\n".join(lines)


def explanation(launch: Launch) -> str:
    """ "setting — why" for the environment, the model path and every flag, then notes."""
    items = [(f"{s.name}={s.value}", s.why) for s in launch.env]
    items.append((launch.model_path, launch.model_why))
    items.extend((flag.label(), flag.why) for flag in launch.flags)
    out = ["Each setting:"]
    out.extend(_wrap(f"{label} — {why}", "  ", "      ") for label, why in items)
    if launch.preset.notes:
        out.append("Notes:")
        out.extend(_wrap(note, "  - ", "    ") for note in launch.preset.notes)
    return "\n".join(out)


def _wrap(text: str, first: str, rest: str) -> str:
    return textwrap.fill(
        text, width=100, initial_indent=first, subsequent_indent=rest, break_long_words=False
    )


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/@-]*\Z")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted one


def upstream_yaml(entry: dict[str, Any]) -> str:
    """``entry`` as an ``upstreams:`` list in YAML, lists of names in flow style."""
    lines = ["upstreams:"]
    for index, (key, value) in enumerate(entry.items()):
        prefix = "  - " if index == 0 else "    "
        if isinstance(value, list):
            rendered = "[" + ", ".join(_scalar(v) for v in value) + "]"
        else:
            rendered = _scalar(value)
        lines.append(f"{prefix}{key}: {rendered}")
    return "\n".join(lines) + "\n"


def to_json(launch: Launch) -> dict[str, Any]:
    return {
        "preset": launch.preset.name,
        "model_id": launch.preset.model_id,
        "vllm_version": VLLM_VERSION,
        "env": {s.name: s.value for s in launch.env},
        "model_path": launch.model_path,
        "api_key_env": launch.upstream.get("api_key_env"),
        "flags": [{"flag": f.name, "value": f.value, "why": f.why} for f in launch.flags],
        "command": shell_command(launch),
        "notes": list(launch.preset.notes),
        "upstream": launch.upstream,
        "upstream_yaml": upstream_yaml(launch.upstream),
    }


def preset_table() -> str:
    header = ("NAME", "MODEL", "WEIGHTS", "GPUS", "IMAGES")
    rows = [header]
    for p in sorted(PRESETS.values(), key=lambda p: p.name):
        weights = p.quantization or p.dtype
        rows.append((p.name, p.model_id, weights, str(p.tensor_parallel_size), _yes(p.vision)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
