// enclave from Go with net/http alone (no module to download).
//
//	ENCLAVE_BASE_URL=http://gateway:8000/v1 ENCLAVE_API_KEY=sk-enc-... go run .
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

const assistant = "assistant/customer-service"
const question = "How long is the warranty of the S2?"

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type request struct {
	Model    string    `json:"model"`
	Messages []message `json:"messages"`
	User     string    `json:"user,omitempty"`
	Stream   bool      `json:"stream,omitempty"`
}

// citation is one source of an assistant's answer (the response's extra `citations`).
type citation struct {
	Index    int     `json:"index"`
	KB       string  `json:"kb"`
	Document string  `json:"document"`
	Heading  string  `json:"heading"`
	Score    float64 `json:"score"`
}

type completion struct {
	Choices []struct {
		Message message `json:"message"`
		Delta   message `json:"delta"`
	} `json:"choices"`
	Citations []citation `json:"citations"`
	Error     *apiError  `json:"error"`
}

// apiError is the OpenAI error body: {"error": {"message", "type", "param", "code"}}.
type apiError struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    any    `json:"code"`
}

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

var (
	baseURL = env("ENCLAVE_BASE_URL", "http://localhost:8000/v1")
	apiKey  = env("ENCLAVE_API_KEY", "")
	model   = env("ENCLAVE_MODEL", "qwen2.5-1.5b")
)

// post sends body to /chat/completions; an HTTP error comes back as an error with the
// gateway's status and message.
func post(body request, key string) (*http.Response, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest("POST", baseURL+"/chat/completions", bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var failed completion
		raw, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(raw, &failed) != nil || failed.Error == nil {
			return nil, fmt.Errorf("%d %s", resp.StatusCode, raw)
		}
		return nil, fmt.Errorf("%d %s", resp.StatusCode, failed.Error.Message)
	}
	return resp, nil
}

func chat(body request, key string) (*completion, error) {
	resp, err := post(body, key)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var reply completion
	return &reply, json.NewDecoder(resp.Body).Decode(&reply)
}

// chatStream reads Server-Sent Events (`data: {chunk}` lines, then `data: [DONE]`) and
// returns the text and the citations of the last chunk.
func chatStream(body request) (string, []citation, error) {
	body.Stream = true
	resp, err := post(body, apiKey)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	var text strings.Builder
	var citations []citation
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 1024*1024), 1024*1024)
	for lines.Scan() {
		line := lines.Text()
		data := strings.TrimPrefix(line, "data: ")
		if data == line || data == "[DONE]" {
			continue
		}
		var chunk completion
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return "", nil, err
		}
		if chunk.Error != nil { // a failure after the first byte arrives as an event
			return "", nil, fmt.Errorf("stream: %s", chunk.Error.Message)
		}
		if len(chunk.Choices) > 0 {
			text.WriteString(chunk.Choices[0].Delta.Content)
		}
		if chunk.Citations != nil {
			citations = chunk.Citations
		}
	}
	return text.String(), citations, lines.Err()
}

func documents(citations []citation) string {
	names := make([]string, len(citations))
	for i, c := range citations {
		names[i] = c.Document
	}
	return strings.Join(names, ", ")
}

func exitOn(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func main() {
	hello := request{Model: model, Messages: []message{{"user", "Say hello in one short sentence."}}}
	reply, err := chat(hello, apiKey)
	exitOn(err)
	fmt.Println("model:", reply.Choices[0].Message.Content)
	text, _, err := chatStream(hello)
	exitOn(err)
	fmt.Println("model (stream):", text)

	// The assistant answers from its knowledge base; User names the end customer.
	ask := request{Model: assistant, User: "alice", Messages: []message{{"user", question}}}
	reply, err = chat(ask, apiKey)
	exitOn(err)
	fmt.Println("assistant:", reply.Choices[0].Message.Content)
	fmt.Println("citations:", documents(reply.Citations))
	text, citations, err := chatStream(ask)
	exitOn(err)
	fmt.Println("assistant (stream):", text)
	fmt.Println("citations (stream):", documents(citations))

	// An error: a key the gateway refuses.
	if _, err := chat(hello, "sk-enc-wrong"); err != nil {
		fmt.Println("error:", err)
	}
}
