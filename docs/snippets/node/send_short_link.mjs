// Send with tracked short links (Node.js 18+, no packages)
const url = process.env.SMSDISPATCH_URL || "http://127.0.0.1:8080";
const body = {
  "sender": "SHOP",
  "message": "Spring sale: 20% off today at https://shop.example.com/spring?utm_source=sms",
  "phoneNumbers": ["+48111222333", "+48111222334"],
  "shortLink": true,
};
const response = await fetch(url + "/v2.1/sms", {
  method: "POST",
  headers: {
    "Content-Type": "application/json",
    "Application-Key": process.env.SMSDISPATCH_APP_KEY || "YOUR_APPLICATION_KEY",
    "Authorization": process.env.SMSDISPATCH_AUTHORIZATION || "YOUR_AUTHORIZATION",
  },
  body: JSON.stringify(body),
});
console.log(await response.text());
