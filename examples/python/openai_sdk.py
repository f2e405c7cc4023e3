"""enclave with the official openai SDK (pip install openai).

ENCLAVE_BASE_URL=http://gateway:8000/v1 ENCLAVE_API_KEY=sk-enc-... python openai_sdk.py
"""

import os

import openai

BASE_URL = os.environ.get("ENCLAVE_BASE_URL", "http://localhost:8000/v1")
API_KEY = os.environ.get("ENCLAVE_API_KEY", "")
MODEL = os.environ.get("ENCLAVE_MODEL", "qwen2.5-1.5b")
ASSISTANT = "assistant/customer-service"
QUESTION = "How long is the warranty of the S2?"

client = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY)

# A plain model, then the same streamed.
hello = [{"role": "user", "content": "Say hello in one short sentence."}]
reply = client.chat.completions.create(model=MODEL, messages=hello)
print("model:", reply.choices[0].message.content)

text = ""
for chunk in client.chat.completions.create(model=MODEL, messages=hello, stream=True):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
print("model (stream):", text)

# The assistant: a virtual model that answers from its knowledge base. `user` names the
# end customer behind this service key; `citations` is an extra field (model_extra).
ask = [{"role": "user", "content": QUESTION}]
reply = client.chat.completions.create(model=ASSISTANT, messages=ask, user="alice")
print("assistant:", reply.choices[0].message.content)
citations = (reply.model_extra or {}).get("citations", [])
print("citations:", ", ".join(c["document"] for c in citations))

text, citations = "", []
stream = client.chat.completions.create(model=ASSISTANT, messages=ask, user="alice", stream=True)
for chunk in stream:
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    citations = (chunk.model_extra or {}).get("citations", citations)  # in the last chunk
print("assistant (stream):", text)
print("citations (stream):", ", ".join(c["document"] for c in citations))

# An error: a key the gateway refuses.
try:
    openai.OpenAI(base_url=BASE_URL, api_key="sk-enc-wrong", max_retries=0).models.list()
except openai.APIStatusError as error:
    body = error.body if isinstance(error.body, dict) else {}
    print("error:", error.status_code, body.get("message", error.message))
