"""The HTTP client's retry and error rules, on httpx's MockTransport (no sleeping)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from dispatcher import client as client_module
from dispatcher.client import (
    RetryPolicy,
    SmsApiError,
    SmsClient,
    SmsTransportError,
    credentials_from_env,
)

OK = {
    "data": [
        {
            "id": "m1",
            "externalId": "e1",
            "phoneNumber": "+48111222333",
            "statusName": "queued",
            "isFinal": False,
            "numberOfParts": 1,
            "encoding": "gsm7",
            "lane": "bulk",
        }
    ],
    "errors": [],
    "meta": {"status": 200, "uniqId": "r1"},
}


def refused(status: int, code: str, parameter: str | None = None) -> httpx.Response:
    meta = {"parameter": parameter} if parameter else {}
    body = {"data": [], "errors": [{"code": code, "message": code, "meta": meta}], "meta": {}}
    return httpx.Response(status, json=body)


class Script:
    """Answers in order; records each request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", delays.append)
    return delays


def make(script: Script, attempts: int = 4) -> SmsClient:
    return SmsClient(
        "k",
        "a",
        "http://api.test",
        retry=RetryPolicy(attempts=attempts, base=0.5, max_delay=8),
        transport=httpx.MockTransport(script),
    )


def test_retries_5xx_and_connection_errors_with_one_key(slept: list[float]) -> None:
    script = Script(
        httpx.Response(502),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=OK),
    )
    result = make(script).send_sms("+48111222333", "hi", sender="ACME")
    assert result.ids == ["m1"] and result.messages[0].lane == "bulk"
    keys = {r.headers["Idempotency-Key"] for r in script.requests}
    assert keys == {result.idempotency_key} and len(script.requests) == 3
    assert len(slept) == 2 and 0.25 <= slept[0] <= 0.75 and 0.5 <= slept[1] <= 1.5


def test_retry_after_is_honoured_on_429_and_503(slept: list[float]) -> None:
    script = Script(
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(503, headers={"Retry-After": "7"}),
        httpx.Response(200, json=OK),
    )
    make(script).send_sms("+48111222333", "hi", sender="ACME", idempotency_key="given")
    assert slept == [3.0, 7.0]
    assert [r.headers["Idempotency-Key"] for r in script.requests] == ["given"] * 3


def test_only_the_in_flight_409_is_retried(slept: list[float]) -> None:
    script = Script(refused(409, "idempotency_key_in_flight"), httpx.Response(200, json=OK))
    assert make(script).send_sms("+48111222333", "hi", sender="ACME").ids == ["m1"]
    with pytest.raises(SmsApiError) as caught:
        make(Script(refused(422, "idempotency_key_reused", "Idempotency-Key"))).send_sms(
            "+48111222333", "hi", sender="ACME"
        )
    assert (caught.value.status, caught.value.parameter) == (422, "Idempotency-Key")


def test_4xx_is_not_retried_and_names_the_field(slept: list[float]) -> None:
    script = Script(refused(400, "invalid_sender", "sender"))
    with pytest.raises(SmsApiError) as caught:
        make(script).send_sms("+48111222333", "hi", sender="?")
    assert (caught.value.code, caught.value.parameter, caught.value.status) == (
        "invalid_sender",
        "sender",
        400,
    )
    assert len(script.requests) == 1 and slept == []


def test_gives_up_after_the_last_attempt(slept: list[float]) -> None:
    with pytest.raises(SmsApiError) as caught:
        make(Script(*[httpx.Response(500)] * 3), attempts=3).get_status("m1")
    assert caught.value.status == 500 and len(slept) == 2
    with pytest.raises(SmsTransportError):
        make(Script(*[httpx.ReadTimeout("slow")] * 2), attempts=2).get_status("m1")


def test_more_than_10000_numbers_go_in_several_requests(slept: list[float]) -> None:
    script = Script(httpx.Response(200, json=OK), httpx.Response(200, json=OK))
    numbers = [f"+4860{i:07d}" for i in range(10_001)]
    result = make(script).send_bulk(numbers, "hi", sender="ACME", idempotency_key="k")
    sizes = [len(json.loads(r.content)["phoneNumbers"]) for r in script.requests]
    assert sizes == [10_000, 1]
    assert [r.headers["Idempotency-Key"] for r in script.requests] == ["k-0", "k-1"]
    assert len(result.messages) == 2


def test_options_map_to_the_api_fields() -> None:
    script = Script(httpx.Response(200, json=OK))
    make(script).send_sms(
        ["+48111222333"],
        "hi",
        sender="ACME",
        priority=True,
        validity=10,
        external_id="o-1",
        campaign="spring",
    )
    body: dict[str, Any] = json.loads(script.requests[0].content)
    assert body == {
        "sender": "ACME",
        "message": "hi",
        "phoneNumbers": ["+48111222333"],
        "priority": True,
        "validity": 10,
        "externalId": "o-1",
    }
    assert script.requests[0].headers["Smsdispatch-Campaign"] == "spring"
    with pytest.raises(TypeError):
        make(Script()).send_sms("+48111222333", "hi", sender="ACME", colour="red")


def test_credentials_from_env_or_keys_file(tmp_path: Any) -> None:
    env = {"SMSDISPATCH_APP_KEY": "k", "SMSDISPATCH_AUTHORIZATION": "a"}
    assert credentials_from_env(env) == ("k", "a", "http://127.0.0.1:8080")
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"Application-Key": "K", "Authorization": "A"}))
    got = credentials_from_env({"SMSDISPATCH_URL": "http://x", "SMSDISPATCH_KEYS_FILE": str(keys)})
    assert got == ("K", "A", "http://x")
    with pytest.raises(SmsApiError) as caught:
        credentials_from_env({})
    assert caught.value.code == "no_credentials"
