#!/bin/sh
# Query a message's status
curl -sS "${SMSDISPATCH_URL:-http://127.0.0.1:8080}/v2.1/sms/${SMSDISPATCH_MESSAGE_ID:-MESSAGE_ID}" \
  -H "Application-Key: ${SMSDISPATCH_APP_KEY:-YOUR_APPLICATION_KEY}" \
  -H "Authorization: ${SMSDISPATCH_AUTHORIZATION:-YOUR_AUTHORIZATION}"
