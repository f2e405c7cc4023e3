<?php
// enclave from PHP with ext-curl alone (Debian: php-cli php-curl).
//
//   ENCLAVE_BASE_URL=http://gateway:8000/v1 ENCLAVE_API_KEY=sk-enc-... php curl.php

$baseUrl = getenv('ENCLAVE_BASE_URL') ?: 'http://localhost:8000/v1';
$apiKey = getenv('ENCLAVE_API_KEY') ?: '';
$model = getenv('ENCLAVE_MODEL') ?: 'qwen2.5-1.5b';
const ASSISTANT = 'assistant/customer-service';
const QUESTION = 'How long is the warranty of the S2?';

/** POST /chat/completions; an HTTP error is thrown with the gateway's status and message. */
function chat(array $body, string $key): array
{
    global $baseUrl;
    $curl = curl_init($baseUrl . '/chat/completions');
    curl_setopt_array($curl, [
        CURLOPT_POST => true,
        CURLOPT_POSTFIELDS => json_encode($body),
        CURLOPT_HTTPHEADER => ["Authorization: Bearer $key", 'Content-Type: application/json'],
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_TIMEOUT => 120,
    ]);
    $raw = curl_exec($curl);
    if ($raw === false) {
        throw new RuntimeException(curl_error($curl));
    }
    $status = curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
    $reply = json_decode($raw, true);
    if ($status >= 400) {
        throw new RuntimeException($reply['error']['message'] ?? $raw, $status);
    }
    return $reply;
}

/** The same streamed (Server-Sent Events): the text and the last chunk's citations. */
function chatStream(array $body): array
{
    global $baseUrl, $apiKey;
    $text = '';
    $citations = [];
    $pending = '';
    $onData = function ($curl, string $data) use (&$text, &$citations, &$pending): int {
        $pending .= $data;
        while (($end = strpos($pending, "\n")) !== false) {
            $line = rtrim(substr($pending, 0, $end), "\r");
            $pending = substr($pending, $end + 1);
            if (!str_starts_with($line, 'data: ') || $line === 'data: [DONE]') {
                continue;
            }
            $chunk = json_decode(substr($line, 6), true);
            if (isset($chunk['error'])) { // a failure after the first byte arrives as an event
                throw new RuntimeException('stream: ' . $chunk['error']['message']);
            }
            $text .= $chunk['choices'][0]['delta']['content'] ?? '';
            $citations = $chunk['citations'] ?? $citations;
        }
        return strlen($data);
    };
    $curl = curl_init($baseUrl . '/chat/completions');
    curl_setopt_array($curl, [
        CURLOPT_POST => true,
        CURLOPT_POSTFIELDS => json_encode($body + ['stream' => true]),
        CURLOPT_HTTPHEADER => ["Authorization: Bearer $apiKey", 'Content-Type: application/json'],
        CURLOPT_WRITEFUNCTION => $onData,
        CURLOPT_TIMEOUT => 120,
    ]);
    if (curl_exec($curl) === false) {
        throw new RuntimeException(curl_error($curl));
    }
    $status = curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
    if ($status >= 400) { // the body was an error, not events: it is still in $pending
        throw new RuntimeException(json_decode($pending, true)['error']['message'] ?? $pending, $status);
    }
    return [$text, $citations];
}

function documents(array $citations): string
{
    return implode(', ', array_column($citations, 'document'));
}

$hello = ['model' => $model, 'messages' => [['role' => 'user', 'content' => 'Say hello in one short sentence.']]];
echo 'model: ', chat($hello, $apiKey)['choices'][0]['message']['content'], "\n";
echo 'model (stream): ', chatStream($hello)[0], "\n";

// The assistant: a virtual model that answers from its knowledge base; `user` names the
// end customer behind this service key.
$ask = ['model' => ASSISTANT, 'user' => 'alice', 'messages' => [['role' => 'user', 'content' => QUESTION]]];
$reply = chat($ask, $apiKey);
echo 'assistant: ', $reply['choices'][0]['message']['content'], "\n";
echo 'citations: ', documents($reply['citations'] ?? []), "\n";
[$text, $citations] = chatStream($ask);
echo "assistant (stream): $text\n";
echo 'citations (stream): ', documents($citations), "\n";

// An error: a key the gateway refuses.
try {
    chat($hello, 'sk-enc-wrong');
} catch (RuntimeException $error) {
    echo 'error: ', $error->getCode(), ' ', $error->getMessage(), "\n";
}
