<?php
// enclave from PHP with Guzzle, the client under Laravel's Http facade
// (Composer: guzzlehttp/guzzle; Debian: php-guzzlehttp-guzzle).
//
//   ENCLAVE_BASE_URL=http://gateway:8000/v1 ENCLAVE_API_KEY=sk-enc-... php guzzle.php
//
// In Laravel the same calls read Http::withToken($key)->post($url, $body)->json().

use GuzzleHttp\Client;
use GuzzleHttp\Exception\RequestException;

require file_exists(__DIR__ . '/vendor/autoload.php')
    ? __DIR__ . '/vendor/autoload.php'     // composer require guzzlehttp/guzzle
    : '/usr/share/php/GuzzleHttp/autoload.php';  // Debian's package

$baseUrl = getenv('ENCLAVE_BASE_URL') ?: 'http://localhost:8000/v1';
$apiKey = getenv('ENCLAVE_API_KEY') ?: '';
$model = getenv('ENCLAVE_MODEL') ?: 'qwen2.5-1.5b';
const ASSISTANT = 'assistant/customer-service';
const QUESTION = 'How long is the warranty of the S2?';

function client(string $key): Client
{
    global $baseUrl;
    return new Client([
        'base_uri' => rtrim($baseUrl, '/') . '/',
        'headers' => ['Authorization' => "Bearer $key"],
        'timeout' => 120,
    ]);
}

function chat(Client $client, array $body): array
{
    return json_decode((string) $client->post('chat/completions', ['json' => $body])->getBody(), true);
}

/** Streamed (Server-Sent Events, read as they arrive): the text and the last citations. */
function chatStream(Client $client, array $body): array
{
    $response = $client->post('chat/completions', ['json' => $body + ['stream' => true], 'stream' => true]);
    $stream = $response->getBody();
    $text = '';
    $citations = [];
    $pending = '';
    while (!$stream->eof()) {
        $pending .= $stream->read(8192);
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
    }
    return [$text, $citations];
}

function documents(array $citations): string
{
    return implode(', ', array_column($citations, 'document'));
}

$client = client($apiKey);
$hello = ['model' => $model, 'messages' => [['role' => 'user', 'content' => 'Say hello in one short sentence.']]];
echo 'model: ', chat($client, $hello)['choices'][0]['message']['content'], "\n";
echo 'model (stream): ', chatStream($client, $hello)[0], "\n";

// The assistant: a virtual model that answers from its knowledge base; `user` names the
// end customer behind this service key.
$ask = ['model' => ASSISTANT, 'user' => 'alice', 'messages' => [['role' => 'user', 'content' => QUESTION]]];
$reply = chat($client, $ask);
echo 'assistant: ', $reply['choices'][0]['message']['content'], "\n";
echo 'citations: ', documents($reply['citations'] ?? []), "\n";
[$text, $citations] = chatStream($client, $ask);
echo "assistant (stream): $text\n";
echo 'citations (stream): ', documents($citations), "\n";

// An error: a key the gateway refuses. Guzzle throws on 4xx/5xx; the body is still there.
try {
    chat(client('sk-enc-wrong'), $hello);
} catch (RequestException $error) {
    $response = $error->getResponse();
    $message = json_decode((string) $response->getBody(), true)['error']['message'];
    echo 'error: ', $response->getStatusCode(), ' ', $message, "\n";
}
