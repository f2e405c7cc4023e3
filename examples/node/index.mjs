// enclave with the official openai package (npm ci; node index.mjs).
//
//   ENCLAVE_BASE_URL=http://gateway:8000/v1 ENCLAVE_API_KEY=sk-enc-... node index.mjs
import OpenAI from "openai";

const baseURL = process.env.ENCLAVE_BASE_URL ?? "http://localhost:8000/v1";
const apiKey = process.env.ENCLAVE_API_KEY ?? "";
const model = process.env.ENCLAVE_MODEL ?? "qwen2.5-1.5b";
const assistant = "assistant/customer-service";
const question = "How long is the warranty of the S2?";

const client = new OpenAI({ baseURL, apiKey });

// A plain model, then the same streamed.
const hello = [{ role: "user", content: "Say hello in one short sentence." }];
let reply = await client.chat.completions.create({ model, messages: hello });
console.log("model:", reply.choices[0].message.content);

let text = "";
for await (const chunk of await client.chat.completions.create({ model, messages: hello, stream: true })) {
  text += chunk.choices[0]?.delta?.content ?? "";
}
console.log("model (stream):", text);

// The assistant: a virtual model that answers from its knowledge base. `user` names the
// end customer behind this service key; `citations` is an extra field of the response.
const ask = { model: assistant, user: "alice", messages: [{ role: "user", content: question }] };
reply = await client.chat.completions.create(ask);
console.log("assistant:", reply.choices[0].message.content);
console.log("citations:", (reply.citations ?? []).map((c) => c.document).join(", "));

text = "";
let citations = [];
for await (const chunk of await client.chat.completions.create({ ...ask, stream: true })) {
  text += chunk.choices[0]?.delta?.content ?? "";
  citations = chunk.citations ?? citations; // in the last chunk
}
console.log("assistant (stream):", text);
console.log("citations (stream):", citations.map((c) => c.document).join(", "));

// An error: a key the gateway refuses.
try {
  await new OpenAI({ baseURL, apiKey: "sk-enc-wrong", maxRetries: 0 }).models.list();
} catch (error) {
  if (!(error instanceof OpenAI.APIError)) throw error;
  console.log("error:", error.status, error.error?.message ?? error.message);
}
