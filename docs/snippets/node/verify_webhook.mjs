// Verify a webhook signature (Standard Webhooks; Node.js 18+, no packages)
import { createHmac, timingSafeEqual } from "node:crypto";

export function verifyWebhook(secret, id, timestamp, body, signatures) {
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) {
    return false; // too old or from the future: a replay
  }
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest();
  return signatures.split(/\s+/).some((entry) => {
    if (!entry.startsWith("v1,")) return false;
    const given = Buffer.from(entry.slice(3), "base64");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

const env = process.env;
console.log(verifyWebhook(env.WEBHOOK_SECRET || "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", env.WEBHOOK_ID,
  env.WEBHOOK_TIMESTAMP, env.WEBHOOK_BODY, env.WEBHOOK_SIGNATURE));
