// Send one SMS (Java 11+; run with `java SendOne.java`)
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class SendOne {
    static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }

    public static void main(String[] args) throws Exception {
        String url = env("SMSDISPATCH_URL", "http://127.0.0.1:8080");
        String body = "{\"sender\":\"ACME\",\"message\":\"Your code is 123456\",\"phoneNumbers\":[\"+48111222333\"]}";
        HttpRequest request = HttpRequest.newBuilder(URI.create(url + "/v2.1/sms"))
            .header("Content-Type", "application/json")
            .header("Application-Key", env("SMSDISPATCH_APP_KEY", "YOUR_APPLICATION_KEY"))
            .header("Authorization", env("SMSDISPATCH_AUTHORIZATION", "YOUR_AUTHORIZATION"))
            .POST(HttpRequest.BodyPublishers.ofString(body))
            .build();
        HttpResponse<String> response =
            // HTTP/1.1: the JDK's default (HTTP/2) sends an h2c upgrade on http:// URLs, which
            // servers behind plain HTTP proxies and uvicorn do not accept with a body.
            HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build()
                .send(request, HttpResponse.BodyHandlers.ofString());
        System.out.println(response.body());
    }
}
