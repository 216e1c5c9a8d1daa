"""SendGlobeSmsOperator: one SMS, a list, or a templated campaign to millions, exactly once.

The operator translates Airflow things into the client's bulk pipeline (``client.bulk``): the task
context and Jinja environment become a per-recipient renderer, the task instance becomes the ledger's
scope and location, ``ObjectStoragePath`` opens recipient files and stores results, and the summary
becomes the (small) XCom.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import jinja2
from airflow.sdk import BaseOperator, ObjectStoragePath, XComArg, conf, literal
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from tabulate import tabulate

from airflow_provider_globesms.client import mask_number
from airflow_provider_globesms.client.bulk import (
    BulkSender,
    Campaign,
    PreparedMessage,
    RenderError,
    RowError,
    Spill,
    ValidationReport,
    validate,
)
from airflow_provider_globesms.client.phone import scrub_numbers
from airflow_provider_globesms.client.recipients import (
    MAX_SHOWN,
    Row,
    SourceError,
    file_format,
    rows_from_csv,
    rows_from_json_array,
    rows_from_jsonl,
    rows_from_records,
)
from airflow_provider_globesms.client.report import ResultsWriter, SendSummary
from airflow_provider_globesms.client.transport import require_positive
from airflow_provider_globesms.client.validation import MAX_TASK_ID_LENGTH
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from airflow_provider_globesms.operators.send_ledger import open_send_ledger
from airflow_provider_globesms.storage import (
    is_local,
    safe_segment,
    storage_path,
    store_file,
    task_instance_location,
    task_instance_scope,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

MAX_CONCURRENCY = 512
# Sends in flight needed to hold the cap: rate x latency. 0.3 s covers Alibaba's 100-300 ms.
LATENCY_BUDGET = 0.3
LITERAL = type(literal(None))  # what airflow.sdk.literal() wraps a value in (its class is not public)
EACH_LOGGED_UP_TO = 10  # campaigns this small log every outcome; larger ones log progress


MESSAGE_FILE_SUFFIXES = (".txt", ".j2")  # a message ending so is the name of a template file
_JINJA = re.compile(r"\{[{%#]")  # the start of a Jinja expression, statement or comment


class ShownMasked:
    """Numbers or rows, kept whole for ``execute`` but stored and shown by Airflow (the serialized DAG, the
    rendered fields in the metadata database, the UI) as ``shown``: masked numbers, or a count of rows.

    Airflow serializes a template field through its ``serialize()`` method when it has one, and renders
    it through ``resolve()``: rows are data, so they resolve to themselves, never rendered as Jinja.
    """

    __slots__ = ("shown", "value")

    def __init__(self, value: Any, shown: Any) -> None:
        self.value = value
        self.shown = shown

    @classmethod
    def numbers(cls, to: Any) -> ShownMasked:
        """``to`` (one number or several) shown as masked numbers."""
        return cls(to, [mask_number(n) for n in ([to] if isinstance(to, str | int) else to)])

    @classmethod
    def rows(cls, rows: Any) -> ShownMasked:
        """Rows shown as their count and field names."""
        return cls(rows, _describe_rows(rows))

    def resolve(self, context: Any) -> ShownMasked:
        """What Airflow's rendering makes of it: itself (data is never a template)."""
        return self

    def serialize(self) -> Any:
        """What Airflow stores and shows for this field."""
        return self.shown

    def __repr__(self) -> str:
        return repr(self.shown)


def _has_template(value: Any) -> bool:
    """Whether ``to`` is for Airflow to render or resolve first: Jinja markup in it, or an XComArg."""
    values = [value] if isinstance(value, str | int) else value
    if not isinstance(values, list | tuple):
        return True  # an XComArg, or anything else Airflow resolves: masked once rendered
    return any(not isinstance(v, int) and not (isinstance(v, str) and not _JINJA.search(v)) for v in values)


def _is_rows(value: Any) -> bool:
    """Rows given as data: a mapping, or a sequence that is not text (a list, a lazy XCom sequence)."""
    return isinstance(value, Mapping) or (isinstance(value, Sequence) and not isinstance(value, str | bytes))


def _describe_rows(rows: Any) -> str:
    """A rows field as shown by Airflow: how many and which fields, never the numbers or the data."""
    rows = [rows] if isinstance(rows, Mapping) else rows
    first = rows[0] if len(rows) and isinstance(rows[0], Mapping) else {}
    fields = f" with fields {', '.join(map(str, first))}" if first else ""
    return f"{len(rows)} row(s){fields} (data, not shown: rows hold phone numbers)"


def _refuse_none(value: Any) -> Any:
    """Jinja's ``finalize``: every ``{{ }}`` output passes here; a null is a row error, not "None"."""
    if value is None:
        raise ValueError("a value the message uses is empty (null or a missing cell)")
    return value


def _reading_error(exc: BaseException) -> str:
    """Why a recipient file could not be read, in a line a user can act on."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text at byte {exc.start} of a block; save the file as UTF-8"
    if isinstance(exc, EOFError | zlib.error) or "gzip" in type(exc).__name__.lower():
        return f"the compressed file is truncated or damaged ({type(exc).__name__})"
    if isinstance(exc, ImportError) or "protocol" in str(exc).lower() or "filesystem" in str(exc).lower():
        return f"no file system for this URI; install the provider for its scheme ({str(exc)[:120]})"
    return f"{type(exc).__name__}: {str(exc)[:MAX_SHOWN]}"


def default_campaign_id(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """Deterministic TaskId for receipts: readable ids plus a digest of the run id (1-255 chars)."""
    run_digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    parts = [dag_id, task_id, *([str(map_index)] if map_index >= 0 else []), run_digest]
    campaign = ".".join(safe_segment(p) for p in parts)
    if len(campaign) > MAX_TASK_ID_LENGTH:
        campaign = campaign[: MAX_TASK_ID_LENGTH - 13] + "." + hashlib.sha256(campaign.encode()).hexdigest()[:12]
    return campaign


class SendGlobeSmsOperator(BaseOperator):
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
    :param dry_run: validate, render and count segments; send nothing.
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
    )
    # No field is read from a file by Airflow: a recipients path such as people.txt is a path, never a
    # template. A message ending in .txt or .j2 is loaded as a template file by the operator itself.
    template_ext: Sequence[str] = ()
    template_fields_renderers: ClassVar[dict[str, str]] = {"message": "jinja", "recipients": "json"}
    ui_color = "#ff6a00"

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (to is None) == (recipients is None):
            raise ValueError("give exactly one of `to` (numbers) or `recipients` (rows, XComArg or a file)")
        if on_invalid not in ("fail", "skip"):
            raise ValueError(f"on_invalid must be 'fail' or 'skip', not {on_invalid!r}")
        if max_qps is not None:
            max_qps = require_positive("max_qps", max_qps)  # nan, inf, 0, negative: refused at parse time
        if concurrency is not None and concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        # The message is compiled and rendered per recipient by the operator, not once by Airflow, which
        # keeps (and shows as rendered) the template text itself.
        self.message = literal(message) if isinstance(message, str) else message
        self.to: str | int | Sequence[str | int] | XComArg | ShownMasked | None = to
        if to is not None and not _has_template(to):
            self.to = ShownMasked.numbers(to)
        if _is_rows(recipients):
            # Rows are data: Airflow would render every string inside them (a row holding
            # "{{ conn.x.password }}" would send the secret). Only a path or URI is templated.
            recipients = ShownMasked.rows(recipients)
        self.recipients = recipients
        self.to_field = to_field
        self.sender = sender
        self.sms_type = sms_type
        self.validity_period = validity_period
        self.channel_id = channel_id
        self.campaign_id = campaign_id
        self.globesms_conn_id = globesms_conn_id
        self.max_qps = max_qps
        self.concurrency = concurrency
        self.on_invalid = on_invalid
        self.send_nothing = dry_run  # BaseOperator.dry_run() is a method; keep it one
        self.resend_unknown = resend_unknown
        self.fail_on_unknown = fail_on_unknown
        self.confirm_by_replay = confirm_by_replay
        self.ledger_uri = ledger_uri
        self.results_uri = results_uri
        self.default_region = default_region
        self.lease_wait = lease_wait
        self.resend_without_ledger = resend_without_ledger
        self.progress_interval = progress_interval
        self.max_errors_shown = max_errors_shown
        self._message_template: jinja2.Template | None = None

    @cached_property
    def hook(self) -> GlobeSmsHook:
        """The hook for ``globesms_conn_id`` (as rendered), with this task's ``max_qps`` and ``default_region``."""
        return GlobeSmsHook(self.globesms_conn_id, max_qps=self.max_qps, default_region=self.default_region)

    # --- templating: the message is rendered per recipient, not once ----------------------------

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render the fields as Airflow does, then compile the message (rendered later, once per recipient)
        and keep the numbers out of what Airflow stores and shows as the rendered fields."""
        super().render_template_fields(context, jinja_env)
        self._message_template = self._compile_message(jinja_env or self.get_template_env())
        self._mask_rendered()

    def _mask_rendered(self) -> bool:
        """Wrap a `to` or rows that arrived as plain values (templated, from XCom); True if any did."""
        masked = False
        if self.to is not None and not isinstance(self.to, ShownMasked):
            self.to, masked = ShownMasked.numbers(self.to), True
        if _is_rows(self.recipients):
            self.recipients, masked = ShownMasked.rows(self.recipients), True
        return masked

    def _compile_message(self, jinja_env: jinja2.Environment) -> jinja2.Template:
        # Missing variables are errors, whatever the DAG's `template_undefined` says, and so is a null
        # (at any depth, e.g. recipient.profile.name): never the text "None".
        strict = jinja_env.overlay(undefined=jinja2.StrictUndefined, finalize=_refuse_none)
        message = self.message.value if isinstance(self.message, LITERAL) else self.message
        if not isinstance(message, str):
            raise ValueError(f"message must be text, got {type(message).__name__}")
        if message.endswith(MESSAGE_FILE_SUFFIXES):
            return strict.get_template(message)
        return strict.from_string(message)

    def _renderer(self, context: Context) -> Callable[[Mapping[str, Any]], str]:
        template = self._message_template
        if template is None and isinstance(self.message, LITERAL):  # never rendered (execute() called directly)
            self.render_template_fields(context)
        elif template is None:  # a mapped task: Airflow renders its fields without render_template_fields
            self._message_template = self._compile_message(self.get_template_env())
            # Airflow stored its rendered fields before this runs; have them stored again, masked, at the end.
            self.overwrite_rtif_after_execution = self._mask_rendered()
        template = self._message_template
        assert template is not None
        variables = dict(context)

        def render(row: Mapping[str, Any]) -> str:
            # One context for every row, only `recipient` changing: Template.render would copy the
            # whole task context twice per row. Top-level {% set %} writes to the render's own locals.
            # str() of each part, not environment.concat: a native-object DAG's concat would turn "1.10"
            # into 1.1 and a lone "{{ recipient.code }}" into an int.
            # A missing cell or a null is undefined, so a template that uses it fails for that row
            # (StrictUndefined) instead of sending the text "None".
            variables["recipient"] = {k: v for k, v in row.items() if v is not None}
            try:
                return "".join(map(str, template.root_render_func(template.new_context(variables, shared=True))))
            # Error texts may quote the row's data (a number used as a key): numbers are masked in them.
            except jinja2.UndefinedError as exc:
                raise RenderError(f"template: {scrub_numbers(str(exc.message))}") from None
            except jinja2.TemplateError as exc:
                raise RenderError(f"template: {scrub_numbers(str(exc))}") from None
            except Exception as exc:  # an error in one row's data (a string times 1.1, a zero divisor)
                raise RenderError(f"template: {type(exc).__name__}: {scrub_numbers(str(exc)[:200])}") from None

        return render

    # --- where things are -------------------------------------------------------------------------

    def _locations(self, context: Context) -> tuple[list[str], str, str]:
        ti = context["ti"]
        ledger_dir = task_instance_location(ti, self.ledger_uri)
        return task_instance_scope(ti), ledger_dir, self.results_uri or f"{ledger_dir}/results.jsonl"

    # --- recipients ---------------------------------------------------------------------------------

    def _rows(self) -> tuple[Iterator[Row], str, str]:
        """The rows, the field that holds the number, and a description for the log."""
        if self.to is not None:
            to = self.to.value if isinstance(self.to, ShownMasked) else self.to
            if isinstance(to, XComArg):  # execute() called without Airflow's rendering
                raise ValueError("`to` is an XComArg that was never resolved: run the task in Airflow")
            numbers = [to] if isinstance(to, str | int) else list(to)
            return rows_from_records({"to": n} for n in numbers), "to", f"{len(numbers)} number(s)"
        source = self.recipients
        if isinstance(source, ShownMasked):
            source = source.value
        if isinstance(source, Mapping):
            source = [source]
        if isinstance(source, str | os.PathLike | ObjectStoragePath):
            return self._file_rows(str(source)), self.to_field, f"file {source}"
        if _is_rows(source):  # a list, a tuple, or the lazy sequence of a mapped upstream's XComs
            return rows_from_records(source), self.to_field, f"{len(source)} row(s)"
        raise ValueError(
            f"recipients must be a list of rows, an XComArg or a CSV/JSONL path, got {type(source).__name__}"
        )

    def _file_rows(self, location: str) -> Iterator[Row]:
        """Rows of a CSV, JSON Lines or JSON-array file; any failure to read it is one ``SourceError`` that
        names the file, how far it got and why (a bad encoding, a truncated archive, a missing file...)."""
        kind = file_format(location)
        compression = "gzip" if location.lower().endswith(".gz") else None
        shown, read = location[:MAX_SHOWN], 0
        try:
            path = storage_path(location)
            # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark that would stick to the first column.
            with path.open("rt", encoding="utf-8-sig", newline="", compression=compression) as handle:  # type: ignore[no-untyped-call]
                reader = {
                    "csv": lambda: rows_from_csv(handle, self.to_field),
                    "json": lambda: rows_from_json_array(handle),
                }
                for row in reader.get(kind, lambda: rows_from_jsonl(handle))():
                    yield row
                    read += 1
        except SourceError as exc:
            raise SourceError(f"{shown}: {exc}") from None
        except (OSError, EOFError, UnicodeError, ValueError, ImportError, zlib.error) as exc:
            raise SourceError(f"{shown}: cannot be read after {read} rows ({_reading_error(exc)})") from None

    # --- execute ----------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        scope, ledger_dir, results_location = self._locations(context)
        ti = context["ti"]
        dag_id, run_id, task_id, map_index = scope
        campaign_id = self.campaign_id or default_campaign_id(dag_id, run_id, task_id, int(map_index))
        hook = self.hook
        max_qps = hook.client.max_qps  # this task's max_qps, else the connection's, else the account cap
        concurrency = self.concurrency or max(1, min(MAX_CONCURRENCY, math.ceil(max_qps * LATENCY_BUDGET)))
        rows, to_field, described = self._rows()
        options = {
            "sender": self.sender,
            "sms_type": self.sms_type,
            "task_id": campaign_id,
            "validity_period": self.validity_period,
            "channel_id": self.channel_id,
        }
        campaign = Campaign(
            hook.client, self._renderer(context), scope, {k: v for k, v in options.items() if v is not None}, to_field
        )
        campaign.check_options()  # a bad sender ID fails here, once, before any row is read

        with ExitStack() as stack:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="globesms-"))
            results_file = Path(workdir) / "results.jsonl"
            handle = stack.enter_context(results_file.open("wb"))
            results = ResultsWriter(handle, campaign_id)
            self.log.info(
                "Campaign %s: validating %s at up to %g sends/s%s",
                campaign_id,
                described,
                max_qps,
                " (dry run: nothing will be sent)" if self.send_nothing else "",
            )
            if self.send_nothing:
                report = self._validate(campaign, rows, workdir, lambda outcome: self._dry_line(results, outcome))
                self._log_validation(report)
                handle.close()
                stored = store_file(results_file, results_location)
                return self._summary(campaign_id, report, None, stored, dry_run=True)

            spill = stack.enter_context(Spill(campaign, workdir))
            report = self._validate(campaign, rows, workdir, spill.add)
            self._log_validation(report)
            if report.total and not report.valid:
                reason, count = report.reasons.most_common(1)[0]
                raise AirflowFailException(
                    f"none of the {report.total} recipients is valid; nothing was sent. Most common reason "
                    f"({count} rows): {reason}\n{report.table()}"
                )
            if not report.total:
                self.log.warning("No recipients in %s: nothing to send.", described)
            if report.invalid and self.on_invalid == "fail":
                raise AirflowFailException(
                    f"{report.invalid} of {report.total} recipients are invalid; nothing was sent "
                    f"(on_invalid='fail'; use 'skip' to send the valid ones):\n{report.table()}"
                )
            ledger, guard = stack.enter_context(
                open_send_ledger(
                    ledger_dir,
                    context,
                    results_location=results_location,
                    lease_wait=self.lease_wait,
                    resend_without_ledger=self.resend_without_ledger,
                )
            )
            self.log.info("Ledger: %r; results: %s", ledger, results_location)
            self._warn_if_ledger_is_not_shared(ledger_dir)
            sender = BulkSender(
                campaign,
                ledger,
                results,
                concurrency=concurrency,
                resend_unknown=self.resend_unknown,
                confirm_unknown=self.confirm_by_replay,
                progress_interval=self.progress_interval,
                logger=self.log,
                guard=guard,
            )
            summary = sender.run(spill, total=report.valid)
            handle.close()
            stored = store_file(results_file, results_location)
        if report.valid <= EACH_LOGGED_UP_TO:
            self._log_each(stored)
        self._log_summary(summary)
        out = self._summary(campaign_id, report, summary, stored, dry_run=False)
        self._log_unconfirmed(summary, stored)
        if summary.failed or (summary.unknown and self.fail_on_unknown):
            ti.xcom_push(key="summary", value=out)
            codes = ", ".join(f"{code} x{n}" for code, n in summary.failed_by_code.most_common()) or "-"
            raise AirflowException(
                f"{summary.failed} message(s) refused ({codes}); {summary.unknown} with an unknown outcome "
                f"({summary.unknown_previous} of them since earlier attempts); {summary.accepted} accepted. "
                f"Details per recipient: {stored}. A retry within 15 minutes settles the unknown ones by "
                "replaying their exact requests and resends the refused ones. Only if you know the unknown "
                "ones did not arrive: resend_unknown=True (a second SMS to whoever got the first); to accept "
                "them as they are: fail_on_unknown=False."
            )
        return out

    def _log_unconfirmed(self, summary: SendSummary, results: str) -> None:
        """Say plainly how many messages may not have reached their recipient, and what to do."""
        if summary.received:
            self.log.warning(
                "%d message(s) were received by the API but their answers were lost (no MessageId, so no "
                "delivery receipt): almost always accepted, but one throttled while its worker was killed, or "
                "refused (e.g. for the balance) with its answer lost, looks the same. They are marked "
                "'received' in %s; check them with the recipients if it matters. They are never resent "
                "automatically.",
                summary.received,
                results,
            )
        if summary.unknown and not self.fail_on_unknown:
            self.log.warning(
                "%d message(s) have an unknown outcome (fail_on_unknown=False): %s", summary.unknown, results
            )

    # --- helpers ----------------------------------------------------------------------------------

    def _warn_if_ledger_is_not_shared(self, ledger_dir: str) -> None:
        """A ledger on this worker's disk protects a retry only if the retry runs on this worker too."""
        executors = str(conf.get("core", "executor", fallback="LocalExecutor"))
        distributed = [e.strip() for e in executors.split(",") if e.strip() and "Local" not in e]
        if is_local(ledger_dir) and distributed:
            self.log.warning(
                "The send ledger is on this worker's disk (%s) but the executor is %s: a retry on another "
                "worker cannot see it and would send again. Point [globesms] ledger_uri (or ledger_uri=) at "
                "storage every worker shares, e.g. s3://bucket/globesms, or a shared mount.",
                ledger_dir,
                ", ".join(distributed),
            )

    def _validate(
        self, campaign: Campaign, rows: Iterator[Row], workdir: str, on_row: Callable[[Any], None]
    ) -> ValidationReport:
        try:
            return validate(campaign, rows, max_errors=self.max_errors_shown, on_row=on_row, workdir=workdir)
        except SourceError as exc:
            raise AirflowFailException(f"recipients: {exc}") from None

    @staticmethod
    def _dry_line(results: ResultsWriter, outcome: PreparedMessage | RowError) -> None:
        if isinstance(outcome, RowError):
            results.write(outcome.row, "", "invalid", field=outcome.field, error=outcome.reason)
        else:
            results.write(outcome.row, outcome.to, "dry_run", segments=outcome.segments, encoding=outcome.encoding)

    def _log_validation(self, report: ValidationReport) -> None:
        encodings = ", ".join(f"{name} {count}" for name, count in sorted(report.encodings.items())) or "-"
        self.log.info(
            "Validated %d recipients: %d valid, %d invalid; %d segments to bill (%s)",
            report.total,
            report.valid,
            report.invalid,
            report.segments,
            encodings,
        )
        if report.invalid:
            action = "skipped" if self.on_invalid == "skip" else "refused"
            self.log.warning("%d invalid recipients %s:\n%s", report.invalid, action, report.table())

    def _log_each(self, results: str) -> None:
        with storage_path(results).open("r") as handle:  # type: ignore[no-untyped-call]
            for line in handle:
                record = json.loads(line)
                if record["status"] == "invalid":
                    continue  # already in the validation table, once
                self.log.info(
                    "SMS to %s: %s%s%s",
                    mask_number(record.get("to")) if record.get("to") else "-",
                    record["status"],
                    f", MessageId {record['message_id']}" if record.get("message_id") else "",
                    f" ({record.get('note') or record.get('error')})"
                    if record.get("note") or record.get("error")
                    else "",
                )

    def _log_summary(self, summary: SendSummary) -> None:
        s = summary
        rows: list[list[Any]] = [
            ["accepted", s.accepted],
            ["received, answer lost (no MessageId)", s.received],
            ["unknown outcome", s.unknown],
            ["failed", s.failed],
            ["invalid, skipped", s.invalid],
        ]
        rows += [[f"  failed: {code}", count] for code, count in s.failed_by_code.most_common()]
        rows += [
            ["(this try) sent", s.sent],
            ["(this try) settled by earlier tries", s.skipped_already_sent],
            ["(this try) in doubt, settled by replay", s.recovered],
            ["segments billed", s.segments],
        ]
        table = tabulate([r for r in rows if r[1]], headers=["every recipient", "count"], tablefmt="simple")
        self.log.info(
            "%d recipients; %d messages sent in this try in %.1f s (%.0f/s):\n%s",
            s.total,
            s.sent,
            s.seconds,
            s.rate,
            table,
        )

    @staticmethod
    def _summary(
        campaign_id: str, report: ValidationReport, summary: SendSummary | None, results: str, *, dry_run: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "campaign_id": campaign_id,
            "dry_run": dry_run,
            "recipients": report.total,
            "valid": report.valid,
            "invalid": report.invalid,
            "results_uri": results,
        }
        if summary is None:
            out.update(segments=report.segments, encodings=dict(report.encodings))
        else:
            out.update(summary.as_dict())
            out["invalid"] = report.invalid
        return out
