"""Query a message's status (Python 3, standard library only)."""

import os
import urllib.request

URL = os.environ.get("SMSDISPATCH_URL", "http://127.0.0.1:8080")
HEADERS = {
    "Application-Key": os.environ.get("SMSDISPATCH_APP_KEY", "YOUR_APPLICATION_KEY"),
    "Authorization": os.environ.get("SMSDISPATCH_AUTHORIZATION", "YOUR_AUTHORIZATION"),
}
message_id = os.environ.get("SMSDISPATCH_MESSAGE_ID", "MESSAGE_ID")
request = urllib.request.Request(URL + "/v2.1/sms/" + message_id, headers=HEADERS)
with urllib.request.urlopen(request) as response:
    print(response.read().decode())
