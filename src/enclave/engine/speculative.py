"""Speculative decoding on the embedded engine (``engine.speculative``).

llama.cpp drafts a few tokens cheaply and checks them with the real model in one batch,
which on a CPU costs about as much as decoding one token. Two kinds of drafts:

- an **n-gram type** (``ngram-simple``, ...): drafts are looked up in the tokens so far,
  the prompt included. Free, and fast where the answer repeats the prompt (code edits);
- a **draft model**: a small model of the same family and vocabulary (the bundled
  qwen2.5-coder-0.5b-instruct for the 1.5B) guesses the next tokens.

At temperature 0 the answer is the model's own: a draft only decides how many tokens one
step checks. This module turns the setting into the child's arguments (in the gateway) and
into llama.cpp's parameters (in the child); xllamacpp is imported only there.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from enclave.config import SPECULATIVE_NGRAM_TYPES, EngineSettings, Settings
from enclave.errors import ConfigError

OFF = "off"
DRAFT = "draft"  # the child's name for "a draft model given by path"
# setting value -> xllamacpp's common_speculative_type member
_TYPES = {
    name: "COMMON_SPECULATIVE_TYPE_" + name.upper().replace("-", "_")
    for name in SPECULATIVE_NGRAM_TYPES
} | {DRAFT: "COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE"}


def uses_draft_model(settings: EngineSettings) -> bool:
    return settings.speculative != OFF and settings.speculative not in SPECULATIVE_NGRAM_TYPES


def draft_model(settings: Settings) -> Path | None:
    """The draft model's GGUF file when ``engine.speculative`` names one, prepared from the
    bundled catalog when needed; None for off and the n-gram types."""
    if not uses_draft_model(settings.engine):
        return None
    from enclave.engine.modelfiles import ModelStore
    from enclave.errors import ModelFileError
    from enclave.progress import ProgressBar

    name = settings.engine.speculative
    store = ModelStore(settings.models_dir)
    try:
        if store.is_bundled(name):
            with ProgressBar(f"preparing {name}") as progress:
                return store.prepare(name, progress=progress).path
        return store.resolve(name)
    except ModelFileError as exc:
        raise ConfigError(f"engine.speculative: no draft model {name!r}: {exc}") from exc


def child_args(settings: EngineSettings, draft: Path | None) -> list[str]:
    """The child's command-line arguments for the setting (see :func:`add_arguments`)."""
    if settings.speculative == OFF:
        return []
    kind = DRAFT if draft is not None else settings.speculative
    args = ["--speculative", kind, "--draft-max", str(settings.speculative_draft_max)]
    if draft is not None:
        return [*args, "--draft-model", str(draft)]
    return [*args, "--ngram-match", str(settings.speculative_ngram_match)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speculative", choices=[OFF, *_TYPES], default=OFF)
    parser.add_argument("--draft-model", help="the draft model's GGUF (--speculative draft)")
    parser.add_argument("--draft-max", type=int, default=0, help="0 = llama.cpp's default")
    parser.add_argument("--ngram-match", type=int, default=0, help="0 = llama.cpp's default")


def apply(params: Any, args: argparse.Namespace) -> None:
    """Set llama.cpp's speculative parameters (xllamacpp ``CommonParams``) from the
    child's arguments.

    llama.cpp's server caps only a draft model's drafts by ``draft.n_max``: an n-gram
    type drafts its own length (``size_m``; ``n_max`` for ngram-mod), so ``--draft-max``
    is set on the type's own parameters, and ``--ngram-match`` on its match length."""
    if args.speculative == OFF:
        return
    import xllamacpp

    spec = params.speculative
    spec.types = [getattr(xllamacpp.common_speculative_type, _TYPES[args.speculative])]
    if args.speculative == DRAFT:
        if args.draft_max:
            spec.draft.n_max = args.draft_max
        spec.draft.mparams.path = args.draft_model
        spec.draft.cpuparams.n_threads = params.cpuparams.n_threads
        spec.draft.cpuparams_batch.n_threads = params.cpuparams_batch.n_threads
    elif args.speculative == "ngram-mod":
        mod = spec.ngram_mod
        if args.draft_max:
            mod.n_max = args.draft_max
            mod.n_min = min(mod.n_min, args.draft_max)
        if args.ngram_match:
            mod.n_match = args.ngram_match
    elif args.speculative != "ngram-cache":  # ngram-simple, ngram-map-k, ngram-map-k4v
        ngram = getattr(spec, args.speculative.replace("-", "_"))
        if args.draft_max:
            ngram.size_m = args.draft_max
        if args.ngram_match:
            ngram.size_n = args.ngram_match
