// Send to many recipients (Go, standard library only; `go run send_many.go`)
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func main() {
	url := env("SMSDISPATCH_URL", "http://127.0.0.1:8080")
	body := `{"sender":"SHOP","message":"Spring sale: 20% off today","phoneNumbers":["+48111222333","+48111222334","+48111222335"]}`
	req, err := http.NewRequest("POST", url+"/v2.1/sms", strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Application-Key", env("SMSDISPATCH_APP_KEY", "YOUR_APPLICATION_KEY"))
	req.Header.Set("Authorization", env("SMSDISPATCH_AUTHORIZATION", "YOUR_AUTHORIZATION"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	fmt.Println(string(answer))
}
