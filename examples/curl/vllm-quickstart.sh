#!/usr/bin/env bash
# The curl commands of vLLM's quickstart (OpenAI-compatible server), word for word.
# Pointed at an enclave gateway they work unchanged: its config names the model the way
# `vllm serve Qwen/Qwen2.5-1.5B-Instruct` does, with an alias (see ../enclave.yaml):
#
#   upstreams:
#     - name: gpu1
#       base_url: http://gpu1:8000/v1
#       models: [qwen2.5-1.5b]
#       aliases: {Qwen/Qwen2.5-1.5B-Instruct: qwen2.5-1.5b}
#
# (or the upstream's own name, or engine.served_model_names for the embedded engine).
# A gateway on loopback needs no key, like vLLM without --api-key; elsewhere add
# -H "Authorization: Bearer $ENCLAVE_API_KEY", as for `vllm serve --api-key`.
# Run it on the gateway's host, or change localhost:8000 to the gateway's address.
set -euo pipefail

curl http://localhost:8000/v1/models
echo

curl http://localhost:8000/v1/chat/completions \
    -H "Content-Type: application/json" \
    -d '{
        "model": "Qwen/Qwen2.5-1.5B-Instruct",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Who won the world series in 2020?"}
        ]
    }'
echo
