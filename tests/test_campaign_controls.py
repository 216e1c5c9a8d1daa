"""Campaign controls (issue 14): suppression lists and the budget guard, in the client core and in real DAG runs
(dag.test() on SQLite) against the emulator."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client import Credentials, GlobeSmsClient
from airflow_provider_globesms.client.bulk import Campaign, validate
from airflow_provider_globesms.client.campaign.budget import Budget, prices_from, region_of
from airflow_provider_globesms.client.campaign.quiet_hours import QuietHours, QuietSchedule
from airflow_provider_globesms.client.campaign.suppression import SuppressionList
from airflow_provider_globesms.client.campaign.suppression_sources import suppression_entries
from airflow_provider_globesms.client.errors import ConfigurationError, InvalidFieldError
from airflow_provider_globesms.client.rules.phone import parse_number
from airflow_provider_globesms.client.tables import cost_table
from airflow_provider_globesms.notifications.globesms import GlobeSmsNotifier
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.testing import task_states, xcom_values

LOGICAL_DATE = datetime(2026, 11, 22, tzinfo=timezone.utc)
PEOPLE = [
    {"to": "+85291234567", "name": "Ann"},
    {"to": "+447911123456", "name": "Bo"},
    {"to": "+61412345678", "name": "Cy"},
    {"to": "+12125550123", "name": "Di"},
]


def results(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(summary["results_uri"]).read_text().splitlines()]


# --- the client core --------------------------------------------------------------------------------


def test_every_writing_of_a_number_matches_it(tmp_path: Path) -> None:
    entries = [
        "+852 9123 4567",
        "447911123456",
        "+61 (0)412 345 678",
        "(212) 555-0199",
        "not a number",
        "+8613800138000",
    ]
    with SuppressionList(str(tmp_path), default_region="US") as suppression:
        suppression.load(enumerate(entries, start=1))
        assert "85291234567" in suppression
        assert "447911123456" in suppression
        assert "12125550199" in suppression  # national form, read with default_region like recipients
        assert "85291234568" not in suppression
        assert suppression.unreadable == 1  # E.164 entries are indexed as written (+86 matches nobody anyway)
        assert suppression.first_unreadable == [5]
        assert suppression.entries == 5


@settings(max_examples=60, deadline=None)
@given(
    numbers=st.lists(st.integers(0, 8_999_999), min_size=1, max_size=30, unique=True),
    style=st.sampled_from(["e164", "spaced", "bare", "national"]),
)
def test_a_listed_number_is_suppressed_however_the_list_writes_it(numbers: list[int], style: str) -> None:
    """Generated lists in each writing a user might export: every listed number a recipient could have
    matches, no other does."""
    wires = [f"8529{1_000_000 + n % 8_999_999:07d}" for n in numbers]
    wires = [w for w in wires if _recipient_may_have(w)] or ["85291234567"]
    writings: dict[str, Callable[[str], str]] = {
        "e164": lambda w: f"+{w}",
        "spaced": lambda w: f"+852 {w[3:7]} {w[7:]}",
        "bare": lambda w: w,
        "national": lambda w: w[3:],
    }
    written = writings[style]
    with SuppressionList(default_region="HK") as suppression:
        suppression.load(enumerate((written(w) for w in wires[:-1]), start=1))
        assert all(w in suppression for w in wires[:-1])
        if wires[-1] not in wires[:-1]:
            assert wires[-1] not in suppression


def _recipient_may_have(wire: str) -> bool:
    try:
        return parse_number(f"+{wire}").wire == wire
    except InvalidFieldError:
        return False


def test_list_files_in_each_format() -> None:
    def read(text: str, name: str) -> list[str]:
        return [entry for _, entry in suppression_entries(io.StringIO(text), name)]

    assert read("# opt-outs\n+85291234567\n\n85291234568\n", "optouts.txt") == ["+85291234567", "85291234568"]
    assert read("name,phone\nAnn,+85291234567\nBo,\n", "optouts.csv") == ["+85291234567"]
    assert read("+85291234567,2026-01-01\n+85291234568,x\n", "optouts.csv") == ["+85291234567", "+85291234568"]
    assert read('{"to": "+85291234567"}\n{"number": 85291234568}\n', "optouts.jsonl") == [
        "+85291234567",
        "85291234568",
    ]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("optouts.csv", "Email,Phone Number,Since\nann@example.com,+852 9123 4567,2025\n"),
        ("optouts.csv", "id,Mobile-Number\n1,85291234567\n"),
        ("optouts.csv", "name,E164\nAnn,+85291234567\n"),
        ("optouts.csv", "email,cell\nann@example.com,0085291234567\n"),
        ("optouts.jsonl", '{"Phone": "+85291234567"}\n'),
        ("optouts.jsonl", '{"MSISDN": 85291234567}\n'),
        ("optouts.jsonl", '{"to": 85291234567.0}\n'),
        ("optouts.txt", "85291234567.0\n"),
        ("optouts.txt", "0085291234567\n"),
        ("optouts.txt", "8.5291234567E+10\n"),  # a float column, in Excel's writing
        ("optouts.txt", "'85291234567\n"),  # Excel's text marker
        ("optouts.txt", '="85291234567"\n'),  # Excel's formula export
        ("optouts.txt", "tel:+852-9123-4567\n"),
        ("optouts.txt", "\u200e+85291234567\n"),  # a left-to-right mark from a CRM
        ("optouts.txt", "+85291234567,\n"),
        ("optouts.csv", "name,phone,mobile\nAnn,,+85291234567\n"),  # the first number column is empty
    ],
)
def test_exports_as_people_write_them_still_match(name: str, text: str, tmp_path: Path) -> None:
    """From an adversary review, each of these once made an empty list (the customer texted): header names
    with spaces, hyphens or capitals, JSON keys in capitals, numbers through a float column, a 00 prefix."""
    with SuppressionList(str(tmp_path)) as suppression:
        suppression.load(suppression_entries(io.StringIO(text), name))
        assert "85291234567" in suppression, (name, text)
        assert suppression.unreadable == 0


def test_every_number_column_of_an_export_is_suppressed(tmp_path: Path) -> None:
    """A CRM export with a landline in Phone and the mobile in Mobile: the opt-out covers both (only the
    first was read, and the mobile, the one texted, was not)."""
    csv_text = "name,Phone,Mobile\nAnn,+852 2123 4567,+852 9123 4567\n"
    exports = {  # Salesforce, HubSpot, a home-made one: the mobile column was skipped beside a known one
        "Salesforce Id,Name,Phone,MobilePhone\n1,Ann,+85221234560,+85291234560\n": "85291234560",
        "Phone Number,Mobile Phone Number\n+85221234561,+85291234561\n": "85291234561",
        "to,alt_phone\n+85221234562,+85291234562\n": "85291234562",
    }
    with SuppressionList(str(tmp_path)) as suppression:
        for text, mobile in exports.items():
            suppression.load(suppression_entries(io.StringIO(text), "export.csv"))
            assert mobile in suppression, text
    jsonl_text = '{"to": null, "phone": "+85291234568"}\n{"number": "A-1001", "mobile": "+85291234569"}\n'
    with SuppressionList(str(tmp_path)) as suppression:
        suppression.load(suppression_entries(io.StringIO(csv_text), "optouts.csv"))
        suppression.load(suppression_entries(io.StringIO(jsonl_text), "optouts.jsonl"))
        assert all(n in suppression for n in ("85221234567", "85291234567", "85291234568", "85291234569"))
        assert suppression.unreadable == 1  # A-1001


@pytest.mark.parametrize("junk", ["1e999999", "1e99999999", "9" * 5000, "[" * 100_000, '{"to": ' * 50_000])
def test_junk_entries_are_unreadable_never_a_crash_or_a_hang(junk: str, tmp_path: Path) -> None:
    """E-notation with a huge exponent took minutes or all memory; deep JSON raised RecursionError."""
    with SuppressionList(str(tmp_path)) as suppression:
        suppression.load(suppression_entries(io.StringIO(f'{junk}\n"+85291234567"\n'), "optouts.jsonl"))
        suppression.load(suppression_entries(io.StringIO(f"{junk}\n"), "optouts.txt"))
        assert "85291234567" in suppression
        assert suppression.unreadable == 2


def test_a_csv_without_a_number_column_is_refused_not_read_as_empty(tmp_path: Path) -> None:
    with SuppressionList(str(tmp_path)) as suppression, pytest.raises(ConfigurationError, match="no number column"):
        suppression.load(suppression_entries(io.StringIO("email,name\nann@example.com,Ann\n"), "optouts.csv"))
    with SuppressionList(str(tmp_path)) as suppression, pytest.raises(ConfigurationError, match="no number in"):
        suppression.load(suppression_entries(io.StringIO("email,phone\nann@example.com,\n"), "optouts.csv"))


def test_a_list_where_nothing_is_a_number_fails_the_task_before_sending(
    run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path
) -> None:
    emulator = globesms_conn()
    optouts = tmp_path / "optouts.txt"
    optouts.write_text("ann@example.com\nbo@example.com\n")
    with DAG("controls_unreadable_list", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="promo", recipients=PEOPLE, message="Hi", suppression=str(optouts), retries=0)
    dag_run = run_dag(dag, logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    assert task_states(dag_run) == {"promo": "failed"}
    assert emulator.messages() == []


def test_a_blank_time_zone_cell_means_the_numbers_own_zone() -> None:
    """A CSV's empty or blank ``tz`` cell is no zone given, not an invalid row."""
    noon = datetime(2026, 11, 20, 4, tzinfo=timezone.utc)  # noon in Hong Kong
    rows = [{"to": "+85291234567", "tz": ""}, {"to": "+85291234568", "tz": "  "}, {"to": "+85291234569"}]
    quiet = QuietSchedule(QuietHours.parse(("21:00", "08:00")), noon)
    report = validate(_campaign(), enumerate(rows, start=1), quiet=quiet, tz_field="tz")
    assert (report.valid, report.invalid, report.held) == (3, 0, 0)


def test_prices_and_the_cost_table() -> None:
    prices = prices_from(io.StringIO("country,price per segment\nHK,0.04\n+44,0.05\n"))
    assert prices == {"HK": 0.04, "44": 0.05}
    budget = Budget(max_segments=5, prices=prices)
    for wire, segments in [("85291234567", 1), ("85291234568", 2), ("447911123456", 2), ("61412345678", 1)]:
        budget.add(wire, segments)
    cost, unpriced = budget.cost()
    assert cost == pytest.approx(0.04 * 3 + 0.05 * 2)
    assert unpriced == ["AU"]
    assert budget.over() == "6 segments to 4 recipients is over max_segments=5"
    table = cost_table(budget)
    assert table.splitlines()[2].split() == ["HK", "2", "3", "0.1200"]
    assert "no price for AU" in table
    with pytest.raises(ConfigurationError, match="HK"):
        prices_from({"HK": "cheap"})


def test_each_country_has_its_own_price_never_a_neighbours() -> None:
    """From an adversary review: a Canadian number cost the US price, a Guernsey one GB's (both share a
    calling code), and every number outside a country (+882, +883) shared one '001' price."""
    budget = Budget(prices=prices_from({"US": 0.01, "GB": 0.05, "882": 0.9, "+883": 0.7, "61": 0.08}))
    numbers = {
        "12125550123": "US",
        "14165550123": "CA",  # Toronto
        "447400123456": "GB",
        "447911123456": "GG",  # Guernsey (as the tests' "London" number is)
        "88216000000": "882",
        "883510012345": "883",
        "61412345678": "AU",
    }
    for wire, country in numbers.items():
        budget.add(wire, 1)
        assert region_of(wire) == country
    assert {c: budget.price(c) for c in numbers.values()} == {
        **{"US": 0.01, "CA": None, "GB": 0.05, "GG": None},
        **{"882": 0.9, "883": 0.7, "AU": 0.08},  # AU by its calling code
    }
    assert budget.cost()[1] == ["CA", "GG"]


# --- in Airflow ---------------------------------------------------------------------------------------


def test_suppressed_rows_never_reach_the_api(run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path) -> None:
    emulator = globesms_conn()
    optouts = tmp_path / "optouts.csv.gz"
    optouts.write_bytes(gzip.compress(b"phone,since\n+44 7911 123456,2025-03-01\n12125550123,2024-12-24\n"))
    with DAG("controls_suppression", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo", recipients=PEOPLE, message="Hi {{ recipient.name }}", suppression=str(optouts)
        )
    dag_run = run_dag(dag, logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    assert task_states(dag_run) == {"promo": "success"}
    (summary,) = xcom_values(dag_run, "promo")
    assert (summary["accepted"], summary["suppressed"], summary["invalid"], summary["total"]) == (2, 2, 0, 4)
    assert sorted(m["to"] for m in emulator.messages()) == ["61412345678", "85291234567"]
    statuses = {line["to"]: line["status"] for line in results(summary)}
    assert statuses["447911123456"] == statuses["12125550123"] == "suppressed"


def test_a_campaign_over_its_budget_sends_nothing(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    rows = [*PEOPLE, {"to": "+85291234569", "name": "E" * 200}]  # 2 segments: 6 in all
    with DAG("controls_budget", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo",
            recipients=rows,
            message="Hi {{ recipient.name }}",
            max_segments=5,
            prices={"HK": 0.04, "GB": 0.05, "AU": 0.06, "US": 0.01},
            retries=0,
        )
    dag_run = run_dag(dag, logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    assert task_states(dag_run) == {"promo": "failed"}
    assert emulator.messages() == []


def test_the_dry_run_reports_the_cost_and_the_suppressed(
    run_dag: Callable[..., Any], globesms_conn: Any, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = globesms_conn()
    with DAG("controls_dry_run", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo",
            recipients=PEOPLE,
            message="Hi {{ recipient.name }}",
            suppression=["+85291234567"],
            max_segments=2,
            prices={"852": 0.04, "44": 0.05, "AU": 0.06},  # "44": the "London" number is in Guernsey
            dry_run=True,
        )
    dag_run = run_dag(dag, logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    assert task_states(dag_run) == {"promo": "success"}
    (summary,) = xcom_values(dag_run, "promo")
    assert (summary["valid"], summary["suppressed"], summary["segments"]) == (3, 1, 3)
    assert summary["estimated_cost"] == pytest.approx(0.05 + 0.06)
    assert emulator.messages() == []
    assert {line["status"] for line in results(summary)} == {"dry_run", "suppressed"}


@pytest.mark.parametrize("asynchronous", [False, True], ids=["notify", "async_notify"])
def test_the_notifier_skips_suppressed_numbers(globesms_conn: Any, tmp_path: Path, asynchronous: bool) -> None:
    emulator = globesms_conn()
    off_call = tmp_path / "off-call.txt"
    off_call.write_text("+44 7911 123456\n")
    alert = GlobeSmsNotifier(to=["+85291234567", "+447911123456"], message="db down", suppression=str(off_call))
    context: dict[str, Any] = {}
    if asynchronous:
        asyncio.run(alert.async_notify(context))  # type: ignore[arg-type]
    else:
        alert.notify(context)  # type: ignore[arg-type]
    assert [m["to"] for m in emulator.messages()] == ["85291234567"]


def test_an_unreadable_list_never_loses_the_alert(globesms_conn: Any, tmp_path: Path) -> None:
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to="+85291234567", message="db down", suppression=str(tmp_path / "missing.txt"))
    alert.notify({})
    assert [m["to"] for m in emulator.messages()] == ["85291234567"]


def test_a_national_opt_out_matches_under_the_connections_region(
    run_dag: Callable[..., Any], globesms_conn: Any
) -> None:
    """The connection reads bare numbers as Hong Kong ones: so must the list, or "91234567" on it would be
    read as an international number and the customer texted."""
    emulator = globesms_conn(default_region="HK")
    with DAG("controls_region", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo",
            recipients=[{"to": "91234567"}, {"to": "91234568"}],
            message="Hi",
            suppression=["9123 4567"],
        )
    dag_run = run_dag(dag, logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    assert task_states(dag_run) == {"promo": "success"}
    assert [m["to"] for m in emulator.messages()] == ["85291234568"]
    alert = GlobeSmsNotifier(to=["91234567", "91234568"], message="db down", suppression=["+852 9123 4567"])
    alert.notify({})
    assert [m["to"] for m in emulator.messages()].count("85291234568") == 2
    assert [m["to"] for m in emulator.messages()].count("85291234567") == 0


# --- found by an adversary review of this issue ---------------------------------------------------------


def test_e164_entries_the_validator_reads_otherwise_still_match() -> None:
    """'+44 (0)...' written without spaces, and non-ASCII digits: the shortcut for E.164 must not keep them
    as written, or the validator's reading of the same number would not match."""
    with SuppressionList(default_region=None) as suppression:
        suppression.load(enumerate(["+4407911123456", "+８５２９１２３４５６７"], start=1))
        assert "447911123456" in suppression
        assert "85291234567" in suppression


def _campaign() -> Campaign:
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint="http://127.0.0.1:9")  # never contacted
    return Campaign(client, lambda row: "Hi", ["dag", "run", "task", "-1"])


def test_a_repeated_suppressed_row_is_suppressed_not_invalid() -> None:
    with SuppressionList() as suppression:
        suppression.load([(1, "+85291234567")])
        rows = [(1, {"to": "+85291234567"}), (2, {"to": "+85291234567"}), (3, {"to": "+85291234568"})]
        report = validate(_campaign(), rows, suppression=suppression)
    assert (report.suppressed, report.invalid, report.valid) == (2, 0, 1)


def test_the_budget_counts_only_what_will_be_sent() -> None:
    """Rows with an unknown zone name (invalid) or an unknown zone (never sent under 'hold') are not billed;
    a row held until its window opens is."""
    noon = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)  # 20:00 in Hong Kong, 12:00 in London
    quiet = QuietSchedule(QuietHours.parse(("19:00", "08:00")), noon)
    rows = [
        (1, {"to": "+85291234567"}),  # held until 08:00 in Hong Kong
        (2, {"to": "+85291234568", "tz": "Mars/Olympus_Mons"}),  # invalid
        (3, {"to": "+88216000000"}),  # no zone: held, never sent
        (4, {"to": "+447911123456"}),  # sent now
    ]
    budget = Budget(max_segments=1)
    report = validate(_campaign(), rows, budget=budget, quiet=quiet, tz_field="tz")
    assert (report.valid, report.held, report.held_unknown_zone, report.invalid) == (1, 2, 1, 1)
    assert sum(budget.segments.values()) == 2
    assert budget.over() == "2 segments to 2 recipients is over max_segments=1"


def test_rows_only_held_or_suppressed_are_not_refused_as_invalid() -> None:
    from airflow_provider_globesms._compat import AirflowFailException
    from airflow_provider_globesms.client.bulk import ValidationReport
    from airflow_provider_globesms.operators.campaign_controls import refuse_invalid

    class Log:
        def info(self, *args: object) -> None: ...
        def warning(self, *args: object) -> None: ...

    for held, suppressed in [(9, 0), (0, 9)]:
        report = ValidationReport(total=10, valid=0, invalid=1, held=held, suppressed=suppressed)
        refuse_invalid(report, "rows", "skip", Log())  # type: ignore[arg-type]
    report = ValidationReport(total=10, valid=0, invalid=10)
    report.reasons["to: bad"] = 10
    with pytest.raises(AirflowFailException, match="none of the 10"):
        refuse_invalid(report, "rows", "skip", Log())  # type: ignore[arg-type]
