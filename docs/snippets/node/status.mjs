// Query a message's status (Node.js 18+, no packages)
const url = process.env.SMSDISPATCH_URL || "http://127.0.0.1:8080";
const id = process.env.SMSDISPATCH_MESSAGE_ID || "MESSAGE_ID";
const response = await fetch(url + "/v2.1/sms/" + encodeURIComponent(id), {
  headers: {
    "Application-Key": process.env.SMSDISPATCH_APP_KEY || "YOUR_APPLICATION_KEY",
    "Authorization": process.env.SMSDISPATCH_AUTHORIZATION || "YOUR_AUTHORIZATION",
  },
});
console.log(await response.text());
