"""Where the prompts of a load test come from; everything is made or read locally.

- :class:`FixedPrompts`: the same text(s), cycled;
- :class:`SyntheticPrompts`: random English words or Chinese text of about N prompt
  tokens. No tokenizer is downloaded: :func:`calibration_texts` gives two probe texts and
  :func:`calibrated` turns the prompt tokens the *server* reported for them into units
  (words or characters) per token. Each prompt starts with its own number, so no two
  share a prefix that a server could cache;
- :class:`JsonlPrompts`: a file of ``{"prompt": ...}``, ``{"messages": [...]}`` or
  ShareGPT ``{"conversations": [{"from": "human", "value": ...}, ...]}`` lines, each with
  an optional ``max_tokens``;
- :class:`WithImages`: any of these with images added to the last user message, as
  ``data:`` URLs of files given or of images drawn with Pillow.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from enclave.errors import InvalidRequest

_EN = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there one all we their has been would when "
    "more time if will about can so what up out other into than them only some could new "
    "these two may first then do any like my now over such our man me even most made after "
    "also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see "
    "men work long get here between both life being under never day same another know while "
    "last might us great old year off come since against go came right used take three "
    "system server model request network latency memory cluster token stream answer data"
)
EN_WORDS = _EN.split()
ZH_TEXT = (
    "我们今天讨论一个关于服务器性能的问题。在内网环境中部署大模型需要考虑显存、并发和延迟。"
    "系统管理员希望知道每秒可以处理多少请求，以及首个字的响应时间是多少。银行和工厂的网络"
    "不能访问互联网，所以所有的模型和工具都必须提前下载并且在本地运行。请根据下面的日志分析"
    "故障原因，并给出详细的排查步骤和修复建议。数据库连接超时可能是因为连接池太小，也可能是"
    "网络抖动造成的。模型推理服务在高并发时会排队，响应时间随着请求数量增加而变长。"
)
UNITS = {"en": "words", "zh": "characters"}
DEFAULT_TOKENS_PER_UNIT = {"en": 1.3, "zh": 0.7}  # without usage from the server
POOL = 1000  # distinct synthetic prompts, cycled
PROBE_UNITS = (32, 544)
MAX_IMAGE_SIDE = 8192


@dataclass(frozen=True)
class Prompt:
    """One request's conversation and, if it has its own, its output length."""

    messages: tuple[dict[str, Any], ...]
    max_tokens: int | None = None


def user(text: str) -> Prompt:
    return Prompt(({"role": "user", "content": text},))


class Workload(Protocol):
    """A finite pool of prompts; request ``i`` uses ``prompt(i % size)``."""

    @property
    def size(self) -> int: ...

    def prompt(self, index: int) -> Prompt: ...

    def describe(self) -> dict[str, Any]: ...


class FixedPrompts:
    def __init__(self, texts: Sequence[str]) -> None:
        if not texts or not all(text.strip() for text in texts):
            raise InvalidRequest("--prompt needs some text")
        self.texts = list(texts)

    @property
    def size(self) -> int:
        return len(self.texts)

    def prompt(self, index: int) -> Prompt:
        return user(self.texts[index])

    def describe(self) -> dict[str, Any]:
        return {"kind": "fixed", "prompts": len(self.texts)}


def synthetic_text(lang: str, units: int, rng: random.Random) -> str:
    """About ``units`` English words or Chinese characters of plausible text."""
    if lang == "en":
        words = rng.choices(EN_WORDS, k=units)
        return " ".join(words)
    if lang == "zh":
        start = rng.randrange(len(ZH_TEXT))
        repeated = ZH_TEXT * (units // len(ZH_TEXT) + 2)
        return repeated[start : start + units]
    raise InvalidRequest(f"unknown language {lang!r}: use en or zh")


@dataclass(frozen=True)
class Calibration:
    """Prompt tokens as the server counts them: ``overhead + per_unit * units``."""

    per_unit: float
    overhead: float
    measured: bool  # False: the defaults, the server reported no usable usage

    def units_for(self, tokens: int) -> int:
        return max(1, round((tokens - self.overhead) / self.per_unit))

    def as_json(self) -> dict[str, Any]:
        return {"per_unit": self.per_unit, "overhead": self.overhead, "measured": self.measured}


def calibration_texts(lang: str) -> tuple[str, str]:
    """Two probe prompts of :data:`PROBE_UNITS` units: send each, read its prompt tokens."""
    rng = random.Random(0)  # noqa: S311 - text, not secrets
    small, large = PROBE_UNITS
    return synthetic_text(lang, small, rng), synthetic_text(lang, large, rng)


def calibrated(lang: str, small_tokens: int | None, large_tokens: int | None) -> Calibration:
    """The calibration from the server's prompt tokens for the two probe texts."""
    small, large = PROBE_UNITS
    if small_tokens is not None and large_tokens is not None and large_tokens > small_tokens:
        per_unit = (large_tokens - small_tokens) / (large - small)
        return Calibration(per_unit, small_tokens - per_unit * small, measured=True)
    return Calibration(DEFAULT_TOKENS_PER_UNIT[lang], 0.0, measured=False)


class SyntheticPrompts:
    def __init__(
        self, lang: str, input_tokens: int, calibration: Calibration, seed: int = 0
    ) -> None:
        if lang not in UNITS:
            raise InvalidRequest(f"unknown language {lang!r}: use en or zh")
        if input_tokens < 1:
            raise InvalidRequest("--input-len must be at least 1")
        self.lang, self.input_tokens, self.seed = lang, input_tokens, seed
        self.calibration = calibration
        self.units = calibration.units_for(input_tokens)
        self._cache: dict[int, Prompt] = {}

    @property
    def size(self) -> int:
        return POOL

    def prompt(self, index: int) -> Prompt:
        prompt = self._cache.get(index)
        if prompt is None:
            rng = random.Random(self.seed * 1_000_003 + index)  # noqa: S311
            tag = f"{index} " if self.lang == "en" else f"{index}。"
            text = tag + synthetic_text(self.lang, max(self.units - 1, 1), rng)
            prompt = self._cache[index] = user(text)
        return prompt

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "synthetic",
            "lang": self.lang,
            "input_tokens": self.input_tokens,
            UNITS[self.lang]: self.units,
            "calibration": self.calibration.as_json(),
        }


def _conversation(data: dict[str, Any]) -> tuple[dict[str, Any], ...] | None:
    """ShareGPT turns up to the last human one, as OpenAI messages."""
    roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
    roles |= {"system": "system"}
    turns = data.get("conversations")
    if not isinstance(turns, list):
        return None
    messages = [
        {"role": roles[t["from"]], "content": str(t["value"])}
        for t in turns
        if isinstance(t, dict) and t.get("from") in roles and "value" in t
    ]
    while messages and messages[-1]["role"] != "user":
        messages.pop()
    return tuple(messages) or None


def parse_line(data: Any) -> Prompt:
    """One JSONL line: prompt, messages or ShareGPT conversations (+ max_tokens)."""
    if not isinstance(data, dict):
        raise ValueError("each line must be a JSON object")
    limit = data.get("max_tokens", data.get("output_len"))
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError("max_tokens must be a positive integer")
    if isinstance(data.get("prompt"), str):
        return Prompt(user(data["prompt"]).messages, limit)
    messages = data.get("messages")
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        return Prompt(tuple(messages), limit)
    conversation = _conversation(data)
    if conversation:
        return Prompt(conversation, limit)
    raise ValueError('needs "prompt" (text), "messages" (a list) or "conversations"')


class JsonlPrompts:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise InvalidRequest(f"{path} is not UTF-8 text") from None
        self.prompts: list[Prompt] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                self.prompts.append(parse_line(json.loads(line)))
            except ValueError as exc:
                raise InvalidRequest(f"{path}:{number}: {exc}") from None
        if not self.prompts:
            raise InvalidRequest(f"{path} holds no prompts")

    @property
    def size(self) -> int:
        return len(self.prompts)

    def prompt(self, index: int) -> Prompt:
        return self.prompts[index]

    def describe(self) -> dict[str, Any]:
        return {"kind": "jsonl", "file": str(self.path), "prompts": len(self.prompts)}


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_file_url(path: Path) -> str:
    from enclave.imagetypes import ACCEPTED, sniff_mime

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None
    mime = sniff_mime(data)
    if mime is None:
        raise InvalidRequest(f"{path} is not an image ({ACCEPTED})")
    return data_url(data, mime)


def parse_size(text: str) -> tuple[int, int]:
    """``512x384`` → (512, 384)."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise InvalidRequest(f"bad image size {text!r}: use WIDTHxHEIGHT, e.g. 512x512")
    w, h = int(width), int(height)
    if not (0 < w <= MAX_IMAGE_SIDE and 0 < h <= MAX_IMAGE_SIDE):
        raise InvalidRequest(f"bad image size {text!r}: sides from 1 to {MAX_IMAGE_SIDE}")
    return w, h


def synthetic_image_url(size: tuple[int, int], seed: int) -> str:
    """A JPEG drawn with Pillow: a gradient, shapes and a line of text, different per seed."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)  # noqa: S311 - pictures, not secrets
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(1, width // 3 + 2), y0 + rng.randrange(1, height // 3 + 2)
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle((x0, y0, x1, y1), fill=color)
    draw.text((8, 8), f"enclave bench image {seed}", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return data_url(out.getvalue(), "image/jpeg")


class WithImages:
    """``base``'s prompts with images added to their last user message."""

    def __init__(self, base: Workload, urls: Sequence[str], per_request: int = 1) -> None:
        if not urls or per_request < 1:
            raise InvalidRequest("image prompts need at least one image per request")
        self.base, self.urls, self.per_request = base, list(urls), per_request

    @property
    def size(self) -> int:
        return self.base.size

    def prompt(self, index: int) -> Prompt:
        prompt = self.base.prompt(index)
        urls = [self.urls[(index + k) % len(self.urls)] for k in range(self.per_request)]
        parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
        messages = list(prompt.messages)
        for position in range(len(messages) - 1, -1, -1):
            if messages[position].get("role") == "user":
                content = messages[position].get("content")
                text = [{"type": "text", "text": content}] if isinstance(content, str) else []
                existing = content if isinstance(content, list) else text
                messages[position] = {**messages[position], "content": [*existing, *parts]}
                break
        return Prompt(tuple(messages), prompt.max_tokens)

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "images": len(self.urls), "per_request": self.per_request}


def request_body(
    model: str,
    prompt: Prompt,
    *,
    max_tokens: int | None,
    stream: bool,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The JSON body of one chat request (usage asked for when streaming)."""
    body: dict[str, Any] = {"model": model, "messages": list(prompt.messages)}
    limit = prompt.max_tokens or max_tokens
    if limit is not None:
        body["max_tokens"] = limit
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    body.update(extra or {})
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
