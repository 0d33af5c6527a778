// Query a message's status (Go, standard library only; `go run status.go`)
package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
)

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func main() {
	base := env("SMSDISPATCH_URL", "http://127.0.0.1:8080")
	id := env("SMSDISPATCH_MESSAGE_ID", "MESSAGE_ID")
	req, err := http.NewRequest("GET", base+"/v2.1/sms/"+url.PathEscape(id), nil)
	if err != nil {
		panic(err)
	}
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
