#!/bin/sh
# Look a number up
curl -sS -X POST "${SMSDISPATCH_URL:-http://127.0.0.1:8080}/v2.1/sms/hlr" \
  -H 'Content-Type: application/json' \
  -H "Application-Key: ${SMSDISPATCH_APP_KEY:-YOUR_APPLICATION_KEY}" \
  -H "Authorization: ${SMSDISPATCH_AUTHORIZATION:-YOUR_AUTHORIZATION}" \
  -d '{"phone":"+48500100200"}'
