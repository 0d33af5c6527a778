// Verify a webhook signature (Standard Webhooks; Swift 5.5+ with CryptoKit, or swift-crypto on Linux)
import Foundation
#if canImport(CryptoKit)
import CryptoKit
#else
import Crypto
#endif

func verifyWebhook(secret: String, id: String, timestamp: String, body: String,
                   signatures: String) -> Bool {
    guard let ts = Double(timestamp), abs(Date().timeIntervalSince1970 - ts) <= 300 else {
        return false // too old or from the future: a replay
    }
    let raw = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
    guard let keyData = Data(base64Encoded: raw) else { return false }
    let key = SymmetricKey(data: keyData)
    let signed = Data("\(id).\(timestamp).\(body)".utf8)
    for entry in signatures.split(separator: " ") where entry.hasPrefix("v1,") {
        if let given = Data(base64Encoded: String(entry.dropFirst(3))),
           HMAC<SHA256>.isValidAuthenticationCode(given, authenticating: signed, using: key) {
            return true
        }
    }
    return false
}

let env = ProcessInfo.processInfo.environment
print(verifyWebhook(secret: env["WEBHOOK_SECRET"] ?? "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: env["WEBHOOK_ID"] ?? "",
                    timestamp: env["WEBHOOK_TIMESTAMP"] ?? "", body: env["WEBHOOK_BODY"] ?? "",
                    signatures: env["WEBHOOK_SIGNATURE"] ?? ""))
