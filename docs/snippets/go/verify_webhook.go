// Verify a webhook signature (Standard Webhooks; Go, standard library only; `go run verify_webhook.go`)
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func verifyWebhook(secret, id, timestamp, body, signatures string) bool {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	if age := time.Now().Unix() - ts; age > 300 || age < -300 {
		return false // too old or from the future: a replay
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "." + body))
	expected := mac.Sum(nil)
	for _, entry := range strings.Fields(signatures) {
		if strings.HasPrefix(entry, "v1,") {
			given, err := base64.StdEncoding.DecodeString(entry[3:])
			if err == nil && hmac.Equal(given, expected) {
				return true
			}
		}
	}
	return false
}

func main() {
	secret := os.Getenv("WEBHOOK_SECRET")
	if secret == "" {
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	}
	fmt.Println(verifyWebhook(secret, os.Getenv("WEBHOOK_ID"), os.Getenv("WEBHOOK_TIMESTAMP"),
		os.Getenv("WEBHOOK_BODY"), os.Getenv("WEBHOOK_SIGNATURE")))
}
