"""enclave over plain HTTP with requests (pip install requests): no SDK.

ENCLAVE_BASE_URL=http://gateway:8000/v1 ENCLAVE_API_KEY=sk-enc-... python plain_requests.py
"""

import json
import os

import requests

BASE_URL = os.environ.get("ENCLAVE_BASE_URL", "http://localhost:8000/v1")
API_KEY = os.environ.get("ENCLAVE_API_KEY", "")
MODEL = os.environ.get("ENCLAVE_MODEL", "qwen2.5-1.5b")
ASSISTANT = "assistant/customer-service"
QUESTION = "How long is the warranty of the S2?"


def chat(body, key=API_KEY):
    """POST /chat/completions; raises on an HTTP error, with the gateway's message."""
    reply = requests.post(
        BASE_URL + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    if reply.status_code >= 400:
        raise RuntimeError(f"{reply.status_code} {reply.json()['error']['message']}")
    return reply.json()


def chat_stream(body):
    """The same streamed: Server-Sent Events, one `data: {chunk}` line each, then [DONE].
    Returns the text and the last chunk's `citations` (an assistant's)."""
    text, citations = "", []
    with requests.post(
        BASE_URL + "/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {API_KEY}"},
        stream=True,
        timeout=120,
    ) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines(decode_unicode=True):
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if "error" in chunk:  # a failure after the first byte arrives as an event
                raise RuntimeError(chunk["error"]["message"])
            if chunk["choices"]:
                text += chunk["choices"][0]["delta"].get("content") or ""
            citations = chunk.get("citations", citations)
    return text, citations


hello = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
}
print("model:", chat(hello)["choices"][0]["message"]["content"])
print("model (stream):", chat_stream(hello)[0])

ask = {"model": ASSISTANT, "user": "alice", "messages": [{"role": "user", "content": QUESTION}]}
reply = chat(ask)
print("assistant:", reply["choices"][0]["message"]["content"])
print("citations:", ", ".join(c["document"] for c in reply["citations"]))
text, citations = chat_stream(ask)
print("assistant (stream):", text)
print("citations (stream):", ", ".join(c["document"] for c in citations))

try:
    chat(hello, key="sk-enc-wrong")
except RuntimeError as error:
    print("error:", error)
