"""Clients written for the original v2.1 API work unchanged (issue 16).

The exact requests third-party clients of the original send, byte for byte over a socket to
the real API process: their field sets, header spellings, ``null`` for every optional field
(Jackson and System.Text.Json write them), ``\\u002B``-escaped numbers (System.Text.Json's
default escaping), PHP's ``\\/``, the ``orderBy`` values they list with, the ``OPTIONS`` call
for sender names. Every answer is parsed with models as strict as the vendor's published C#
model (``long StatusTime``, ``int SmsPrice``, ``string? AccountBalance``…): no coercion, so a
string where the model has an integer, or a null where it has a non-nullable one, fails.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError

from tests.support.stack import ApiClient, Stack, running_stack

pytestmark = pytest.mark.integration


class Strict(BaseModel):
    """As System.Text.Json reads the vendor's model: exact JSON types, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class SmsData(Strict):
    """The vendor's ``SmsData``."""

    sender: StrictStr | None = None
    phoneNumber: StrictStr | None = None
    externalId: StrictStr | None = None
    status: StrictInt = 0
    statusTime: StrictInt = 0
    createTime: StrictInt = 0
    smsPrice: StrictInt = 0
    currency: StrictInt = 0
    numberOfParts: StrictInt = 0


class SmsErrorMeta(Strict):
    """The vendor's ``SmsErrorMeta``: three strings."""

    source: StrictStr | None = None
    parameter: StrictStr | None = None
    value: StrictStr | None = None


class SmsError(Strict):
    """The vendor's ``SmsError``."""

    title: StrictStr | None = None
    message: StrictStr | None = None
    code: StrictStr | None = None
    meta: SmsErrorMeta | None = None


class SmsMetadata(Strict):
    """The vendor's ``SmsMetadata``."""

    sentSms: StrictInt = 0
    notSentSms: StrictInt = 0
    accountBalance: StrictStr | None = None
    numberOfErrors: StrictInt = 0
    numberOfData: StrictInt = 0
    status: StrictInt = 0
    uniqId: StrictStr | None = None


class SmsApiResponse(Strict):
    """The vendor's ``SmsApiResponse``."""

    data: list[SmsData] | None = None
    errors: list[SmsError] | None = None
    meta: SmsMetadata | None = None


class SenderItem(Strict):
    """Our sender-name element, typed as documented."""

    sender: StrictStr
    kind: StrictStr
    state: StrictStr
    reason: StrictStr | None
    createTime: StrictInt
    statusTime: StrictInt


class SendersResponse(Strict):
    """``/v2.1/sms/senders`` typed as documented."""

    data: list[SenderItem]
    errors: list[SmsError]
    meta: SmsMetadata


class Network(Strict):
    mcc: StrictStr | None
    mnc: StrictStr | None
    name: StrictStr | None


class LookupItem(Strict):
    """Our look-up element, typed as documented."""

    phoneNumber: StrictStr
    valid: StrictBool
    country: StrictStr | None
    network: Network | None
    ported: StrictBool | None
    reachable: StrictBool | None
    cached: StrictBool
    lookupTime: StrictInt


class LookupResponse(Strict):
    data: list[LookupItem]
    errors: list[SmsError]
    meta: SmsMetadata


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(base: str, head: str, body: bytes = b"") -> Answer:
    """Send ``head`` (request line and headers, ``\\n``-separated, as the client writes them)
    and ``body`` byte for byte; the parsed answer."""
    url = urlsplit(base)
    lines = [line for line in head.strip().splitlines() if line.strip()]
    lines.insert(1, f"Host: {url.netloc}")
    if body or lines[0].startswith(("POST", "PUT")):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(wire)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    top, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, payload)


def send_answer(a: Answer, status: int = 200) -> SmsApiResponse:
    assert a.status == status, a.body
    parsed = SmsApiResponse.model_validate_json(a.body)
    assert parsed.meta is not None and parsed.meta.status == status
    return parsed


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # The requests carry webhook URLs; this machine resolves no public names, so they point at
    # loopback (nothing is delivered here: no workers run).
    with running_stack(workers={}, scheduler=False, webhook_allow_private=1) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> ApiClient:
    return stack.account("v21-clients")


def keys(client: ApiClient) -> tuple[str, str]:
    return client.keys["Application-Key"], client.keys["Authorization"]


# -- Sending, as each client writes it -----------------------------------------------------------


def test_the_vendors_dotnet_sample_system_text_json(client: ApiClient) -> None:
    """``JsonSerializer.Serialize`` of an anonymous object, camelCase, indented: every optional
    field ``null``, the ``+`` escaped as ``\\u002B``; headers added to DefaultRequestHeaders."""
    app_key, auth = keys(client)
    body = (
        b'{\n  "sender": "ACME",\n  "message": "Your code is 123456",\n  "phoneNumbers": [\n'
        b'    "\\u002B48500100200"\n  ],\n  "validity": null,\n  "scheduleTime": null,\n'
        b'  "type": null,\n  "shortLink": null,\n  "webhookUrl": null,\n  "externalId": null\n}'
    )
    a = raw_request(
        client.base,
        f"""POST /v2.1/sms HTTP/1.1
Authorization: {auth}
Application-Key: {app_key}
Content-Type: application/json; charset=utf-8""",
        body,
    )
    parsed = send_answer(a)
    (sms,) = parsed.data or []
    assert (sms.sender, sms.phoneNumber, sms.status, sms.numberOfParts) == (
        "ACME",
        "+48500100200",
        1,
        1,
    )
    assert abs(sms.createTime - time.time()) < 60 and sms.statusTime == sms.createTime
    assert (sms.smsPrice, sms.currency) == (0, 0)
    assert sms.externalId  # generated: clients use data[0].externalId as the message id
    meta = parsed.meta
    assert meta is not None
    assert (meta.sentSms, meta.notSentSms, meta.accountBalance) == (1, 0, None)
    assert (meta.numberOfData, meta.numberOfErrors) == (1, 0) and meta.uniqId


def test_dotnet_escapes_every_html_sensitive_character(client: ApiClient) -> None:
    """System.Text.Json's default encoder escapes ``& < > ' +`` and non-ASCII letters."""
    app_key, auth = keys(client)
    body = (
        b'{"sender":"B\\u0026B","message":"Za\\u017C\\u00F3\\u0142\\u0107 \\u003C3 it\\u0027s'
        b' \\u002B10%","phoneNumbers":["\\u002B48500100201","\\u002B48500100202"],'
        b'"validity":60,"scheduleTime":null,"type":0,"shortLink":false,'
        b'"webhookUrl":"http://127.0.0.1:8080/hook?a=1\\u0026b=2","externalId":"order-\\u002B1"}'
    )
    a = raw_request(
        client.base,
        f"""POST /v2.1/sms HTTP/1.1
Authorization: {auth}
Application-Key: {app_key}
Content-Type: application/json; charset=utf-8""",
        body,
    )
    parsed = send_answer(a)
    data = parsed.data or []
    assert [d.phoneNumber for d in data] == ["+48500100201", "+48500100202"]
    assert {d.sender for d in data} == {"B&B"} and {d.externalId for d in data} == {"order-+1"}
    view = client.get(a.json()["data"][0]["id"])
    assert view["encoding"] == "ucs2"


def test_jackson_pojo_with_nulls_and_a_long_schedule_time(client: ApiClient) -> None:
    """Jackson writes every POJO field, ``null`` included; ``Long scheduleTime`` is a number."""
    app_key, auth = keys(client)
    at = int(time.time()) + 3600
    body = json.dumps(
        {
            "sender": "ACME",
            "message": "Later",
            "phoneNumbers": ["+48500100203"],
            "validity": None,
            "scheduleTime": at,
            "type": None,
            "shortLink": None,
            "webhookUrl": None,
            "externalId": "java-1",
        },
        separators=(",", ":"),
    ).encode()
    a = raw_request(
        client.base,
        f"""POST /v2.1/sms HTTP/1.1
Accept: text/plain, application/json, application/*+json, */*
Content-Type: application/json
Authorization: {auth}
Application-Key: {app_key}
User-Agent: Java-http-client/17.0.9""",
        body,
    )
    (sms,) = send_answer(a).data or []
    assert sms.externalId == "java-1"
    assert a.json()["data"][0]["scheduleTime"] == at  # an integer, like the request's


def test_php_json_encode_and_curl_headers(client: ApiClient) -> None:
    """``json_encode`` escapes ``/`` and non-ASCII; curl sends the header lines as given."""
    app_key, auth = keys(client)
    body = (
        b'{"sender":"SHOP","message":"Zni\\u017cka -20% na https:\\/\\/shop.example\\/sale",'
        b'"phoneNumbers":["+48500100204"],"webhookUrl":"http:\\/\\/127.0.0.1:8080\\/sms\\/dlr"}'
    )
    a = raw_request(
        client.base,
        f"""POST /v2.1/sms HTTP/1.1
Accept: */*
Authorization: {auth}
Application-Key: {app_key}
Content-Type: application/json""",
        body,
    )
    (sms,) = send_answer(a).data or []
    assert sms.sender == "SHOP"


@pytest.mark.parametrize(
    ("app_header", "auth_header"),
    [
        ("application-key", "authorization"),  # HTTP/2 clients, curl users, Go's http2
        ("APPLICATION-KEY", "AUTHORIZATION"),
        ("Application-key", "Authorization"),  # .NET's TryAddWithoutValidation as typed
    ],
)
def test_header_spellings(client: ApiClient, app_header: str, auth_header: str) -> None:
    app_key, auth = keys(client)
    body = b'{"sender":"ACME","message":"hi","phoneNumbers":["+48500100205"]}'
    a = raw_request(
        client.base,
        f"""POST /v2.1/sms HTTP/1.1
{app_header}: {app_key}
{auth_header}: {auth}
content-type: application/json""",
        body,
    )
    send_answer(a)


def test_the_vendors_python_and_node_samples_drop_nulls(client: ApiClient) -> None:
    app_key, auth = keys(client)
    for extra in ("User-Agent: python-requests/2.31.0", "User-Agent: axios/1.6.7"):
        body = json.dumps(
            {"sender": "ACME", "message": "hi", "phoneNumbers": ["+48500100206"], "validity": 5}
        ).encode()
        a = raw_request(
            client.base,
            f"""POST /v2.1/sms HTTP/1.1
{extra}
Accept: application/json, text/plain, */*
Content-Type: application/json
Authorization: {auth}
Application-Key: {app_key}""",
            body,
        )
        send_answer(a)


# -- Refusals parse with the same model ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code", "value"),
    [
        ({"validity": 5000}, "invalid_validity", "5000"),
        ({"shortLink": True}, "short_link_unsupported", "true"),
        ({"type": 7}, "invalid_type", "7"),
        ({"phoneNumbers": ["+48 12"]}, "invalid_phone_number", "+48 12"),
    ],
)
def test_errors_parse_with_string_values(
    client: ApiClient, fields: dict[str, Any], code: str, value: str
) -> None:
    app_key, auth = keys(client)
    body = json.dumps(
        {"sender": "ACME", "message": "hi", "phoneNumbers": ["+48500100207"], **fields}
    ).encode()
    a = raw_request(
        client.base,
        f"""POST /v2.1/sms HTTP/1.1
Authorization: {auth}
Application-Key: {app_key}
Content-Type: application/json""",
        body,
    )
    parsed = send_answer(a, 400)
    first = (parsed.errors or [])[0]
    assert first.code == code and first.meta is not None and first.meta.value == value
    assert first.title and first.message
    assert parsed.meta is not None and parsed.meta.sentSms == 0 and parsed.meta.notSentSms == 1


def test_a_bad_key_is_a_401_the_model_reads(client: ApiClient) -> None:
    a = raw_request(
        client.base,
        """POST /v2.1/sms HTTP/1.1
Authorization: nope
Application-Key: nope
Content-Type: application/json""",
        b'{"sender":"ACME","message":"hi","phoneNumbers":["+48500100208"]}',
    )
    parsed = send_answer(a, 401)
    assert (parsed.errors or [])[0].code == "unauthorized"


# -- Listing with the orderings clients send ------------------------------------------------------


ORDERINGS = [
    ("id", "ASC"),
    ("id", "desc"),
    ("createTime", "DESC"),
    ("createtime", "asc"),
    ("externalId", "ASC"),
    ("status", "DESC"),
    ("statusTime", "Asc"),
    ("phoneNumber", "ASC"),
    ("sender", "DESC"),
]


@pytest.mark.parametrize(("order_by", "direction"), ORDERINGS)
@pytest.mark.parametrize("path", ["/v2.1/sms", "/v2.1/sms/statuses"])
def test_every_ordering_on_both_listings(
    client: ApiClient, path: str, order_by: str, direction: str
) -> None:
    app_key, auth = keys(client)
    a = raw_request(
        client.base,
        f"""GET {path}?orderBy={order_by}&orderDirection={direction}&limit=1000&offset=0 HTTP/1.1
Authorization: {auth}
Application-Key: {app_key}
Accept: application/json""",
    )
    parsed = send_answer(a)
    raw = a.json()["data"]
    assert len(parsed.data or []) == len(raw) > 3
    field = {"id": "id", "createtime": "createTime"}.get(order_by, order_by)
    keys_seen = [row[field] for row in raw]
    descending = direction.upper() == "DESC"
    assert keys_seen == sorted(keys_seen, reverse=descending), keys_seen


def test_a_filter_with_an_unencoded_plus(client: ApiClient) -> None:
    """``?phoneNumber=+48…`` concatenated into the URL: the ``+`` arrives as a space."""
    app_key, auth = keys(client)
    a = raw_request(
        client.base,
        f"""GET /v2.1/sms?phoneNumber=+48500100204&orderBy=id HTTP/1.1
Authorization: {auth}
Application-Key: {app_key}""",
    )
    (sms,) = send_answer(a).data or []
    assert sms.phoneNumber == "+48500100204"


def test_no_results_is_a_404_the_model_reads(client: ApiClient) -> None:
    app_key, auth = keys(client)
    a = raw_request(
        client.base,
        f"""GET /v2.1/sms/statuses?externalId=nothing-like-this&orderBy=id HTTP/1.1
Authorization: {auth}
Application-Key: {app_key}""",
    )
    assert (send_answer(a, 404).errors or [])[0].code == "no_results"


# -- Sender names and number look-up ------------------------------------------------------------


def test_the_options_call_for_sender_names(stack: Stack) -> None:
    fresh = stack.account("v21-senders", sender_policy="registered")
    fresh.http.post("/v2.1/sms/senders", json={"sender": "ACME"})
    app_key, auth = keys(fresh)
    a = raw_request(
        fresh.base,
        f"""OPTIONS /v2.1/sms/senders HTTP/1.1
Authorization: {auth}
Application-Key: {app_key}
Accept: application/json""",
    )
    assert a.status == 200, a.body
    parsed = SendersResponse.model_validate_json(a.body)
    assert [(d.sender, d.state) for d in parsed.data] == [("ACME", "pending")]
    assert "OPTIONS" in a.headers["allow"]


def test_a_number_lookup(client: ApiClient) -> None:
    app_key, auth = keys(client)
    a = raw_request(
        client.base,
        f"""POST /v2.1/sms/hlr HTTP/1.1
Authorization: {auth}
Application-Key: {app_key}
Content-Type: application/json; charset=utf-8""",
        b'{"phone":"\\u002B48500100200"}',
    )
    assert a.status == 200, a.body
    (found,) = LookupResponse.model_validate_json(a.body).data
    assert (found.valid, found.country, found.network) == (
        True,
        "PL",
        Network(mcc="260", mnc="01", name="Simulated PL 01"),
    )


# -- The models are as strict as the vendor's ------------------------------------------------


def test_the_models_refuse_what_we_answered_before() -> None:
    """The answer of the previous release (ISO times, an integer in meta.value) fails these
    models, as it failed the vendor's C# client: the suite would catch a regression."""
    old = {
        "data": [{"sender": "ACME", "status": 1, "statusTime": "2026-11-26T12:00:00.000Z"}],
        "errors": [],
        "meta": {"status": 200, "uniqId": "x"},
    }
    with pytest.raises(ValidationError, match="statusTime"):
        SmsApiResponse.model_validate(old)
    error = {"errors": [{"code": "invalid_validity", "meta": {"value": 5000}}]}
    with pytest.raises(ValidationError, match="value"):
        SmsApiResponse.model_validate(error)
    with pytest.raises(ValidationError, match="smsPrice"):
        SmsApiResponse.model_validate({"data": [{"smsPrice": None}]})
    with pytest.raises(ValidationError, match="accountBalance"):
        SmsApiResponse.model_validate({"meta": {"accountBalance": 12.5}})
