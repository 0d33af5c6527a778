// Send with tracked short links (Go, standard library only; `go run send_short_link.go`)
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
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

type SmsError struct {
	Title   string `json:"title"`
	Message string `json:"message"`
	Code    string `json:"code"`
	Meta    struct {
		Source    *string `json:"source"`
		Parameter *string `json:"parameter"`
		Value     *string `json:"value"`
	} `json:"meta"`
}

type SmsApiResponse struct {
	Data   []SmsData  `json:"data"`
	Errors []SmsError `json:"errors"`
	Meta   struct {
		SentSms        int     `json:"sentSms"`
		NotSentSms     int     `json:"notSentSms"`
		AccountBalance *string `json:"accountBalance"`
		NumberOfErrors int     `json:"numberOfErrors"`
		NumberOfData   int     `json:"numberOfData"`
		Status         int     `json:"status"`
		UniqId         string  `json:"uniqId"`
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
	body := `{"sender":"SHOP","message":"Spring sale: 20% off today at https://shop.example.com/spring?utm_source=sms","phoneNumbers":["+48111222333","+48111222334"],"shortLink":true}`
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
	raw, _ := io.ReadAll(resp.Body)
	var answer SmsApiResponse
	if err := json.Unmarshal(raw, &answer); err != nil {
		panic(err)
	}
	fmt.Println(string(raw))
	for _, sms := range answer.Data {
		fmt.Fprintf(os.Stderr, "%s: %s (%d) since %d, id %s\n",
			sms.PhoneNumber, sms.StatusName, sms.Status, sms.StatusTime, sms.Id)
	}
	for _, e := range answer.Errors {
		fmt.Fprintf(os.Stderr, "refused: %s: %s\n", e.Code, e.Message)
	}
}
