#!/bin/sh
# Send one SMS
curl -sS -X POST "${SMSDISPATCH_URL:-http://127.0.0.1:8080}/v2.1/sms" \
  -H 'Content-Type: application/json' \
  -H "Application-Key: ${SMSDISPATCH_APP_KEY:-YOUR_APPLICATION_KEY}" \
  -H "Authorization: ${SMSDISPATCH_AUTHORIZATION:-YOUR_AUTHORIZATION}" \
  -d '{"sender":"ACME","message":"Your code is 123456","phoneNumbers":["+48111222333"]}'
