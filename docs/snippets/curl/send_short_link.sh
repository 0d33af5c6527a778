#!/bin/sh
# Send with tracked short links
curl -sS -X POST "${SMSDISPATCH_URL:-http://127.0.0.1:8080}/v2.1/sms" \
  -H 'Content-Type: application/json' \
  -H "Application-Key: ${SMSDISPATCH_APP_KEY:-YOUR_APPLICATION_KEY}" \
  -H "Authorization: ${SMSDISPATCH_AUTHORIZATION:-YOUR_AUTHORIZATION}" \
  -d '{"sender":"SHOP","message":"Spring sale: 20% off today at https://shop.example.com/spring?utm_source=sms","phoneNumbers":["+48111222333","+48111222334"],"shortLink":true}'
