"""The chaos run's reconciliation catches what it claims to: planted faults, one at a time."""

from __future__ import annotations

from dataclasses import replace

from chaos.reconcile import DeliveryRow, Hook, MessageRow, check

NOW = 1_000_000.0


def _clean() -> tuple[list[str], list[MessageRow], dict[str, int], list[DeliveryRow], list[Hook]]:
    """Three messages: delivered, rejected by the carrier (never accepted), waiting to retry."""
    rows = [
        MessageRow("m1", "delivered", "sim-1", NOW + 60, None),
        MessageRow("m2", "rejected", None, NOW + 60, None),
        MessageRow("m3", "retrying", None, NOW + 60, NOW + 5),
    ]
    deliveries = [
        DeliveryRow("w1", "m1", "delivered", "delivered", 1),
        DeliveryRow("w2", "m2", "rejected", "delivered", 1),
    ]
    hooks = [Hook("w1", "m1", "delivered"), Hook("w2", "m2", "rejected")]
    return ["m1", "m2", "m3"], rows, {"m1": 1}, deliveries, hooks


def test_a_clean_run_passes_and_counts_add_up() -> None:
    v = check(*_clean(), now=NOW)
    assert v.ok, v.violations
    assert v.figures["final"] == 2 and v.figures["pending_retry"] == 1
    assert v.figures["duplicate_submits"] == 0 and v.figures["counts_add_up"]


def test_planted_duplicate_submit_is_caught() -> None:
    accepted, rows, refs, deliveries, hooks = _clean()
    v = check(accepted, rows, {**refs, "m1": 2}, deliveries, hooks, NOW)
    assert v.violations["duplicate_submit"] == ["m1x2"]
    assert v.figures["duplicate_submits"] == 1


def test_lost_message_is_caught() -> None:
    accepted, rows, refs, deliveries, hooks = _clean()
    v = check([*accepted, "m4"], rows, refs, deliveries, hooks, NOW)
    assert v.violations["lost"] == ["m4"]


def test_stuck_and_expired_retry_are_caught() -> None:
    accepted, rows, refs, deliveries, hooks = _clean()
    rows[2] = replace(rows[2], status="sending")
    assert "stuck" in check(accepted, rows, refs, deliveries, hooks, NOW).violations
    rows[2] = MessageRow("m3", "retrying", None, NOW - 1, NOW + 5)  # past its validity
    assert "stuck" in check(accepted, rows, refs, deliveries, hooks, NOW).violations
    rows[2] = MessageRow("m3", "sent", "sim-3", NOW + 60, None)  # its report never came
    v = check(accepted, rows, {**refs, "m3": 1}, deliveries, hooks, NOW)
    assert v.violations == {"report_missing": ["m3:sent"]} and v.figures["counts_add_up"]


def test_a_cancelled_message_at_the_carrier_is_caught() -> None:
    accepted, rows, refs, deliveries, hooks = _clean()
    rows[2] = MessageRow("m3", "cancelled", None, NOW + 60, None)
    deliveries.append(DeliveryRow("w3", "m3", "cancelled", "delivered", 1))
    hooks.append(Hook("w3", "m3", "cancelled"))
    assert check(accepted, rows, refs, deliveries, hooks, NOW).ok  # cancelled, final, hooked
    v = check(accepted, rows, {**refs, "m3": 1}, deliveries, hooks, NOW)
    assert v.violations["cancelled_but_sent"] == ["m3"]


def test_carrier_and_log_disagreeing_is_caught() -> None:
    accepted, rows, refs, deliveries, hooks = _clean()
    v = check(accepted, rows, {**refs, "m2": 1}, deliveries, hooks, NOW)  # sent, log says not
    assert "carrier_mismatch" in v.violations and not v.figures["counts_add_up"]
    v = check(accepted, rows, {**refs, "x9": 1}, deliveries, hooks, NOW)
    assert v.violations["foreign_submit"] == ["x9"]


def test_webhook_faults_are_caught_and_duplicates_counted() -> None:
    accepted, rows, refs, deliveries, hooks = _clean()
    v = check(accepted, rows, refs, deliveries, [*hooks, hooks[0]], NOW)
    assert v.ok and v.figures["webhook_duplicates"] == 1  # at-least-once: a figure
    v = check(accepted, rows, refs, deliveries, hooks[1:], NOW)
    assert "webhook_not_received" in v.violations
    v = check(accepted, rows, refs, deliveries[1:], hooks[1:], NOW)
    assert "webhook_missing" in v.violations
    extra = DeliveryRow("w3", "m1", "delivered", "delivered", 1)
    assert (
        "webhook_extra" in check(accepted, rows, refs, [*deliveries, extra], hooks, NOW).violations
    )
    twice = [replace(deliveries[0], ok_attempts=2), deliveries[1]]
    assert "webhook_undelivered" in check(accepted, rows, refs, twice, hooks, NOW).violations
    wrong = [Hook("w1", "m1", "undelivered"), hooks[1]]
    assert "webhook_wrong" in check(accepted, rows, refs, deliveries, wrong, NOW).violations
    foreign = [*hooks, Hook("w9", "m1", "delivered")]
    assert "webhook_foreign" in check(accepted, rows, refs, deliveries, foreign, NOW).violations
