"""What SendGlobeSmsOperator tells its log and XCom: the validation table, each outcome of a small campaign,
the summary table, what may not have arrived, and the (small) summary it returns."""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_globesms._compat import conf
from airflow_provider_globesms.client import mask_number
from airflow_provider_globesms.client.bulk import Budget, Held, PreparedRow, RowError, Suppressed, ValidationReport
from airflow_provider_globesms.client.ledger.sqlite_ledger import Status
from airflow_provider_globesms.client.results.report import LineLogger, ResultsWriter, SendSummary
from airflow_provider_globesms.client.tables import invalid_rows_table, send_table
from airflow_provider_globesms.storage import is_local, storage_path

EACH_LOGGED_UP_TO = 10  # campaigns this small log every outcome; larger ones log progress


def log_validation(log: LineLogger, report: ValidationReport, on_invalid: str) -> None:
    """The validation pass in one line, and the invalid rows as one table (masked numbers)."""
    encodings = ", ".join(f"{name} {count}" for name, count in sorted(report.encodings.items())) or "-"
    log.info(
        "Validated %d recipients: %d to send, %d invalid, %d suppressed; %d segments to bill (%s)",
        report.total,
        report.valid,
        report.invalid,
        report.suppressed,
        report.segments,
        encodings,
    )
    if report.invalid:
        action = "skipped" if on_invalid == "skip" else "refused"
        log.warning("%d invalid recipients %s:\n%s", report.invalid, action, invalid_rows_table(report))


def log_each(log: LineLogger, results: str) -> None:
    """One line per sent message of a small campaign; invalid rows are already in the validation table."""
    with storage_path(results).open("r") as handle:  # type: ignore[no-untyped-call]
        for line in handle:
            record = json.loads(line)
            if record["status"] == Status.INVALID:
                continue
            log.info(
                "SMS to %s: %s%s%s",
                mask_number(record.get("to")) if record.get("to") else "-",
                record["status"],
                f", MessageId {record['message_id']}" if record.get("message_id") else "",
                f" ({record.get('note') or record.get('error')})" if record.get("note") or record.get("error") else "",
            )


def log_summary(log: LineLogger, s: SendSummary) -> None:
    """Every recipient's final status, whichever try settled it, and what this try did."""
    log.info(
        "%d recipients; %d messages sent in this try in %.1f s (%.0f/s):\n%s",
        s.total,
        s.sent,
        s.seconds,
        s.rate,
        send_table(s),
    )


def log_unconfirmed(
    log: LineLogger, summary: SendSummary, results: str, *, fail_on_unknown: bool, by_push: bool = False
) -> None:
    """Say plainly how many messages may not have reached their recipient, and what to do."""
    if summary.arrived:
        confirm = (
            "Their pushed delivery receipts confirm them (receipts_by_push): the task waits for them"
            if by_push
            else "Without a MessageId, nothing confirms them but their delivery receipts: turn on "
            "receipts_by_push (a receiver of Alibaba's receipt push) and a retry confirms those that came"
        )
        log.warning(
            "%d message(s) arrived at the API but their answers were lost: a replay of each was refused as "
            "already seen, which proves arrival, not acceptance (a request throttled or refused while its "
            "worker was killed is refused as seen too). %s. They are marked 'arrived' in %s and never resent "
            "automatically; the task %s.",
            summary.arrived,
            confirm,
            results,
            "fails until you decide (see its error)" if fail_on_unknown else "accepts them (fail_on_unknown=False)",
        )
    if summary.unknown and not fail_on_unknown:
        log.warning("%d message(s) have an unknown outcome (fail_on_unknown=False): %s", summary.unknown, results)


def failure_text(summary: SendSummary, results: str, *, by_push: bool = False, waited: float | None = None) -> str:
    """Why the task fails after sending (refusals, unknown outcomes) and what each way forward does.

    ``by_push``: receipts come by push; ``waited``: the seconds the task waited for the receipts of those still
    in doubt (``None``: it did not wait, a retry settles the rest first).
    """
    codes = ", ".join(f"{code} x{n}" for code, n in summary.failed_by_code.most_common()) or "-"
    if waited is not None:
        arrived = (
            f"no delivery receipt came for the arrived ones within {waited:.0f} s of sending (receipts_by_push): "
            "a push lost for good, or a request throttled in flight while its worker died (its nonce consumed: it "
            "never went out); a later retry still confirms any whose receipt comes"
        )
    elif by_push:
        arrived = (
            "the arrived ones are confirmed by their delivery receipts as they come (receipts_by_push), on a retry"
        )
    else:
        arrived = (
            "nothing settles the arrived ones (the API has them; whether it accepted them is not known: ask "
            "the recipients, or turn on receipts_by_push, whose delivery receipts confirm the accepted ones)"
        )
    return (
        f"{summary.failed} message(s) refused ({codes}); {summary.unknown} with an unknown outcome and "
        f"{summary.arrived} arrived at the API with their outcome unknown ({summary.unknown_previous} of these "
        f"since earlier attempts); {summary.accepted} accepted. Details per recipient: {results}. A retry "
        f"within 15 minutes settles the unknown ones by replaying their exact requests and resends the refused "
        f"ones; {arrived}. Only if you know they did not go out: resend_unknown=True (a second SMS to whoever "
        "got the first); to accept them as they are: fail_on_unknown=False."
    )


def warn_if_ledger_is_not_shared(log: LineLogger, ledger_dir: str) -> None:
    """A ledger on this worker's disk protects a retry only if the retry runs on this worker too."""
    executors = str(conf.get("core", "executor", fallback="LocalExecutor"))
    distributed = [e.strip() for e in executors.split(",") if e.strip() and "Local" not in e]
    if is_local(ledger_dir) and distributed:
        log.warning(
            "The send ledger is on this worker's disk (%s) but the executor is %s: a retry on another "
            "worker cannot see it and would send again. Point [globesms] ledger_uri (or ledger_uri=) at "
            "storage every worker shares, e.g. s3://bucket/globesms, or a shared mount.",
            ledger_dir,
            ", ".join(distributed),
        )


def dry_run_line(results: ResultsWriter, outcome: PreparedRow) -> None:
    """A dry run's results line: what would be sent, or why a row is invalid or suppressed."""
    if isinstance(outcome, RowError):
        results.write(outcome.row, "", Status.INVALID, field=outcome.field, error=outcome.reason)
    elif isinstance(outcome, Suppressed):
        results.write(outcome.message.row, outcome.message.to, Status.SUPPRESSED, segments=outcome.message.segments)
    elif isinstance(outcome, Held):
        until = outcome.opens_at.isoformat() if outcome.opens_at else None
        message = outcome.message
        results.write(message.row, message.to, Status.HELD, segments=message.segments, until=until)
    else:
        results.write(outcome.row, outcome.to, Status.DRY_RUN, segments=outcome.segments, encoding=outcome.encoding)


def xcom_summary(
    campaign_id: str,
    report: ValidationReport,
    summary: SendSummary | None,
    results: str,
    *,
    dry_run: bool,
    budget: Budget | None = None,
) -> dict[str, Any]:
    """The task's (small) return value: counts, segments, the campaign id and where the results are."""
    out: dict[str, Any] = {
        "campaign_id": campaign_id,
        "dry_run": dry_run,
        "recipients": report.total,
        "valid": report.valid,
        "invalid": report.invalid,
        "suppressed": report.suppressed,
        "held": report.held,
        "results_uri": results,
    }
    if report.opens:
        out["held_until"] = {when.isoformat(): count for when, count in sorted(report.opens.items())[:20]}
    if budget is not None and budget.prices:
        out["estimated_cost"] = round(budget.cost()[0], 4)
    if summary is None:
        out.update(segments=report.segments, encodings=dict(report.encodings))
    else:
        out.update(summary.as_dict())
        out["invalid"] = report.invalid
        out["suppressed"] = summary.suppressed
        out["held"] = summary.held
    return out
