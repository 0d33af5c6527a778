// Look a number up (Java 17+ and Jackson, com.fasterxml.jackson.core:jackson-databind; run with
// `java -cp jackson-databind.jar:jackson-core.jar:jackson-annotations.jar LookupNumber.java`)
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.cfg.CoercionAction;
import com.fasterxml.jackson.databind.cfg.CoercionInputShape;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;

public class LookupNumber {
    // The look-up answer, typed as docs/lookup.md documents it.
    public static class Network {
        public String mcc, mnc, name;
    }

    public static class Lookup {
        public String phoneNumber, country;
        public boolean valid, cached;
        public Boolean ported, reachable;
        public Network network;
        public long lookupTime;
    }

    public static class LookupError {
        public String code, message;
    }

    public static class LookupResponse {
        public List<Lookup> data;
        public List<LookupError> errors;
    }

    /** No coercion: a string where the model has a number (or a null for an int) fails. */
    static ObjectMapper strictMapper() {
        ObjectMapper mapper = new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false)
            .configure(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES, true)
            .configure(DeserializationFeature.ACCEPT_FLOAT_AS_INT, false);
        for (CoercionInputShape shape : new CoercionInputShape[] {CoercionInputShape.String,
                CoercionInputShape.Integer, CoercionInputShape.Float, CoercionInputShape.Boolean}) {
            mapper.coercionConfigDefaults().setCoercion(shape, CoercionAction.Fail);
        }
        return mapper;
    }

    static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }

    public static void main(String[] args) throws Exception {
        String url = env("SMSDISPATCH_URL", "http://127.0.0.1:8080");
        String body = "{\"phone\":\"+48500100200\"}";
        HttpRequest request = HttpRequest.newBuilder(URI.create(url + "/v2.1/sms/hlr"))
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
        LookupResponse answer = strictMapper().readValue(response.body(), LookupResponse.class);
        System.out.println(response.body());
        for (Lookup n : answer.data) {
            System.err.printf("%s: valid %b, cached %b%n", n.phoneNumber, n.valid, n.cached);
        }
        for (LookupError error : answer.errors) {
            System.err.printf("refused: %s: %s%n", error.code, error.message);
        }
    }
}
