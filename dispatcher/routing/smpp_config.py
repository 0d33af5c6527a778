"""The keys of a ``type = "smpp"`` connection in the connections file (docs/smpp.md).

Read through the loader's reader, so every wrong value names the file and the key
(``connections.toml: connections[1].window: must be a positive integer``). The password comes
from ``password_env`` or ``password_file``, never from the file itself: an inline ``password``
is refused with a message that says so.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from dispatcher.routing.model import SmppConfig

if TYPE_CHECKING:
    from dispatcher.routing.loader import _Reader

SMPP_KEYS = {
    "host",
    "port",
    "tls",
    "system_id",
    "password_env",
    "password_file",
    "system_type",
    "bind_mode",
    "binds",
    "window",
    "priority_window",
    "enquire_link_s",
    "query_sm",
    "default_alphabet",
    "concat",
    "registered_delivery",
    "source_ton_npi",
    "dest_ton_npi",
    "service_type",
    "send_validity",
}
BIND_MODES = ("transceiver", "transmitter_receiver")
ALPHABETS = ("gsm7", "latin1")
CONCATS = ("udh8", "udh16", "sar", "payload")
SENDER_KINDS = ("alphanumeric", "short_code", "international")
HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$")
SMPP_PORT = 2775
# SMPP 3.4 C-Octet String limits, less the terminating NUL.
SYSTEM_ID_MAX, PASSWORD_MAX, SYSTEM_TYPE_MAX, SERVICE_TYPE_MAX = 15, 8, 12, 5


def _ton_npi(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255 for x in v)
    )


def _text(max_len: int, required: bool = False) -> Any:
    def check(v: Any) -> bool:
        ok = isinstance(v, str) and len(v) <= max_len and v.isprintable()
        return ok and (bool(v) or not required)

    return check


def parse_smpp(reader: _Reader) -> SmppConfig:
    """The SMPP keys of one connection table."""
    if "password" in reader.table:
        raise reader.fail("password", "never inline: give password_env or password_file")
    host = reader.get("host", lambda v: isinstance(v, str) and bool(HOST_RE.match(v)), "a host")
    port = reader.get(
        "port",
        lambda v: isinstance(v, int) and 0 < v < 65536,
        "a TCP port (1-65535)",
        SMPP_PORT,
    )
    system_id = reader.get(
        "system_id", _text(SYSTEM_ID_MAX, True), f"a text of 1-{SYSTEM_ID_MAX} characters"
    )
    password = reader.secret("password")
    if not password:
        raise reader.fail("password_env", "an smpp connection needs password_env or password_file")
    if len(password) > PASSWORD_MAX or not password.isprintable():
        key = "password_env" if "password_env" in reader.table else "password_file"
        raise reader.fail(key, f"the password must be 1-{PASSWORD_MAX} printable characters")
    binds = reader.positive_int("binds", 1)
    mode = reader.get(
        "bind_mode", lambda v: v in BIND_MODES, " or ".join(BIND_MODES), BIND_MODES[0]
    )
    if mode == "transmitter_receiver" and binds < 2:
        raise reader.fail("binds", "transmitter_receiver needs at least 2 binds (one receiver)")
    window = reader.positive_int("window", 10)
    reserve = reader.get(
        "priority_window",
        lambda v: isinstance(v, int) and 0 <= v < window,
        f"an integer from 0 to window - 1 ({window - 1})",
        max(1, window // 4) if window > 1 else 0,
    )
    overrides = reader.get(
        "source_ton_npi", lambda v: isinstance(v, dict), "a table of [ton, npi] by sender kind", {}
    )
    source: list[tuple[str, int, int]] = []
    for kind, pair in overrides.items():
        if kind not in SENDER_KINDS:
            raise reader.fail(f"source_ton_npi.{kind}", "must be one of " + ", ".join(SENDER_KINDS))
        if not _ton_npi(pair):
            raise reader.fail(f"source_ton_npi.{kind}", "must be [ton, npi], integers 0-255")
        source.append((kind, pair[0], pair[1]))
    dest = reader.get("dest_ton_npi", _ton_npi, "[ton, npi], integers 0-255", [1, 1])
    boolean = "a boolean (true/false)"
    return SmppConfig(
        host=host,
        port=int(port),
        system_id=system_id,
        password=password,
        tls=bool(reader.get("tls", lambda v: isinstance(v, bool), boolean, False)),
        system_type=reader.get(
            "system_type", _text(SYSTEM_TYPE_MAX), f"at most {SYSTEM_TYPE_MAX} characters", ""
        ),
        bind_mode=mode,
        binds=binds,
        window=window,
        priority_window=int(reserve),
        enquire_link_s=reader.positive_number("enquire_link_s", 30.0),
        query_sm=bool(reader.get("query_sm", lambda v: isinstance(v, bool), boolean, True)),
        default_alphabet=reader.get(
            "default_alphabet", lambda v: v in ALPHABETS, " or ".join(ALPHABETS), "gsm7"
        ),
        concat=reader.get("concat", lambda v: v in CONCATS, "one of " + ", ".join(CONCATS), "udh8"),
        registered_delivery=int(
            reader.get(
                "registered_delivery",
                lambda v: isinstance(v, int) and 0 <= v <= 0x1F,
                "an integer 0-31 (1: a receipt on the final outcome)",
                1,
            )
        ),
        source_ton_npi=tuple(source),
        dest_ton_npi=(int(dest[0]), int(dest[1])),
        service_type=reader.get(
            "service_type", _text(SERVICE_TYPE_MAX), f"at most {SERVICE_TYPE_MAX} characters", ""
        ),
        send_validity=bool(
            reader.get("send_validity", lambda v: isinstance(v, bool), boolean, True)
        ),
    )
