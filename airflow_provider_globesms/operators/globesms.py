"""SendGlobeSmsOperator: one SMS, a list, or a templated campaign to millions, exactly once.

The operator translates Airflow things into the client's bulk pipeline (``client.bulk``): the task
context and Jinja environment become a per-recipient renderer, the task instance becomes the ledger's
scope and location, ``ObjectStoragePath`` opens recipient files and stores results, and the summary
becomes the (small) XCom.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import jinja2
from airflow.sdk import BaseOperator, XComArg, literal

from airflow_provider_globesms._compat import AirflowException, AirflowFailException
from airflow_provider_globesms.client.bulk import BulkSender, Spill, ValidationReport, existing_objects_frozen, validate
from airflow_provider_globesms.client.campaign.gates import checked_limits, unknown_zones_text
from airflow_provider_globesms.client.errors import SealedRequestError, SourceError
from airflow_provider_globesms.client.results.report import ResultsWriter, SendSummary
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from airflow_provider_globesms.links import SandboxLinks
from airflow_provider_globesms.operators.campaign_controls import (
    check_budget,
    defer_while_held,
    given_suppression,
    open_suppression,
    refuse_invalid,
    refuse_unknown_zones,
    rounds_so_far,
)
from airflow_provider_globesms.operators.confirm_by_receipts import ConfirmByReceipts
from airflow_provider_globesms.operators.rendering import (
    LITERAL,
    NO_LIST,
    ShownMasked,
    compile_message,
    is_rows,
    row_renderer,
    shown_inputs,
)
from airflow_provider_globesms.operators.send_ledger import open_send_ledger
from airflow_provider_globesms.operators.send_log import (
    EACH_LOGGED_UP_TO,
    dry_run_line,
    failure_text,
    log_each,
    log_summary,
    log_unconfirmed,
    log_validation,
    warn_if_ledger_is_not_shared,
    xcom_summary,
)
from airflow_provider_globesms.operators.send_plan import SendPlan, make_plan
from airflow_provider_globesms.storage import default_campaign_id, dry_run_location, store_file

__all__ = ["SendGlobeSmsOperator", "default_campaign_id"]  # default_campaign_id: its home before storage.py

if TYPE_CHECKING:
    from airflow.sdk import Context


def _check_arguments(to: object, recipients: object, on_invalid: str, concurrency: int | None) -> None:
    """Refuse, at DAG parse time, arguments no run could use."""
    if (to is None) == (recipients is None):
        raise ValueError("give exactly one of `to` (numbers) or `recipients` (rows, XComArg or a file)")
    if on_invalid not in ("fail", "skip"):
        raise ValueError(f"on_invalid must be 'fail' or 'skip', not {on_invalid!r}")
    if concurrency is not None and concurrency < 1:
        raise ValueError("concurrency must be at least 1")


class SendGlobeSmsOperator(BaseOperator, ConfirmByReceipts):
    """Send SMS through Alibaba Cloud's international API (SendMessageToGlobe).

    Give either ``to`` (one number or a list) or ``recipients`` (rows, each with a ``to`` field and any
    other fields, as a list, an XComArg, or the path/URI of a ``.csv`` or ``.jsonl`` file). ``message`` is
    a Jinja template rendered once per recipient with the row as ``recipient`` on top of the task
    context: ``"Hi {{ recipient.name }}, your code is {{ recipient.code }}"``. A missing variable is an
    error, never an empty string.

    Every recipient is validated and every text rendered before the first send. Problems come as one
    table (row, masked number, field, reason); with ``on_invalid="fail"`` (the default) the task then
    fails having sent nothing, with ``"skip"`` the valid rows are sent and the rest reported.

    Sends run concurrently under a rate limiter at ``max_qps`` (else the connection's, else 2,000/s).
    A ledger keyed by task instance, number and text makes every message exactly-once across retries,
    killed workers and cleared tasks; an answer that never came is settled by replaying the signed request
    where the API allows, else reported "unknown", never resent unless ``resend_unknown=True``, and the task
    fails until ``resend_unknown`` or ``fail_on_unknown=False`` says what to do with it.

    Returns (XCom) a small summary: counts, segments, the campaign id and ``results_uri``, a JSON Lines
    file with one line per recipient (number, status, MessageId, segments, error) that
    ``GlobeSmsDeliverySensor`` reads.

    :param message: the text, a Jinja template (or a ``.txt``/``.j2`` template file).
    :param to: one number or a list of numbers (``+85291234567`` or ``85291234567``).
    :param recipients: rows with a ``to`` field (see ``to_field``), an XComArg, or a CSV/JSONL path or URI
        (local or any ``ObjectStoragePath``, e.g. ``s3://...``), read as a stream.
    :param to_field: the column or key holding the number in ``recipients``.
    :param sender: sender ID (``From``): letters and digits up to 11, or digits up to 15.
    :param sms_type: ``OTP``, ``NOTIFY`` or ``MKT``.
    :param validity_period: seconds the carrier keeps trying.
    :param channel_id: Alibaba channel id.
    :param campaign_id: Alibaba's ``TaskId``, echoed in receipts; by default derived from the dag, run,
        task and map index.
    :param globesms_conn_id: the connection (type ``globesms``).
    :param max_qps: SendMessageToGlobe calls per second for this task; split the account's cap between
        parallel (mapped) tasks.
    :param concurrency: sends in flight at once; by default enough to hold ``max_qps`` at 300 ms latency.
    :param on_invalid: ``"fail"`` (send nothing if any row is invalid) or ``"skip"``.
    :param dry_run: validate, render and count segments; send nothing (kept as ``is_dry_run``: ``dry_run()`` is
        a method of ``BaseOperator``).
    :param resend_unknown: resend messages whose outcome an earlier attempt could not learn (whoever got
        the first one gets a second).
    :param fail_on_unknown: fail the task while any message's outcome is unknown, from this attempt or an
        earlier one, until someone decides: ``resend_unknown=True``, or ``False`` here to accept them.
    :param confirm_by_replay: when an answer is lost (timeout, 500, a killed worker), replay the exact
        signed request: the gateway refuses a nonce it has seen (``SignatureNonceUsed``, for 15 minutes),
        so its answer proves whether the first attempt arrived, without sending twice.
    :param ledger_uri: where ledgers live: a directory or any ``ObjectStoragePath`` URI shared by your
        workers. Default: ``[globesms] ledger_uri``, else ``$AIRFLOW_HOME/globesms``.
    :param results_uri: where to write the results file; default: beside the ledger.
    :param default_region: read numbers without ``+`` in their national form for this country (an ISO code
        such as ``HK``); without it a bare value is Alibaba's international form, and one that looks like a
        Chinese mainland mobile without +86 is refused as ambiguous.
    :param lease_wait: seconds a second copy of this task instance (a zombie's replacement) waits for the
        first to release the ledger before it fails, having sent nothing.
    :param resend_without_ledger: send although an earlier try left evidence of sending (a task state store
        record, a results file) and its ledger is missing, empty or unreadable: every message goes again.
    :param progress_interval: seconds between progress lines in the log.
    :param max_errors_shown: invalid rows listed in the table (all are counted).
    :param suppression: numbers that must never receive anything from this task (opt-outs): a list, or the
        path/URI of a text (one a line), CSV or JSON Lines file, in any writing ``to`` accepts (and any other
        that phonenumbers reads as a valid number); matched on the number, indexed on disk (millions of
        entries, flat memory); reported as ``suppressed``. An empty list or file, or one that rendered to
        nothing (``None`` included: leave the argument out for no list), fails the task before sending (it
        protects nobody) unless ``allow_empty_suppression``.
    :param allow_empty_suppression: let ``suppression`` be empty (a new opt-out list on its first day); the
        run then sends to everyone, with a warning.
    :param max_segments: the most segments this task may bill (a whole number); above it (counted in the
        validation pass) the task fails before the first send, naming the totals.
    :param prices: price per segment by country (``{"HK": 0.04, "GB": 0.05}`` or calling codes ``"852"``),
        or the path/URI of a CSV ``country,price``: the log (and a dry run) shows the estimated cost by
        country, and the summary ``estimated_cost``.
    :param quiet_hours: ``(start, end)`` as ``HH:MM`` (or ``HH:MM:SS``), each recipient's local time, may span
        midnight: nobody is texted inside it; the task sends whoever may get it now and defers in the triggerer
        until the next window opens (exactly once across the deferrals).
    :param tz_field: the column or key holding a row's IANA time zone; it wins over the number's own zones.
    :param on_unknown_timezone: when a number's zone cannot be known: ``"hold"`` (not sent; the task fails at
        the end naming how many), ``"send"`` or ``"skip"`` (not sent, reported ``held``).
    :param receipts_by_push: confirm messages that arrived without an answer by their pushed delivery receipts (each
        try first; after sending, the task defers until they come). Default: ``[globesms] receipts_by_push``.
    :param confirm_within: seconds after sending to wait for those receipts; default ``[globesms] push_grace``.
    """

    template_fields: Sequence[str] = (
        "message",
        "to",
        "recipients",
        "sender",
        "sms_type",
        "validity_period",
        "channel_id",
        "campaign_id",
        "ledger_uri",
        "results_uri",
        "globesms_conn_id",
        "suppression",
        "prices",
        "quiet_hours",
    )
    # No field is read from a file by Airflow: a recipients path such as people.txt is a path, never a
    # template. A message ending in .txt or .j2 is loaded as a template file by the operator itself.
    template_ext: Sequence[str] = ()
    template_fields_renderers: ClassVar[dict[str, str]] = {"message": "jinja", "recipients": "json"}
    ui_color = "#ff6a00"
    _message_template: jinja2.Template | None = None  # compiled when the fields are rendered
    _quiet_rounds: Sequence[dict[str, Any]] = ()  # what each quiet-hours round did, carried across deferrals
    operator_extra_links = SandboxLinks()  # a descriptor: the sandbox link, or none without a sandbox

    def __init__(
        self,
        *,
        message: str,
        to: str | int | Sequence[str | int] | XComArg | None = None,
        recipients: Any = None,
        to_field: str = "to",
        sender: str | None = None,
        sms_type: str | None = None,
        validity_period: int | str | None = None,
        channel_id: str | None = None,
        campaign_id: str | None = None,
        globesms_conn_id: str = GlobeSmsHook.default_conn_name,
        max_qps: float | None = None,
        concurrency: int | None = None,
        on_invalid: Literal["fail", "skip"] = "fail",
        dry_run: bool = False,
        resend_unknown: bool = False,
        fail_on_unknown: bool = True,
        confirm_by_replay: bool = True,
        ledger_uri: str | None = None,
        results_uri: str | None = None,
        default_region: str | None = None,
        lease_wait: float = 60.0,
        resend_without_ledger: bool = False,
        progress_interval: float = 10.0,
        max_errors_shown: int = 50,
        suppression: str | Sequence[str | int] | XComArg | None = NO_LIST,
        allow_empty_suppression: bool = False,
        max_segments: int | None = None,
        prices: Mapping[str, float] | str | None = None,
        quiet_hours: tuple[str, str] | None = None,
        tz_field: str | None = None,
        on_unknown_timezone: Literal["hold", "send", "skip"] = "hold",
        receipts_by_push: bool | None = None,
        confirm_within: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_arguments(to, recipients, on_invalid, concurrency)
        self.max_segments, self.max_qps = checked_limits(max_segments, prices, max_qps)
        self.message = literal(message) if isinstance(message, str) else message  # rendered per recipient
        self.to, self.recipients, self.suppression = shown_inputs(to, recipients, suppression)
        self.suppression_given, self.fail_on_unknown = given_suppression(suppression), fail_on_unknown
        self.resend_without_ledger, self.resend_unknown = resend_without_ledger, resend_unknown
        self.allow_empty_suppression, self.prices, self.quiet_hours = allow_empty_suppression, prices, quiet_hours
        self.tz_field, self.on_unknown_timezone, self.to_field = tz_field, on_unknown_timezone, to_field
        self.validity_period, self.channel_id, self.campaign_id = validity_period, channel_id, campaign_id
        self.globesms_conn_id, self.on_invalid, self.confirm_by_replay = globesms_conn_id, on_invalid, confirm_by_replay
        self.sender, self.sms_type, self.is_dry_run, self.concurrency = sender, sms_type, dry_run, concurrency
        self.ledger_uri, self.results_uri, self.default_region = ledger_uri, results_uri, default_region
        self.lease_wait, self.progress_interval, self.max_errors_shown = lease_wait, progress_interval, max_errors_shown
        self.receipts_by_push, self.confirm_within = receipts_by_push, confirm_within

    @cached_property
    def hook(self) -> GlobeSmsHook:
        """The hook for ``globesms_conn_id`` (as rendered), with this task's ``max_qps`` and ``default_region``."""
        return GlobeSmsHook(self.globesms_conn_id, max_qps=self.max_qps, default_region=self.default_region)

    # --- templating: the message is rendered per recipient, not once ----------------------------

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render the fields as Airflow does, then compile the message (rendered later, once per recipient)
        and keep the numbers out of what Airflow stores and shows as the rendered fields."""
        super().render_template_fields(context, jinja_env)
        self._message_template = compile_message(self.message, jinja_env or self.get_template_env())
        self._mask_rendered()

    def _mask_rendered(self) -> bool:
        """Wrap a `to` or rows that arrived as plain values (templated, from XCom); True if any did."""
        masked = False
        if self.to is not None and not isinstance(self.to, ShownMasked):
            self.to, masked = ShownMasked.numbers(self.to), True
        if is_rows(self.recipients):
            self.recipients, masked = ShownMasked.rows(self.recipients), True
        return masked

    def _renderer(self, context: Context) -> Callable[[Mapping[str, Any]], str]:
        if self._message_template is None and isinstance(self.message, LITERAL):  # execute() called directly
            self.render_template_fields(context)
        elif self._message_template is None:  # a mapped task: Airflow renders it without render_template_fields
            self._message_template = compile_message(self.message, self.get_template_env())
            # Airflow stored its rendered fields before this runs; have them stored again, masked, at the end.
            self.overwrite_rtif_after_execution = self._mask_rendered()
        assert self._message_template is not None
        return row_renderer(self._message_template, context)

    # --- execute: plan, validate, send, verdict -----------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate every recipient, then send them unless a dry run; return the summary (for XCom)."""
        plan = self._plan(context)
        with ExitStack() as stack:
            stack.enter_context(existing_objects_frozen())  # Airflow's heap: not walked per collection
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="globesms-"))
            results_file = Path(workdir) / "results.jsonl"
            handle = stack.enter_context(results_file.open("wb"))
            results = ResultsWriter(handle, plan.campaign_id)
            if self.is_dry_run:
                report = self._validate(plan, workdir, lambda outcome: dry_run_line(results, outcome))
                handle.close()
                stored = store_file(results_file, dry_run_location(plan.results_location))
                return xcom_summary(plan.campaign_id, report, None, stored, dry_run=True, budget=plan.budget)
            spill = stack.enter_context(Spill(plan.campaign, workdir))
            report = self._validate(plan, workdir, spill.add)
            refuse_invalid(report, plan.described, self.on_invalid, self.log)
            summary = self._send(stack, context, plan, spill, results, report.valid)
            handle.close()
            stored = store_file(results_file, plan.results_location)
        return self._verdict(context, plan, report, summary, stored)

    def _plan(self, context: Context) -> SendPlan:
        """Everything decided before the first row is read; a bad sender ID fails here, once."""
        return make_plan(self, context, self._renderer(context))

    def _validate(self, plan: SendPlan, workdir: str, on_row: Callable[[Any], None]) -> ValidationReport:
        region = plan.campaign.client.default_region  # the task's, else the connection's: as recipients are read
        # A list given, then rendered to None (an XCom of nothing): an empty list, never "no list".
        source = [] if self.suppression is None and self.suppression_given else self.suppression
        with open_suppression(
            source, region, workdir, self.log, may_be_empty=self.allow_empty_suppression
        ) as suppression:
            try:
                report = validate(
                    plan.campaign,
                    plan.rows,
                    max_errors=self.max_errors_shown,
                    on_row=on_row,
                    workdir=workdir,
                    suppression=suppression,
                    budget=plan.budget,
                    quiet=plan.quiet,
                    tz_field=self.tz_field,
                )
            except SourceError as exc:
                raise AirflowFailException(f"recipients: {exc}") from None
        log_validation(self.log, report, self.on_invalid)
        check_budget(plan.budget, self.log, dry_run=self.is_dry_run)
        return report

    def _send(
        self,
        stack: ExitStack,
        context: Context,
        plan: SendPlan,
        spill: Spill,
        results: ResultsWriter,
        valid: int,
    ) -> SendSummary:
        """Under the ledger's lease, send what the ledger has not settled yet."""
        ledger, guard = stack.enter_context(
            open_send_ledger(
                plan.ledger_dir,
                context,
                results_location=plan.results_location,
                lease_wait=self.lease_wait,
                resend_without_ledger=self.resend_without_ledger,
            )
        )
        self.log.info("Ledger: %r; results: %s", ledger, plan.results_location)
        warn_if_ledger_is_not_shared(self.log, plan.ledger_dir)
        self._receipts_at_start(plan.campaign_id, ledger, guard)  # receipts by push: settled before any send
        sender = BulkSender(
            plan.campaign,
            ledger,
            results,
            concurrency=plan.concurrency,
            resend_unknown=self.resend_unknown,
            confirm_unknown=self.confirm_by_replay,
            progress_interval=self.progress_interval,
            logger=self.log,
            guard=guard,
        )
        try:
            return self._receipts_after_sending(ledger, sender.run(spill, total=valid))
        except SealedRequestError as exc:  # a rotated or changed [core] fernet_key: no retry helps until fixed
            raise AirflowFailException(str(exc)) from None

    def _verdict(
        self, context: Context, plan: SendPlan, report: ValidationReport, summary: SendSummary, stored: str
    ) -> dict[str, Any]:
        """Log the outcome; fail while any message is refused or (unless accepted) unknown."""
        if report.valid <= EACH_LOGGED_UP_TO:
            log_each(self.log, stored)
        log_summary(self.log, summary)
        out = xcom_summary(plan.campaign_id, report, summary, stored, dry_run=False, budget=plan.budget)
        log_unconfirmed(self.log, summary, stored, fail_on_unknown=self.fail_on_unknown, by_push=bool(self._receipts))
        self._quiet_rounds = defer_while_held(self, context, summary, self._quiet_rounds)
        out["quiet_hours_rounds"] = self._quiet_rounds
        if summary.failed or (summary.unconfirmed and self.fail_on_unknown):
            waited = self._wait_for_receipts(summary)  # may defer first
            failure = failure_text(summary, stored, by_push=bool(self._receipts), waited=waited)
            context["ti"].xcom_push(key="summary", value=out)
            text = " ".join(filter(None, [failure, unknown_zones_text(summary, self.on_unknown_timezone)]))
            # A retry resends the refused, settles the unknown and, when asked to, resends the arrived.
            if summary.failed or summary.unknown or self.resend_unknown:
                raise AirflowException(text)
            # Only arrivals remain in doubt: no retry settles them (their replays are refused as seen), so
            # retries would only repeat this verdict; the task fails at once, for someone to decide.
            raise AirflowFailException(text)
        refuse_unknown_zones(summary, self.on_unknown_timezone)
        return out

    def resume_after_quiet_hours(self, context: Context, event: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Back from the triggerer when the next window opened (Airflow calls it): send what may go now (the
        ledger skips what went before), and defer again while anything is still held.

        :param event: the ``DateTimeTrigger``'s event (unused: the ledger and the clock say what to do).
        """
        self._quiet_rounds = rounds_so_far(context)
        return self.execute(context)
