#!/bin/bash
# Verify a webhook signature: HMAC-SHA256 over "{id}.{timestamp}.{body}" with the base64-decoded secret
# (Standard Webhooks). Needs openssl and base64. Prints true or false.
secret="${WEBHOOK_SECRET:-whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}"
id="${WEBHOOK_ID}"; ts="${WEBHOOK_TIMESTAMP}"; sigs="${WEBHOOK_SIGNATURE}"; body="${WEBHOOK_BODY}"
now=$(date +%s)
if [ $((now - ts)) -gt 300 ] || [ $((ts - now)) -gt 300 ]; then echo false; exit 0; fi
key_hex=$(printf '%s' "${secret#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \n')
expected=$(printf '%s.%s.%s' "$id" "$ts" "$body" \
  | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_hex" -binary | base64)
for s in $sigs; do
  if [ "$s" = "v1,$expected" ]; then echo true; exit 0; fi
done
echo false
