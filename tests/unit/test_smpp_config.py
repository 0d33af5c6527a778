"""The ``smpp`` connection type of the connections file: every key read, every wrong value
refused with the file and the key, the password never inline and never listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispatcher.cli.connections import listing
from dispatcher.config import Settings
from dispatcher.routing import ConfigError, load_file

BASE = """
[[connections]]
name = "op"
type = "smpp"
host = "smsc.example.net"
system_id = "smsd"
password_env = "OP_PASSWORD"
tps = 50
destinations = ["PL"]
"""
ENV = {"OP_PASSWORD": "secret12"}


def load(tmp_path: Path, extra: str = "", env: dict[str, str] | None = None) -> object:
    path = tmp_path / "routes.toml"
    path.write_text(BASE + extra)
    return load_file(str(path), Settings(), ENV if env is None else env)


def test_every_key_is_read(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("fromfile\n")
    text = BASE.replace('password_env = "OP_PASSWORD"', 'password_file = "pw"') + (
        'port = 3000\ntls = true\nsystem_type = "VMA"\nbind_mode = "transmitter_receiver"\n'
        "binds = 3\nwindow = 20\npriority_window = 5\nenquire_link_s = 15\nquery_sm = false\n"
        'default_alphabet = "latin1"\nconcat = "sar"\nregistered_delivery = 0\n'
        'dest_ton_npi = [1, 1]\nservice_type = "CMT"\nsend_validity = false\n'
        "source_ton_npi = { alphanumeric = [5, 0], short_code = [3, 0] }\n"
    )
    path = tmp_path / "routes.toml"
    path.write_text(text)
    config = load_file(str(path), Settings(), {})
    (c,) = config.connections
    s = c.smpp
    assert s is not None
    assert (s.host, s.port, s.tls, s.system_id, s.password) == (
        "smsc.example.net",
        3000,
        True,
        "smsd",
        "fromfile",
    )
    assert (s.system_type, s.bind_mode, s.binds, s.window, s.priority_window) == (
        "VMA",
        "transmitter_receiver",
        3,
        20,
        5,
    )
    assert (s.enquire_link_s, s.query_sm, s.default_alphabet, s.concat) == (
        15,
        False,
        "latin1",
        "sar",
    )
    assert (s.registered_delivery, s.service_type, s.send_validity) == (0, "CMT", False)
    assert set(s.source_ton_npi) == {("alphanumeric", 5, 0), ("short_code", 3, 0)}
    assert c.url == "smpps://smsc.example.net:3000"
    assert c.max_in_flight == 60  # every bind's window
    assert c.batch_size == 1


def test_defaults(tmp_path: Path) -> None:
    c = load(tmp_path).connections[0]  # type: ignore[attr-defined]
    s = c.smpp
    assert (s.port, s.tls, s.bind_mode, s.binds, s.window, s.priority_window) == (
        2775,
        False,
        "transceiver",
        1,
        10,
        2,
    )
    assert (s.concat, s.default_alphabet, s.registered_delivery) == ("udh8", "gsm7", 1)


def test_the_listing_shows_it_without_the_password(tmp_path: Path) -> None:
    shown = listing(load(tmp_path))  # type: ignore[arg-type]
    text = json.dumps(shown)
    assert "secret12" not in text
    smpp = shown["connections"][0]["smpp"]
    assert smpp["password"] is True
    assert smpp["host"] == "smsc.example.net" and smpp["binds"] == 1


BAD = [
    ('password = "inline"', "connections[0].password: never inline"),
    ("window = 0", "connections[0].window: must be a positive integer"),
    ("binds = -1", "connections[0].binds: must be a positive integer"),
    ("port = 70000", "connections[0].port: must be a TCP port"),
    ('bind_mode = "both"', "connections[0].bind_mode: must be transceiver or"),
    ('bind_mode = "transmitter_receiver"', "connections[0].binds: transmitter_receiver needs"),
    ("window = 4\npriority_window = 4", "connections[0].priority_window: must be an integer"),
    ('concat = "udh"', "connections[0].concat: must be one of udh8"),
    ('default_alphabet = "ascii"', "connections[0].default_alphabet: must be gsm7 or latin1"),
    ("registered_delivery = 99", "connections[0].registered_delivery: must be an integer 0-31"),
    ("dest_ton_npi = [1]", "connections[0].dest_ton_npi: must be [ton, npi]"),
    ("source_ton_npi = { shortcode = [3, 0] }", "connections[0].source_ton_npi.shortcode: must be"),
    ("source_ton_npi = { alphanumeric = [5, 300] }", "source_ton_npi.alphanumeric: must be [ton"),
    ('system_type = "much-too-long-type"', "connections[0].system_type: must be at most 12"),
    ("tls = 1", "connections[0].tls: must be a boolean"),
    ('url = "http://x"', "connections[0].url: unknown key"),
    ("enquire_link_s = 0", "connections[0].enquire_link_s: must be a positive number"),
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_wrong_values_name_the_file_and_the_key(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra)
    assert str(info.value).startswith("routes.toml: "), str(info.value)
    assert message in str(info.value), str(info.value)


def test_password_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"password_env: environment variable OP_PASSWORD"):
        load(tmp_path, env={})
    with pytest.raises(ConfigError, match=r"password_env: the password must be 1-8"):
        load(tmp_path, env={"OP_PASSWORD": "ninechars"})
    path = tmp_path / "routes.toml"
    path.write_text(BASE.replace('password_env = "OP_PASSWORD"\n', ""))
    with pytest.raises(ConfigError, match=r"connections\[0\].password_env: an smpp connection"):
        load_file(str(path), Settings(), {})
    with pytest.raises(ConfigError, match=r"system_id: is required"):
        path.write_text(BASE.replace('system_id = "smsd"\n', ""))
        load_file(str(path), Settings(), ENV)


def test_smsdispatch_run_starts_a_holder_only_with_an_smpp_connection(tmp_path: Path) -> None:
    from devstack.run import _has_smpp

    path = tmp_path / "routes.toml"
    path.write_text(BASE)
    env = {**ENV, "SMSDISPATCH_CONNECTIONS": str(path)}
    assert _has_smpp(env)
    path.write_text(
        "[[connections]]\nname='s'\ntype='simulator'\nurl='http://127.0.0.1:1'\ntps=5\n"
        "fallback=true\n"
    )
    assert not _has_smpp(env)
    assert not _has_smpp({})  # no file: the implicit simulator connection
