// Query a message's status (Go, standard library only; `go run status.go`)
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
)

// The answer as the original API's model types it: a string where it has an integer fails
// to decode. Id and StatusName are smsdispatch's own fields.
type SmsData struct {
	Id            string `json:"id"`
	Sender        string `json:"sender"`
	PhoneNumber   string `json:"phoneNumber"`
	ExternalId    string `json:"externalId"`
	Status        int    `json:"status"`
	StatusName    string `json:"statusName"`
	StatusTime    int64  `json:"statusTime"`
	CreateTime    int64  `json:"createTime"`
	SmsPrice      int    `json:"smsPrice"`
	Currency      int    `json:"currency"`
	NumberOfParts int    `json:"numberOfParts"`
}

type SmsApiResponse struct {
	Data []SmsData `json:"data"`
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
	raw, _ := io.ReadAll(resp.Body)
	var answer SmsApiResponse
	if err := json.Unmarshal(raw, &answer); err != nil {
		panic(err)
	}
	fmt.Println(string(raw))
	for _, sms := range answer.Data {
		fmt.Fprintf(os.Stderr, "%s: %s (%d) since %d\n",
			sms.PhoneNumber, sms.StatusName, sms.Status, sms.StatusTime)
	}
}
