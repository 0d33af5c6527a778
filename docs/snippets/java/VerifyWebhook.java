// Verify a webhook signature (Standard Webhooks; Java 11+; run with `java VerifyWebhook.java`)
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Base64;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class VerifyWebhook {
    static boolean verify(String secret, String id, String ts, String body, String signatures)
            throws Exception {
        if (Math.abs(System.currentTimeMillis() / 1000 - Long.parseLong(ts)) > 300) {
            return false; // too old or from the future: a replay
        }
        byte[] key = Base64.getDecoder().decode(secret.replaceFirst("^whsec_", ""));
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
        byte[] expected = mac.doFinal((id + "." + ts + "." + body).getBytes(StandardCharsets.UTF_8));
        for (String entry : signatures.trim().split("\\s+")) {
            if (entry.startsWith("v1,")) {
                byte[] given = Base64.getDecoder().decode(entry.substring(3));
                if (MessageDigest.isEqual(expected, given)) {
                    return true;
                }
            }
        }
        return false;
    }

    public static void main(String[] args) throws Exception {
        String secret = System.getenv().getOrDefault("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        System.out.println(verify(secret, System.getenv("WEBHOOK_ID"), System.getenv("WEBHOOK_TIMESTAMP"),
            System.getenv("WEBHOOK_BODY"), System.getenv("WEBHOOK_SIGNATURE")));
    }
}
