// Look a number up (Node.js 18+, no packages)
const url = process.env.SMSDISPATCH_URL || "http://127.0.0.1:8080";
const body = {
  "phone": "+48500100200",
};
const response = await fetch(url + "/v2.1/sms/hlr", {
  method: "POST",
  headers: {
    "Content-Type": "application/json",
    "Application-Key": process.env.SMSDISPATCH_APP_KEY || "YOUR_APPLICATION_KEY",
    "Authorization": process.env.SMSDISPATCH_AUTHORIZATION || "YOUR_AUTHORIZATION",
  },
  body: JSON.stringify(body),
});
console.log(await response.text());
