# Verify a webhook signature (Standard Webhooks; Ruby 2.7+, standard library only)
require "base64"
require "openssl"

def verify_webhook(secret, id, timestamp, body, signatures)
  return false if (Time.now.to_i - timestamp.to_i).abs > 300 # a replay

  key = Base64.strict_decode64(secret.delete_prefix("whsec_"))
  expected = Base64.strict_encode64(OpenSSL::HMAC.digest("SHA256", key, "#{id}.#{timestamp}.#{body}"))
  signatures.split.any? do |entry|
    version, sig = entry.split(",", 2)
    version == "v1" && sig.bytesize == expected.bytesize &&
      OpenSSL.fixed_length_secure_compare(sig, expected)
  end
end

puts verify_webhook(ENV["WEBHOOK_SECRET"] || "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ENV["WEBHOOK_ID"],
                    ENV["WEBHOOK_TIMESTAMP"], ENV["WEBHOOK_BODY"], ENV["WEBHOOK_SIGNATURE"])
