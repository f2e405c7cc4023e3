"""Upstreams: anything that speaks the OpenAI protocol (vLLM, llama.cpp, Ollama, our engine)."""

from enclave.upstream.base import ChatStream, Readiness, Upstream, UpstreamState
from enclave.upstream.openai import HTTPUpstream

__all__ = ["ChatStream", "HTTPUpstream", "Readiness", "Upstream", "UpstreamState"]
