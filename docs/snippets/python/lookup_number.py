"""Look a number up (Python 3, standard library only)."""

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
    "phone": "+48500100200",
}
request = urllib.request.Request(
    URL + "/v2.1/sms/hlr", data=json.dumps(body).encode(), headers=HEADERS, method="POST"
)
with urllib.request.urlopen(request) as response:
    print(response.read().decode())
