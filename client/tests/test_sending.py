"""Sending and reading one message: retries with one Idempotency-Key, errors, options."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fakeapi import OK, Script, envelope, message, refused, sync_client
from smsdispatch_client import (
    AsyncSmsClient,
    CredentialsError,
    SmsApiError,
    SmsClient,
    SmsError,
    SmsTransportError,
    WebhookVerificationError,
    __version__,
    credentials_from_env,
)


def make(script: Script, attempts: int = 4) -> SmsClient:
    return sync_client(script, attempts)


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
    with pytest.raises(CredentialsError) as caught:
        credentials_from_env({})
    assert caught.value.code == "no_credentials"


@pytest.mark.parametrize("content", [None, "not json", '{"Authorization": "A"}', "[1]"])
def test_a_bad_keys_file_is_a_credentials_error_naming_it(
    tmp_path: Any, content: str | None
) -> None:
    keys = tmp_path / "keys.json"
    if content is not None:
        keys.write_text(content)
    with pytest.raises(CredentialsError, match=r"keys\.json"):
        credentials_from_env({}, keys_file=str(keys))


def test_one_exception_tree() -> None:
    for cls in (SmsApiError, SmsTransportError, CredentialsError, WebhookVerificationError):
        assert issubclass(cls, SmsError)
    assert not issubclass(SmsTransportError, SmsApiError), "no answer is not an API refusal"
    err = SmsTransportError("ConnectError: refused")
    assert (err.code, err.status, err.parameter) == ("unreachable", 0, None)


def test_a_message_is_read_with_its_times_and_codes() -> None:
    body = message("m7", status="delivered")
    body["error"] = {"code": "E1", "description": "absent", "permanent": False}
    script = Script(httpx.Response(200, json=envelope([{**body, "events": [{"event": "x"}]}])))
    got = make(script).get_message("m7")
    assert (got.id, got.status, got.status_code, got.is_final) == ("m7", "delivered", 21, True)
    assert got.created_at is not None and got.created_at.utcoffset() is not None
    assert got.created_at.isoformat() == "2026-01-02T03:04:05.678000+00:00"
    assert (got.error_code, got.error_description) == ("E1", "absent")
    assert got.raw["events"] == [{"event": "x"}] and got.sent_at is None
    assert script.requests[0].url.path == "/v2.1/sms/m7"


def test_a_server_with_only_the_v21_integer_times_is_read_too() -> None:
    body = message("m8")
    for iso in ("createdAt", "statusAt"):
        del body[iso]
    got = make(Script(httpx.Response(200, json=envelope([body])))).get_message("m8")
    assert got.created_at is not None
    assert got.created_at.isoformat() == "2026-01-02T03:04:05+00:00"
    assert got.status_at == got.created_at


def test_a_message_id_cannot_name_another_path() -> None:
    script = Script(httpx.Response(200, json=OK))
    with pytest.raises(SmsApiError) as caught:
        make(script).get_message("statuses/../x")
    assert script.requests[0].url.raw_path == b"/v2.1/sms/statuses%2F..%2Fx"
    assert (caught.value.status, caught.value.code) == (404, "not_found"), "m1 was not asked for"
    with pytest.raises(ValueError, match="message_id"):
        make(Script()).get_status("")


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>proxy</html>"),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, json={"data": [{"no": "id"}]}),
    ],
)
def test_an_answer_of_the_wrong_shape_is_an_api_error(answer: httpx.Response) -> None:
    with pytest.raises(SmsApiError) as caught:
        make(Script(answer)).get_message("m1")
    assert caught.value.code == "invalid_response"


def test_an_error_without_the_envelope_still_has_its_status(slept: list[float]) -> None:
    with pytest.raises(SmsApiError) as caught:
        make(Script(httpx.Response(418, text="teapot"))).get_status("m1")
    assert (caught.value.status, caught.value.code) == (418, "http_error")
    assert str(caught.value).startswith("418 http_error")


def test_requests_carry_the_keys_and_a_user_agent() -> None:
    script = Script(httpx.Response(200, json=OK))
    make(script).get_status("m1")
    headers = script.requests[0].headers
    assert (headers["Application-Key"], headers["Authorization"]) == ("k", "a")
    assert headers["User-Agent"].startswith(f"smsdispatch-client/{__version__} ")


def test_from_env_builds_either_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSDISPATCH_APP_KEY", "K")
    monkeypatch.setenv("SMSDISPATCH_AUTHORIZATION", "A")
    monkeypatch.setenv("SMSDISPATCH_URL", "http://from.env")
    script = Script(httpx.Response(200, json=OK))
    with SmsClient.from_env(transport=httpx.MockTransport(script)) as sms:
        sms.get_status("m1")
    request = script.requests[0]
    assert (request.url.host, request.headers["Application-Key"]) == ("from.env", "K")
    assert isinstance(AsyncSmsClient.from_env(), AsyncSmsClient)
