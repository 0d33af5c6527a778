"""CPU per PDU of SMPP codecs: ours (``workers/smpp``) against the PyPI libraries.

Two operations, each timed with ``time.process_time`` over many rounds (median of repeats):

* **submit_sm encode**: one part of a 3-part GSM-7 message (UDH + 153 septets) from fields to
  bytes. Ours and smpplib and smpp34 take the UDH'd user data as bytes; aiosmpplib takes text
  and encodes it itself (its own GSM-7 codec), so its figure includes text encoding.
  ``ours_from_text`` is our whole path from the message's text (split, encode, UDH, PDU),
  per PDU.
* **deliver_sm receipt**: bytes of a receipt (text plus ``receipted_message_id`` and
  ``message_state`` TLVs, as the independent SMSC sends it) to the message id and stat.
  smpplib and smpp34 decode the PDU only, so our receipt text parser is added to theirs;
  aiosmpplib parses receipts itself.

The libraries are optional (``pip install smpplib aiosmpplib smpp34`` into the venv that runs
this); a missing one is reported as such. Usage::

    python -m bench.smpp_codec [--rounds 20000] [--repeat 5] [--json bench/results/smpp_codec.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from workers.smpp import pdu as p
from workers.smpp.coding import EncodingRules, build_submits
from workers.smpp.receipts import parse_receipt_text, report_from

TEXT = ("Twoj kod to 482913. Nie podawaj go nikomu. " * 9)[:400]  # GSM-7, 3 parts
RECEIPT_TEXT = (
    b"id:0000abcd sub:001 dlvrd:001 submit date:2611270101 done date:2611270102 "
    b"stat:DELIVRD err:000 text:"
)


def _our_part() -> p.SubmitSm:
    return build_submits("msg-1", "+48500100200", "MyShop", TEXT, EncodingRules())[0]


def _fields(part: p.SubmitSm) -> dict[str, Any]:
    """The submit_sm fields the byte-taking libraries are given (the same PDU as ours)."""
    return {
        "source_addr_ton": part.source_addr_ton,
        "source_addr_npi": part.source_addr_npi,
        "source_addr": part.source_addr,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": part.destination_addr,
        "esm_class": part.esm_class,
        "registered_delivery": 1,
        "data_coding": 0,
        "short_message": part.short_message,
    }


def _receipt_bytes() -> bytes:
    pdu = p.DeliverSm(
        sequence=7,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="48500100200",
        dest_addr_ton=5,
        destination_addr="MyShop",
        esm_class=0x04,
        short_message=RECEIPT_TEXT,
        tlvs={0x001E: b"0000abcd\0", 0x0427: b"\x02"},
    )
    return p.encode(pdu)


def ours() -> dict[str, Callable[[], Any]]:
    part = _our_part()
    raw = _receipt_bytes()

    def encode() -> bytes:
        return p.encode(part)

    def from_text() -> list[bytes]:
        return [p.encode(sm) for sm in build_submits("m", "+48500100200", "MyShop", TEXT, RULES)]

    def receipt() -> tuple[str | None, str]:
        d = p.decode(raw)
        assert isinstance(d, p.DeliverSm)
        r = report_from(d)
        return r.carrier_message_id, r.carrier_status

    return {"encode": encode, "from_text_per_pdu": from_text, "receipt": receipt}


RULES = EncodingRules()


def smpplib_ops() -> dict[str, Callable[[], Any]]:
    import smpplib.smpp

    part = _our_part()
    raw = _receipt_bytes()

    class Sequence:  # smpplib takes sequence numbers from its client object
        def next_sequence(self) -> int:
            return 2

    client = Sequence()

    def encode() -> bytes:
        pdu = smpplib.smpp.make_pdu("submit_sm", client=client, **_fields(part))
        return bytes(pdu.generate())

    def receipt() -> tuple[str | None, str | None]:
        pdu = smpplib.smpp.parse_pdu(raw, client=client)
        text = parse_receipt_text(bytes(pdu.short_message).decode("latin-1"))
        rid = pdu.receipted_message_id
        mid = rid.decode().rstrip("\0") if isinstance(rid, bytes) else rid
        return mid or text.id, text.stat

    return {"encode": encode, "receipt": receipt}


def aiosmpplib_ops() -> dict[str, Callable[[], Any]]:
    from aiosmpplib import PhoneNumber, SubmitSm
    from aiosmpplib.protocol import DeliverSm
    from aiosmpplib.state import NPI, TON, PduHeader, SmppCommand, SmppCommandStatus

    raw = _receipt_bytes()
    part_text = TEXT[:153]

    def encode() -> bytes:
        sm = SubmitSm(
            short_message=part_text,
            source=PhoneNumber("MyShop", ton=TON(5), npi=NPI(0)),
            destination=PhoneNumber("48500100200", ton=TON(1), npi=NPI(1)),
            log_id="m",
        )
        sm.sequence_num = 2
        return bytes(sm.pdu())

    header = PduHeader(len(raw), SmppCommand.DELIVER_SM, SmppCommandStatus.ESME_ROK, 7)

    def receipt() -> tuple[Any, Any]:
        d = DeliverSm.from_pdu(raw, header)
        assert isinstance(d, DeliverSm)
        r = d.parse_receipt()
        return r.get("id"), r.get("stat")

    return {"encode": encode, "receipt": receipt}


def smpp34_ops() -> dict[str, Callable[[], Any]]:
    import smpp34

    part = _our_part()
    raw = _receipt_bytes()

    def encode() -> bytes:
        return bytes(smpp34.SubmitSm(**_fields(part)).encode())

    def receipt() -> tuple[str | None, str | None]:
        d = smpp34.decode(raw)
        text = parse_receipt_text(bytes(d.short_message).decode("latin-1"))
        rid = next((t.as_string() for t in d.tlvs if t.tag == 0x001E), None)
        return rid or text.id, text.stat

    return {"encode": encode, "receipt": receipt}


CANDIDATES: dict[str, tuple[str | None, Callable[[], dict[str, Callable[[], Any]]]]] = {
    "ours": (None, ours),
    "smpplib": ("smpplib", smpplib_ops),
    "aiosmpplib": ("aiosmpplib", aiosmpplib_ops),
    "smpp34": ("smpp34", smpp34_ops),
}


def measure(fn: Callable[[], Any], rounds: int, repeat: int, per_call: int = 1) -> float:
    """Median CPU µs per PDU."""
    fn()  # warm up (imports, caches)
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(rounds):
            fn()
        samples.append((time.process_time() - start) / rounds / per_call * 1e6)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    parts = len(build_submits("m", "+48500100200", "MyShop", TEXT, RULES))
    results: dict[str, Any] = {}
    for name, (dist, build) in CANDIDATES.items():
        try:
            ops = build()
            version = importlib.metadata.version(dist) if dist else "workers/smpp"
        except ImportError:
            results[name] = {"installed": False}
            print(f"{name:12s} not installed")
            continue
        row: dict[str, Any] = {"installed": True, "version": version}
        for op, fn in ops.items():
            per = parts if op == "from_text_per_pdu" else 1
            row[f"{op}_us"] = round(measure(fn, args.rounds, args.repeat, per), 2)
        results[name] = row
        print(f"{name:12s} {row}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {"rounds": args.rounds, "repeat": args.repeat, "results": results}, fh, indent=2
            )
            fh.write("\n")


if __name__ == "__main__":
    main()
