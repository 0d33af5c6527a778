"""Send with tracked short links (Python 3, standard library only)."""

import json
import os
import urllib.request

URL = os.environ.get("SMSDISPATCH_URL", "http://127.0.0.1:8080")
HEADERS = {
    "Content-Type": "application/json",
    "Application-Key": os.environ.get("SMSDISPATCH_APP_KEY", "YOUR_APPLICATION_KEY"),
    "Authorization": os.environ.get("SMSDISPATCH_AUTHORIZATION", "YOUR_AUTHORIZATION"),
}
body = {
    "sender": "SHOP",
    "message": "Spring sale: 20% off today at https://shop.example.com/spring?utm_source=sms",
    "phoneNumbers": ["+48111222333", "+48111222334"],
    "shortLink": True,
}
request = urllib.request.Request(
    URL + "/v2.1/sms", data=json.dumps(body).encode(), headers=HEADERS, method="POST"
)
with urllib.request.urlopen(request) as response:
    print(response.read().decode())
