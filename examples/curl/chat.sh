#!/usr/bin/env bash
# enclave from the shell: curl, with jq to read the JSON (Debian: curl jq).
#
#   ENCLAVE_BASE_URL=http://gateway:8000/v1 ENCLAVE_API_KEY=sk-enc-... ./chat.sh
set -euo pipefail
BASE_URL="${ENCLAVE_BASE_URL:-http://localhost:8000/v1}"
API_KEY="${ENCLAVE_API_KEY:-}"
MODEL="${ENCLAVE_MODEL:-qwen2.5-1.5b}"
QUESTION="How long is the warranty of the S2?"

chat() {  # chat KEY BODY: the response body; an HTTP error's body too (--fail-with-body)
  curl -sS --fail-with-body "$BASE_URL/chat/completions" \
    -H "Authorization: Bearer $1" -H "Content-Type: application/json" -d "$2"
}

stream() {  # stream BODY: the chunks (Server-Sent Events), one JSON object a line
  curl -sS -N --fail-with-body "$BASE_URL/chat/completions" \
    -H "Authorization: Bearer $API_KEY" -H "Content-Type: application/json" \
    -d "$(jq -c '. + {stream: true}' <<<"$1")" |
    sed -n 's/^data: //p' | grep -v '^\[DONE\]$'
}

hello=$(jq -nc --arg model "$MODEL" \
  '{model: $model, messages: [{role: "user", content: "Say hello in one short sentence."}]}')
echo "model: $(chat "$API_KEY" "$hello" | jq -r '.choices[0].message.content')"
echo "model (stream): $(stream "$hello" | jq -j '.choices[0].delta.content // empty')"

# The assistant: a virtual model that answers from its knowledge base; "user" names the
# end customer behind this service key. The sources are in "citations".
ask=$(jq -nc --arg q "$QUESTION" \
  '{model: "assistant/customer-service", user: "alice", messages: [{role: "user", content: $q}]}')
reply=$(chat "$API_KEY" "$ask")
echo "assistant: $(jq -r '.choices[0].message.content' <<<"$reply")"
echo "citations: $(jq -r '[.citations[].document] | join(", ")' <<<"$reply")"
chunks=$(stream "$ask")
echo "assistant (stream): $(jq -j '.choices[0].delta.content // empty' <<<"$chunks")"
echo "citations (stream): $(jq -rs 'map(.citations // empty) | last | map(.document) | join(", ")' <<<"$chunks")"

# An error: a key the gateway refuses. -w appends the HTTP status after the body.
refused=$(curl -sS -w '\n%{http_code}' "$BASE_URL/chat/completions" \
  -H "Authorization: Bearer sk-enc-wrong" -H "Content-Type: application/json" -d "$hello")
echo "error: ${refused##*$'\n'} $(jq -r '.error.message' <<<"${refused%$'\n'*}")"
