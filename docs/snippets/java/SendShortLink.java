// Send with tracked short links (Java 17+ and Jackson, com.fasterxml.jackson.core:jackson-databind; run with
// `java -cp jackson-databind.jar:jackson-core.jar:jackson-annotations.jar SendShortLink.java`)
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.cfg.CoercionAction;
import com.fasterxml.jackson.databind.cfg.CoercionInputShape;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;

public class SendShortLink {
    // The answer as the original API's model types it. id and statusName are smsdispatch's.
    public static class SmsData {
        public String id, sender, phoneNumber, externalId, statusName;
        public int status, smsPrice, currency, numberOfParts;
        public long statusTime, createTime;
    }

    public static class SmsErrorMeta {
        public String source, parameter, value;
    }

    public static class SmsError {
        public String title, message, code;
        public SmsErrorMeta meta;
    }

    public static class SmsMetadata {
        public int sentSms, notSentSms, numberOfErrors, numberOfData, status;
        public String accountBalance, uniqId;
    }

    public static class SmsApiResponse {
        public List<SmsData> data;
        public List<SmsError> errors;
        public SmsMetadata meta;
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
        String body = "{\"sender\":\"SHOP\",\"message\":\"Spring sale: 20% off today at https://shop.example.com/spring?utm_source=sms\",\"phoneNumbers\":[\"+48111222333\",\"+48111222334\"],\"shortLink\":true}";
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
        SmsApiResponse answer = strictMapper().readValue(response.body(), SmsApiResponse.class);
        System.out.println(response.body());
        for (SmsData sms : answer.data) {
            System.err.printf("%s: %s (%d) since %d, id %s%n",
                sms.phoneNumber, sms.statusName, sms.status, sms.statusTime, sms.id);
        }
        for (SmsError error : answer.errors) {
            System.err.printf("refused: %s: %s%n", error.code, error.message);
        }
    }
}
