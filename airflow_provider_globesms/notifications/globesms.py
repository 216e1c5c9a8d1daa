"""GlobeSmsNotifier: an SMS when a task or DAG fails, retries, succeeds, or misses a deadline.

Use it in ``on_failure_callback``, ``on_retry_callback``, ``on_success_callback`` (task or DAG) and as
a deadline alert callback. The message is a Jinja template over the callback's context; without one,
a default names the DAG, the task, the run, the try and the log URL, fitted into one GSM-7 segment
where possible (160 characters). A failure to send is logged with its reason and never raised: the
error that triggered the alert must stay the one Airflow reports.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from airflow_provider_globesms._compat import conf
from airflow_provider_globesms.alerting import asend_text, send_text, storm_control
from airflow_provider_globesms.client import (
    GlobeSmsClient,
    GlobeSmsError,
    InvalidFieldError,
    OutcomeUnknownError,
    ReceivedWithoutAnswerError,
    SendMessageRequest,
    SendMessageResult,
    mask_number,
)
from airflow_provider_globesms.client.aio import AsyncGlobeSmsClient
from airflow_provider_globesms.client.alerts import Route, StormControl, Text
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from airflow_provider_globesms.notifications.alert_facts import alert_of, default_message
from airflow_provider_globesms.operators.campaign_controls import open_suppression
from airflow_provider_globesms.storage import CONFIG_SECTION

__all__ = ["GlobeSmsNotifier", "default_message", "send_globe_sms_notification"]

DEFAULT_STORM_WINDOW = timedelta(minutes=10)
_MOST_DIGESTS = 20  # digests a callback sends on the side (of windows that ended); the sweeper sends the rest

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context


def _with_jinja(dag: Any) -> Any:
    """``dag`` if it can give a Jinja environment, else None: the scheduler's serialized DAG cannot."""
    return dag if hasattr(dag, "get_template_env") else None


class GlobeSmsNotifier(BaseNotifier):
    """Send an SMS alert from an Airflow callback.

    :param to: one number or a list (``+85291234567``).
    :param message: Jinja template over the callback context (e.g. ``"{{ dag.dag_id }}.{{ ti.task_id }}
        failed"``); by default a one-segment summary with the log URL.
    :param globesms_conn_id: the connection (type ``globesms``).
    :param sender: sender ID (``From``).
    :param sms_type: ``NOTIFY`` by default; ``OTP`` or ``MKT`` are possible.
    :param suppression: numbers that must not be texted (someone off call, an opt-out): a list, or the path/URI
        of a text, CSV or JSON Lines file, as ``SendGlobeSmsOperator`` takes it. A list that cannot be read,
        or is empty (unless ``allow_empty_suppression``), is logged as an error and the alert goes to every
        number: an alert is never lost to its own settings.
    :param allow_empty_suppression: let ``suppression`` be empty without an error in the log.
    :param default_region: read numbers without ``+`` in their national form for this country (an ISO code
        such as ``HK``); by default the connection's.
    :param storm_window: at most one text per recipient per window (a ``timedelta`` or seconds; by default
        ``[globesms] alert_window``, else 10 minutes). The first alert of a quiet spell goes at once; the
        alerts after it in the window fold into one digest ("+37 more since 03:02 UTC: etl.load x12, ...")
        sent when the window ends, by the digest sweeper (``alert_digest_dag``) or by the next alert. The
        same alert (DAG, task, run, try, map index, kind) is sent once however often its callback runs.
        ``None`` turns storm control off: every call texts, and nothing is stored.
    :param daily_cap: at most this many texts per recipient per UTC day, then one "muted until" text and
        silence until midnight (the alerts are still logged); ``None`` (default): no cap.
    :param alerts_uri: where the windows are kept: a local folder or an object storage URI every process
        that runs callbacks can reach; by default ``[globesms] alerts_uri``, else ``alerts`` under
        ``[globesms] ledger_uri`` (local: ``$AIRFLOW_HOME/globesms/alerts``). Workers on several machines
        need a shared one.
    :param context: Airflow's own (``BaseNotifier``): the callback context, when called directly.
    """

    # `message` is rendered by the notifier itself (``_text``): an alert whose template fails (say `{{ ds }}`
    # in a run without a logical date) still goes out, with the default text.
    template_fields: Sequence[str] = ("to", "sender", "globesms_conn_id", "suppression")

    def __init__(
        self,
        *,
        to: str | list[str],
        message: str | None = None,
        globesms_conn_id: str = GlobeSmsHook.default_conn_name,
        sender: str | None = None,
        sms_type: str | None = "NOTIFY",
        default_region: str | None = None,
        suppression: str | Sequence[str] | None = None,
        allow_empty_suppression: bool = False,
        storm_window: timedelta | float | None = DEFAULT_STORM_WINDOW,
        daily_cap: int | None = None,
        alerts_uri: str | None = None,
        context: Context | None = None,
    ) -> None:
        super().__init__(context=context)
        seconds = storm_window.total_seconds() if isinstance(storm_window, timedelta) else storm_window
        if seconds is not None and (isinstance(seconds, bool) or not 0 <= seconds <= 86400):
            raise ValueError(f"storm_window must be between 0 and 1 day, or None (off); got {storm_window!r}")
        if daily_cap is not None and (isinstance(daily_cap, bool) or not isinstance(daily_cap, int) or daily_cap < 1):
            raise ValueError(f"daily_cap must be a whole number of texts, 1 or more, or None; got {daily_cap!r}")
        self.storm_seconds, self.daily_cap, self.alerts_uri = seconds, daily_cap, alerts_uri
        self.storm_window_configured = storm_window is DEFAULT_STORM_WINDOW  # read [globesms] alert_window
        self.suppression = suppression
        # Given, then rendered to None (an XCom of nothing): an empty list, never "no list".
        self.suppression_given, self.allow_empty_suppression = suppression is not None, allow_empty_suppression
        self.to = to
        self.message = message
        self.globesms_conn_id = globesms_conn_id
        self.sender = sender
        self.sms_type = sms_type
        self.default_region = default_region

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render the templated fields, with the default Jinja environment when the DAG has none."""
        env = self._follow_dag_rendering(context)
        super().render_template_fields(context, jinja_env or env)

    def _follow_dag_rendering(self, context: Context | dict[str, Any]) -> jinja2.Environment:
        """The callback's DAG's Jinja environment, its native-object setting adopted; else the defaults.

        DAG-level callbacks may get the scheduler's serialized DAG, which has neither: the alert is rendered
        with the defaults rather than lost. Airflow's templater reads ``render_template_as_native_obj`` from
        the templated object before it asks the DAG, so the DAG is never asked what it cannot answer.
        """
        dag = _with_jinja(context.get("dag"))
        self.render_template_as_native_obj = bool(getattr(dag, "render_template_as_native_obj", False))
        return self.get_template_env(dag=dag)

    def _text(self, context: Context | dict[str, Any]) -> str:
        """The alert's text: the message rendered, else (no message, or its template failed) the default."""
        if not self.message:
            return default_message(context)
        try:
            env = self._follow_dag_rendering(context)
            return str(self.render_template(self.message, context, env))  # type: ignore[arg-type]
        except Exception as exc:  # an alert is never lost to its own template
            self.log.error(
                "Alert message template failed (%s: %s); sending the default alert text instead",
                type(exc).__name__,
                str(exc)[:200],
            )
            return default_message(context)

    @cached_property
    def hook(self) -> GlobeSmsHook:
        """The hook for ``globesms_conn_id`` (as rendered), reading numbers with ``default_region``."""
        return GlobeSmsHook(self.globesms_conn_id, default_region=self.default_region)

    def _requests(self, context: Context | dict[str, Any], client: GlobeSmsClient) -> list[SendMessageRequest]:
        """Validated requests, one per number; a number that fails validation is logged and dropped."""
        text = self._text(context)
        numbers = [self.to] if isinstance(self.to, str) else list(self.to)
        requests = []
        for number in numbers:
            try:
                requests.append(client.build_send_request(number, text, sender=self.sender, sms_type=self.sms_type))
            except InvalidFieldError as exc:
                self.log.error("Alert SMS to %s not sent: %s", mask_number(number), exc)
        return requests

    def _suppressed(self, numbers: list[str], region: str | None) -> set[str]:
        """Which of these numbers (wire form) are on the suppression list; a list that cannot be read is
        logged and ignored (an alert is not lost to its own settings)."""
        if not self.suppression_given or not numbers:
            return set()
        source = [] if self.suppression is None else self.suppression
        try:
            with (
                tempfile.TemporaryDirectory(prefix="globesms-alert-") as workdir,
                open_suppression(
                    source, region, workdir, self.log, may_be_empty=self.allow_empty_suppression
                ) as listed,
            ):
                return {n for n in numbers if listed is not None and n in listed}
        except Exception as exc:
            self.log.error("Alert suppression list not read (%s); alerting every number", str(exc)[:300])
            return set()

    def _allowed(self, requests: list[SendMessageRequest], suppressed: set[str]) -> list[SendMessageRequest]:
        for request in requests:
            if request.to in suppressed:
                self.log.info(
                    "Alert SMS to %s not sent: the number is on the suppression list", mask_number(request.to)
                )
        return [r for r in requests if r.to not in suppressed]

    @cached_property
    def storm(self) -> StormControl | None:
        """Storm control over the alerts store; None when ``storm_window`` is None."""
        return None if self.storm_seconds is None else storm_control(self.alerts_uri)

    def _route(self, to: str) -> Route:
        return Route(
            to=to,
            conn_id=self.globesms_conn_id,
            sender=self.sender,
            sms_type=self.sms_type,
            region=self.default_region,
            window=self._window_seconds(),
            daily_cap=self.daily_cap,
        )

    def _window_seconds(self) -> float:
        if not self.storm_window_configured:
            return float(self.storm_seconds or 0)
        configured = conf.get(CONFIG_SECTION, "alert_window", fallback=None)
        try:
            seconds = float(configured) if configured not in (None, "") else float(self.storm_seconds or 0)
        except ValueError:
            self.log.error("[globesms] alert_window %r is not a number of seconds; using 600", configured)
            return 600.0
        return min(max(seconds, 0.0), 86400.0)

    def _through_storm(self, context: Context | dict[str, Any], request: SendMessageRequest) -> str | None:
        """The text to send this recipient now (the alert, or the window's backlog with it), or None."""
        try:
            if self.storm is None:
                return request.message
            alert = alert_of(context, request.message, custom=bool(self.message))
            verdict = self.storm.admit(alert, self._route(request.to))
        except Exception as exc:  # a storage failure never silences an alert
            self.log.error(
                "Alert storm control unavailable (%s: %s): sending the alert to %s as it is",
                type(exc).__name__,
                str(exc)[:300],
                mask_number(request.to),
            )
            return request.message
        if verdict.text is None:
            self.log.info("Alert SMS to %s not sent now: %s", mask_number(request.to), verdict.reason)
            return None
        self.log.info("Alert SMS to %s: the %s text; %s", mask_number(request.to), verdict.text.kind, verdict.reason)
        return verdict.text.body

    def _rebuilt(self, client: GlobeSmsClient, request: SendMessageRequest, body: str) -> SendMessageRequest:
        """The request with the window's text; the alert alone, logged, if that text cannot be sent."""
        if body == request.message:
            return request
        try:
            return client.build_send_request(request.to, body, sender=self.sender, sms_type=self.sms_type)
        except InvalidFieldError as exc:
            self.log.error(
                "The text with the window's backlog to %s cannot be sent (%s); sending the alert alone, instead of: %s",
                mask_number(request.to),
                exc,
                body[:300],
            )
            return request

    def _due_digest(self) -> Text | bool | None:
        """Settle one window that has ended with no later alert to carry it (any recipient's): its digest to
        send, None when one settled without a text, False when none is due (or the store cannot be read)."""
        try:
            if self.storm is None:
                return False
            verdicts = self.storm.sweep(limit=1)
        except Exception as exc:
            self.log.warning("Alert digests not swept (%s: %s); the sweeper DAG will", type(exc).__name__, exc)
            return False
        for verdict in verdicts:
            if verdict.text is None:
                self.log.info("Alert window closed with no text: %s", verdict.reason)
            return verdict.text
        return False

    def notify(self, context: Context) -> None:
        """Send the alert SMS; failures are logged, never raised over the error being reported."""
        try:
            client = self.hook.client
            requests = self._requests(context, client)
            suppressed = self._suppressed([r.to for r in requests], client.default_region)
            for request in self._allowed(requests, suppressed):
                body = self._through_storm(context, request)
                if body is None:
                    continue
                try:
                    self._accepted(request, client.send(self._rebuilt(client, request, body)))
                except GlobeSmsError as exc:
                    self._refused(request, exc)
            for _ in range(_MOST_DIGESTS):  # each sent before the next is settled: a kill loses one at most
                digest = self._due_digest()
                if digest is False:
                    break
                if isinstance(digest, Text):
                    self._send_digest(digest)
        except Exception as exc:  # never hide the error that triggered the alert
            self.log.error("Alert SMS not sent: %s: %s", type(exc).__name__, exc)

    def _send_digest(self, text: Text) -> None:
        try:
            send_text(text)
        except Exception as exc:
            self.log.error("Alert %s SMS to %s not sent: %s", text.kind, mask_number(text.route.to), exc)

    async def async_notify(self, context: Context) -> None:
        """``notify`` without blocking the event loop."""
        try:
            client = await self.hook.aget_client()  # the connection read without blocking
            aclient = AsyncGlobeSmsClient(client)
            try:
                requests = self._requests(context, client)
                numbers = [r.to for r in requests]
                suppressed = await asyncio.to_thread(self._suppressed, numbers, client.default_region)
                for request in self._allowed(requests, suppressed):
                    body = await asyncio.to_thread(self._through_storm, context, request)
                    if body is None:
                        continue
                    try:
                        self._accepted(request, await aclient.send(self._rebuilt(client, request, body)))
                    except GlobeSmsError as exc:
                        self._refused(request, exc)
            finally:
                await aclient.aclose()
            for _ in range(_MOST_DIGESTS):
                digest = await asyncio.to_thread(self._due_digest)
                if digest is False:
                    break
                if not isinstance(digest, Text):
                    continue
                try:
                    await asend_text(digest)
                except Exception as exc:
                    self.log.error("Alert %s SMS to %s not sent: %s", digest.kind, mask_number(digest.route.to), exc)
        except Exception as exc:  # never hide the error that triggered the alert
            self.log.error("Alert SMS not sent: %s: %s", type(exc).__name__, exc)

    def _accepted(self, request: SendMessageRequest, result: SendMessageResult) -> None:
        self.log.info("Alert SMS to %s accepted: MessageId %s", mask_number(request.to), result.message_id)

    def _refused(self, request: SendMessageRequest, error: GlobeSmsError) -> None:
        to = mask_number(request.to)
        if isinstance(error, ReceivedWithoutAnswerError):
            self.log.warning(
                "Alert SMS to %s arrived at the API, its answer lost (accepted or not is unknown): %s", to, error
            )
        elif isinstance(error, OutcomeUnknownError):
            self.log.error("Alert SMS to %s may or may not have been sent (not resent): %s", to, error)
        else:
            self.log.error("Alert SMS to %s not sent: %s", to, error)


send_globe_sms_notification = GlobeSmsNotifier
