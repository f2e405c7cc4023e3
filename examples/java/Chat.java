// enclave from Java 17 with java.net.http and Jackson (Debian: libjackson2-databind-java).
//
//   export ENCLAVE_BASE_URL=http://gateway:8000/v1 ENCLAVE_API_KEY=sk-enc-...
//   java -cp /usr/share/java/jackson-databind.jar:/usr/share/java/jackson-core.jar:\
//   /usr/share/java/jackson-annotations.jar Chat.java
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

public class Chat {
  static final String BASE_URL = env("ENCLAVE_BASE_URL", "http://localhost:8000/v1");
  static final String API_KEY = env("ENCLAVE_API_KEY", "");
  static final String MODEL = env("ENCLAVE_MODEL", "qwen2.5-1.5b");
  static final String ASSISTANT = "assistant/customer-service";
  static final String QUESTION = "How long is the warranty of the S2?";
  static final ObjectMapper JSON = new ObjectMapper();
  static final HttpClient HTTP = HttpClient.newBuilder()
      .version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();

  /** An HTTP error from the gateway: its status and the message of its OpenAI error body. */
  static class ApiException extends IOException {
    final int status;

    ApiException(int status, String message) {
      super(message);
      this.status = status;
    }
  }

  static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  static ObjectNode request(String model, String question, String user) {
    ObjectNode body = JSON.createObjectNode().put("model", model);
    body.putArray("messages").addObject().put("role", "user").put("content", question);
    if (user != null) {
      body.put("user", user); // the end customer behind this service key
    }
    return body;
  }

  static <T> HttpResponse<T> post(ObjectNode body, String key, HttpResponse.BodyHandler<T> as)
      throws IOException, InterruptedException {
    HttpRequest request = HttpRequest.newBuilder(URI.create(BASE_URL + "/chat/completions"))
        .header("Authorization", "Bearer " + key)
        .header("Content-Type", "application/json")
        .timeout(Duration.ofMinutes(2))
        .POST(HttpRequest.BodyPublishers.ofString(JSON.writeValueAsString(body)))
        .build();
    return HTTP.send(request, as);
  }

  static JsonNode chat(ObjectNode body, String key) throws IOException, InterruptedException {
    HttpResponse<String> response = post(body, key, HttpResponse.BodyHandlers.ofString());
    JsonNode reply = JSON.readTree(response.body());
    if (response.statusCode() >= 400) {
      throw new ApiException(response.statusCode(), reply.path("error").path("message").asText());
    }
    return reply;
  }

  /** The text and the last chunk's citations of a streamed call (Server-Sent Events). */
  record Streamed(String text, JsonNode citations) {}

  static Streamed chatStream(ObjectNode body) throws IOException, InterruptedException {
    HttpResponse<Stream<String>> response =
        post(body.deepCopy().put("stream", true), API_KEY, HttpResponse.BodyHandlers.ofLines());
    if (response.statusCode() >= 400) {
      String text = String.join("\n", (Iterable<String>) response.body()::iterator);
      throw new ApiException(response.statusCode(), JSON.readTree(text).at("/error/message").asText());
    }
    StringBuilder text = new StringBuilder();
    JsonNode citations = JSON.createArrayNode();
    for (String line : (Iterable<String>) response.body()::iterator) {
      if (!line.startsWith("data: ") || line.equals("data: [DONE]")) {
        continue;
      }
      JsonNode chunk = JSON.readTree(line.substring("data: ".length()));
      if (chunk.has("error")) { // a failure after the first byte arrives as an event
        throw new IOException("stream: " + chunk.at("/error/message").asText());
      }
      if (chunk.path("choices").size() > 0) {
        text.append(chunk.at("/choices/0/delta/content").asText(""));
      }
      if (chunk.has("citations")) {
        citations = chunk.get("citations");
      }
    }
    return new Streamed(text.toString(), citations);
  }

  static String documents(JsonNode citations) {
    List<String> names = new ArrayList<>();
    citations.forEach(c -> names.add(c.path("document").asText()));
    return String.join(", ", names);
  }

  public static void main(String[] args) throws Exception {
    ObjectNode hello = request(MODEL, "Say hello in one short sentence.", null);
    System.out.println("model: " + chat(hello, API_KEY).at("/choices/0/message/content").asText());
    System.out.println("model (stream): " + chatStream(hello).text());

    // The assistant: a virtual model that answers from its knowledge base.
    ObjectNode ask = request(ASSISTANT, QUESTION, "alice");
    JsonNode reply = chat(ask, API_KEY);
    System.out.println("assistant: " + reply.at("/choices/0/message/content").asText());
    System.out.println("citations: " + documents(reply.path("citations")));
    Streamed streamed = chatStream(ask);
    System.out.println("assistant (stream): " + streamed.text());
    System.out.println("citations (stream): " + documents(streamed.citations()));

    // An error: a key the gateway refuses.
    try {
      chat(hello, "sk-enc-wrong");
    } catch (ApiException error) {
      System.out.println("error: " + error.status + " " + error.getMessage());
    }
  }
}
