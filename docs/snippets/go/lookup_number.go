// Look a number up (Go, standard library only; `go run lookup_number.go`)
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// The look-up answer, typed as docs/lookup.md documents it.
type Lookup struct {
	PhoneNumber string  `json:"phoneNumber"`
	Valid       bool    `json:"valid"`
	Country     *string `json:"country"`
	Network     *struct {
		Mcc  *string `json:"mcc"`
		Mnc  *string `json:"mnc"`
		Name *string `json:"name"`
	} `json:"network"`
	Ported     *bool `json:"ported"`
	Reachable  *bool `json:"reachable"`
	Cached     bool  `json:"cached"`
	LookupTime int64 `json:"lookupTime"`
}

type LookupResponse struct {
	Data   []Lookup `json:"data"`
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	Meta struct {
		Status int    `json:"status"`
		UniqId string `json:"uniqId"`
	} `json:"meta"`
}

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func main() {
	url := env("SMSDISPATCH_URL", "http://127.0.0.1:8080")
	body := `{"phone":"+48500100200"}`
	req, err := http.NewRequest("POST", url+"/v2.1/sms/hlr", strings.NewReader(body))
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
	raw, _ := io.ReadAll(resp.Body)
	var answer LookupResponse
	if err := json.Unmarshal(raw, &answer); err != nil {
		panic(err)
	}
	fmt.Println(string(raw))
	for _, n := range answer.Data {
		fmt.Fprintf(os.Stderr, "%s: valid %t, cached %t\n", n.PhoneNumber, n.Valid, n.Cached)
	}
	for _, e := range answer.Errors {
		fmt.Fprintf(os.Stderr, "refused: %s: %s\n", e.Code, e.Message)
	}
}
