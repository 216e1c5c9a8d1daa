"""Issue 20's adversary review, kept as tests: "a person who opted out never gets another text", attacked
through every input path (mapped tasks, inbound-message logs, headerless and semicolon CSVs, comments,
several numbers a line, nested JSON and records from XCom, Unicode line breaks, broken rows, leaks in error
texts, a campaign started in quiet hours). Each asserts the promise; each failed before its fix."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_provider_globesms.client.campaign.suppression import SuppressionList
from airflow_provider_globesms.client.campaign.suppression_sources import suppression_entries
from airflow_provider_globesms.notifications.globesms import GlobeSmsNotifier
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.testing import task_states

OPTED_OUT = "+85291234567"
CONTROL = "+85291234500"
OUR_LONG_CODE = "+85260000000"  # our own sending number (a valid HK mobile)


def sent(emulator: Any) -> list[str]:
    return [m["to"] for m in emulator.messages()]


# --- 1. mapped tasks: an expanded suppression of None ---------------------------------------------------------


def test_expanded_suppression_that_resolves_to_none_protects_nobody(
    run_dag: Callable[..., Any], globesms_conn: Any
) -> None:
    """An upstream's export for one shard failed (returned None): that mapped instance must not send."""
    emulator = globesms_conn()
    with DAG("adv_expand_none", schedule=None) as dag:

        @task
        def exports() -> list[Any]:
            return [[OPTED_OUT], None]

        SendGlobeSmsOperator.partial(task_id="promo", to=[OPTED_OUT, CONTROL], message="Sale", retries=0).expand(
            suppression=exports()
        )
    run_dag(dag)
    assert OPTED_OUT[1:] not in sent(emulator), sent(emulator)


def test_expand_kwargs_suppression_none(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    with DAG("adv_expand_kwargs_none", schedule=None) as dag:

        @task
        def shards() -> list[dict[str, Any]]:
            return [{"to": [OPTED_OUT], "suppression": None}]

        SendGlobeSmsOperator.partial(task_id="promo", message="Sale", retries=0).expand_kwargs(shards())
    run_dag(dag)
    assert OPTED_OUT[1:] not in sent(emulator), sent(emulator)


def test_expanded_suppression_list_control(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    """Control: a real list in the expansion suppresses."""
    emulator = globesms_conn()
    with DAG("adv_expand_ok", schedule=None) as dag:

        @task
        def exports() -> list[Any]:
            return [[OPTED_OUT]]

        SendGlobeSmsOperator.partial(task_id="promo", to=[OPTED_OUT, CONTROL], message="Sale").expand(
            suppression=exports()
        )
    run_dag(dag)
    assert sent(emulator) == [CONTROL[1:]]


# --- 2. an inbound-STOP log: from/to columns ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_stop_log_with_from_and_to_suppresses_the_sender_of_stop(
    run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path, fmt: str
) -> None:
    """The natural opt-out export is the inbound message log filtered on STOP: From = the person, To = our long
    code. The list reads only the 'to' column (our own number): nobody who opted out is suppressed, silently."""
    emulator = globesms_conn()
    path = tmp_path / f"stops.{fmt}"
    if fmt == "csv":
        path.write_text(f"From,To,Body,DateSent\n{OPTED_OUT},{OUR_LONG_CODE},STOP,2026-12-01\n")
    else:
        path.write_text(json.dumps({"from": OPTED_OUT, "to": OUR_LONG_CODE, "body": "STOP"}) + "\n")
    with DAG(f"adv_stop_log_{fmt}", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="promo", to=[OPTED_OUT, CONTROL], message="Sale", suppression=str(path))
    states = task_states(run_dag(dag))
    assert OPTED_OUT[1:] not in sent(emulator), (states, sent(emulator))


# --- 3. headerless CSV with two number columns --------------------------------------------------------------------


def test_headerless_csv_second_number_column(run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path) -> None:
    emulator = globesms_conn()
    path = tmp_path / "optouts.csv"
    path.write_text(f"+85291234599,{OPTED_OUT}\n+85291234598,+85291234597\n")
    with DAG("adv_headerless_two_cols", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="promo", to=[OPTED_OUT, CONTROL], message="Sale", suppression=str(path))
    states = task_states(run_dag(dag))
    assert OPTED_OUT[1:] not in sent(emulator), (states, sent(emulator))


def test_a_csv_holding_json_lines_loses_its_first_line() -> None:
    """A .csv that is really JSON Lines: the first line is taken as the header and its number never read."""
    import io

    lines = io.StringIO(json.dumps({"phone": OPTED_OUT}) + "\n" + json.dumps({"phone": "+85291234599"}) + "\n")
    with SuppressionList() as listed:
        listed.load(suppression_entries(lines, "optouts.csv"))
        assert OPTED_OUT[1:] in listed


# --- 4. partial lists: readable entries mixed with ones the list cannot read (warning only) ----------------------


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("semicolon.csv", f"phone;name\n+85291234599;\n{OPTED_OUT};Ann\n"),  # European Excel
        ("comments.txt", f"+85291234599\n{OPTED_OUT}   # opted out 2026-12-01\n"),
        ("tabs.txt", f"+85291234599\n{OPTED_OUT}\tAnn\n"),
        ("two_a_line.txt", f"+85291234599\n{OPTED_OUT}, +85291234598\n"),
        (
            "phones.jsonl",
            json.dumps({"phone": "+85291234599"}) + "\n" + json.dumps({"phones": [OPTED_OUT, "+852912345"]}) + "\n",
        ),
        (
            "nested.jsonl",
            json.dumps({"phone": "+85291234599"}) + "\n" + json.dumps({"contact": {"phone": OPTED_OUT}}) + "\n",
        ),
        ("nel.txt", f"+85291234599\n+85291234598\u0085{OPTED_OUT}\n"),
    ],
)
def test_partially_unreadable_lists(
    run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path, name: str, body: str
) -> None:
    emulator = globesms_conn()
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    with DAG("adv_partial_" + name.replace(".", "_"), schedule=None) as dag:
        SendGlobeSmsOperator(task_id="promo", to=[OPTED_OUT, CONTROL], message="Sale", suppression=str(path))
    states = task_states(run_dag(dag))
    assert OPTED_OUT[1:] not in sent(emulator), (states, sent(emulator))


def test_a_list_of_records_from_an_upstream(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    """suppression=XComArg of records (the shape recipients take): str(dict) is read as text."""
    emulator = globesms_conn()
    with DAG("adv_records", schedule=None) as dag:

        @task
        def optouts() -> list[dict[str, str]]:
            return [{"name": "Bo", "phone": "+85291234599"}, {"phone": OPTED_OUT, "since": "2026-12-01"}]

        SendGlobeSmsOperator(task_id="promo", to=[OPTED_OUT, CONTROL], message="Sale", suppression=optouts())
    states = task_states(run_dag(dag))
    assert OPTED_OUT[1:] not in sent(emulator), (states, sent(emulator))


# --- 5. the notifier: a list it cannot read ------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["notify", "async_notify"])
@pytest.mark.parametrize("source", ["missing_file", "junk_csv", "empty_list"])
def test_notifier_with_an_unreadable_list_alerts_and_says_why(
    globesms_conn: Any, tmp_path: Path, asynchronous: bool, source: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """By design (the issue: "the notifier logs it as an error and still sends the alert"): an outage alert is
    never silenced by its own settings; the error names the list."""
    emulator = globesms_conn()
    bad: Any = {
        "missing_file": str(tmp_path / "optouts-typo.csv"),
        "junk_csv": str(tmp_path / "junk.csv"),
        "empty_list": [],
    }[source]
    (tmp_path / "junk.csv").write_text("Name,Email\nAnn,a@x\n")
    alert = GlobeSmsNotifier(to=[OPTED_OUT], message="db down", suppression=bad)
    if asynchronous:
        asyncio.run(alert.async_notify({}))
    else:
        alert.notify({})
    assert sent(emulator) == [OPTED_OUT[1:]]
    assert "Alert suppression list not read" in capfd.readouterr().out


# --- 6. one bad row crashes the campaign (on_invalid='skip') --------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "to"])
def test_a_lone_surrogate_in_a_row_is_that_rows_error(
    run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path, field: str
) -> None:
    emulator = globesms_conn()
    path = tmp_path / "people.jsonl"
    bad = {"to": "+85291234501", "name": "Ann"}
    bad[field] = bad[field] + "\ud800"
    path.write_text(json.dumps(bad) + "\n" + json.dumps({"to": "+85291234502", "name": "Bo"}) + "\n", encoding="utf-8")
    with DAG(f"adv_surrogate_{field}", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo", recipients=str(path), message="Hi {{ recipient.name }}", on_invalid="skip", retries=0
        )
    states = task_states(run_dag(dag))
    assert states == {"promo": "success"}, states
    assert sent(emulator) == ["85291234502"]


# --- 7. numbers unmasked in errors ------------------------------------------------------------------------------------


def test_headerless_csv_error_shows_numbers_unmasked(
    run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    globesms_conn()
    path = tmp_path / "optouts.csv"
    path.write_text(f"Ann,{OPTED_OUT}\nBo,+85291234599\n")
    with DAG("adv_leak_header", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="promo", to=[CONTROL], message="Sale", suppression=str(path), retries=0)
    run_dag(dag)
    logged = capfd.readouterr()
    text = logged.out + logged.err
    assert "91234567" not in text, [line[-300:] for line in text.splitlines() if "91234567" in line]


def test_tz_cell_error_shows_numbers_unmasked(
    run_dag: Callable[..., Any], globesms_conn: Any, quiet_hours_clock: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Shifted columns: the tz cell holds a phone number; the row's error quotes it unmasked."""
    quiet_hours_clock(datetime(2026, 11, 20, 4, tzinfo=timezone.utc))
    globesms_conn()
    rows = [{"to": CONTROL, "tz": "+852 6123 4567"}, {"to": "+85291234599", "tz": "Asia/Hong_Kong"}]
    with DAG("adv_leak_tz", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo",
            recipients=rows,
            message="Hi",
            quiet_hours=("21:00", "08:00"),
            tz_field="tz",
            on_invalid="skip",
        )
    run_dag(dag)
    logged = capfd.readouterr()
    text = (logged.out + logged.err).replace(" ", "")
    assert "61234567" not in text, [line[-300:] for line in text.splitlines() if "61234567" in line]


def test_render_error_shows_a_number_with_no_break_spaces_unmasked(
    run_dag: Callable[..., Any], globesms_conn: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    globesms_conn()
    number = "+852\u00a09123\u00a04599"
    rows = [{"to": number, "codes": {}}, {"to": CONTROL, "codes": {CONTROL: "1"}}]
    with DAG("adv_leak_render", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo", recipients=rows, message="Code {{ recipient.codes[recipient.to] }}", on_invalid="skip"
        )
    run_dag(dag)
    logged = capfd.readouterr()
    text = (logged.out + logged.err).replace("\u00a0", "").replace("\\xa0", "")
    assert "91234599" not in text, [line[-300:] for line in text.splitlines() if "91234599" in line]


# --- 8. quiet hours: someone opts out while their message is held ---------------------------------------------------


def test_an_opt_out_added_while_held_is_honoured_on_resume(
    run_dag: Callable[..., Any], globesms_conn: Any, quiet_hours_clock: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from airflow_provider_globesms.operators import campaign_controls

    start = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)  # 23:00 in Hong Kong: quiet; London open
    clock = quiet_hours_clock(start)
    emulator = globesms_conn()
    optouts = tmp_path / "optouts.txt"
    optouts.write_text("+85291234599\n")
    original = campaign_controls.DateTimeTrigger  # type: ignore[attr-defined]

    def trigger(moment: Any) -> Any:
        optouts.write_text(f"+85291234599\n{OPTED_OUT}\n")  # opted out during the night
        return original(moment)

    monkeypatch.setattr(campaign_controls, "DateTimeTrigger", trigger)
    with DAG("adv_quiet_optout", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo",
            to=[OPTED_OUT, "+447911123456"],
            message="Sale",
            suppression=str(optouts),
            quiet_hours=("21:00", "08:00"),
        )
    states = task_states(run_dag(dag, logical_date=start, run_after=start))
    assert clock.moments, "never deferred"
    assert OPTED_OUT[1:] not in sent(emulator), (states, sent(emulator))
    assert sent(emulator) == ["447911123456"]
    assert states == {"promo": "success"}


# --- 9. empty sources -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("ws.txt", b"   \n\t\n \r\n"),
        ("bom_only.csv", b"\xef\xbb\xbf"),
        ("bom_header.csv", b"\xef\xbb\xbfphone\r\n"),
        ("junk.csv", b"phone\nn/a\nunknown\n-\n"),
        ("empties.jsonl", b"{}\n{}\n"),
        ("nulls.jsonl", b'{"phone": null}\n{"phone": ""}\n'),
        ("comments.csv", b"# export\nphone\n"),
        ("quoted_blank.csv", b'phone\n""\n" "\n'),
        ("gz_empty.txt.gz", gzip.compress(b"", mtime=0)),  # mtime=0: the same test id in every process
        ("crlf_blank.txt", b"\r\n\r\n"),
        ("json_array.json", b"[]"),
    ],
)
def test_empty_or_junk_exports_fail_loudly(
    run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path, name: str, data: bytes
) -> None:
    emulator = globesms_conn()
    path = tmp_path / name
    path.write_bytes(data)
    with DAG("adv_empty_" + name.replace(".", "_"), schedule=None) as dag:
        SendGlobeSmsOperator(task_id="promo", to=[OPTED_OUT], message="Sale", suppression=str(path), retries=0)
    assert task_states(run_dag(dag)) == {"promo": "failed"}
    assert sent(emulator) == []


@pytest.mark.parametrize("nothing", ["None ", "none", "null", "NULL", "{}", "0", " ", "[ ]", "['']"])
def test_templates_rendering_to_nothing(run_dag: Callable[..., Any], globesms_conn: Any, nothing: str) -> None:
    emulator = globesms_conn()
    with DAG("adv_tmpl_nothing", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo",
            to=[OPTED_OUT],
            message="Sale",
            suppression="{{ params.x }}",
            params={"x": nothing},
            retries=0,
        )
    assert task_states(run_dag(dag)) == {"promo": "failed"}
    assert sent(emulator) == []


@pytest.mark.parametrize("nothing", [[], None, {}, "", [None], [""], 0, False, ()])
def test_native_xcom_rendering_to_nothing(run_dag: Callable[..., Any], globesms_conn: Any, nothing: Any) -> None:
    emulator = globesms_conn()
    with DAG("adv_native_nothing", schedule=None, render_template_as_native_obj=True) as dag:

        @task
        def export() -> Any:
            return nothing

        send = SendGlobeSmsOperator(
            task_id="promo",
            to=[OPTED_OUT],
            message="Sale",
            suppression="{{ ti.xcom_pull(task_ids='export') }}",
            retries=0,
        )
        export() >> send
    states = task_states(run_dag(dag))
    assert states["promo"] == "failed", states
    assert sent(emulator) == []


def test_a_campaign_started_in_quiet_hours_resumes(
    run_dag: Callable[..., Any], globesms_conn: Any, quiet_hours_clock: Any
) -> None:
    """No suppression at all: every recipient held in round 1 (started at 23:00 in Hong Kong)."""
    start = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
    clock = quiet_hours_clock(start)
    emulator = globesms_conn()
    with DAG("adv_quiet_all_held", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="promo", to=[CONTROL], message="Sale", quiet_hours=("21:00", "08:00"))
    states = task_states(run_dag(dag, logical_date=start, run_after=start))
    assert clock.moments, "never deferred"
    assert states == {"promo": "success"}, states
    assert sent(emulator) == [CONTROL[1:]]


def test_partial_suppression_xcomarg_resolving_to_none(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    with DAG("adv_partial_none", schedule=None) as dag:

        @task
        def export() -> Any:
            return None

        SendGlobeSmsOperator.partial(task_id="promo", message="Sale", suppression=export(), retries=0).expand(
            to=[[OPTED_OUT]]
        )
    run_dag(dag)
    assert OPTED_OUT[1:] not in sent(emulator), sent(emulator)


def test_mapped_suppression_file_paths_one_missing(
    run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path
) -> None:
    emulator = globesms_conn()
    good = tmp_path / "a.txt"
    good.write_text(OPTED_OUT + "\n")
    with DAG("adv_mapped_paths", schedule=None) as dag:
        SendGlobeSmsOperator.partial(task_id="promo", to=[OPTED_OUT], message="Sale", retries=0).expand(
            suppression=[str(good), "None", ""]
        )
    run_dag(dag)
    assert OPTED_OUT[1:] not in sent(emulator), sent(emulator)


@pytest.mark.parametrize("where", ["connection", "task"])
def test_national_opt_outs_under_the_connection_or_task_region(
    run_dag: Callable[..., Any], globesms_conn: Any, where: str
) -> None:
    emulator = globesms_conn(default_region="HK") if where == "connection" else globesms_conn()
    extra: dict[str, Any] = {"default_region": "HK"} if where == "task" else {}
    with DAG(f"adv_region_{where}", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo",
            to=[OPTED_OUT, "9123 4500"],
            message="Sale",
            suppression=["9123 4567", "6123 4567"],
            **extra,
        )
    states = task_states(run_dag(dag))
    assert sent(emulator) == [CONTROL[1:]], (states, sent(emulator))


@pytest.mark.parametrize("asynchronous", [False, True])
def test_notifier_connection_region(globesms_conn: Any, asynchronous: bool) -> None:
    emulator = globesms_conn(default_region="HK")
    alert = GlobeSmsNotifier(to=["9123 4567", CONTROL], message="db down", suppression=[OPTED_OUT[4:]])
    asyncio.run(alert.async_notify({})) if asynchronous else alert.notify({})
    assert sent(emulator) == [CONTROL[1:]]
