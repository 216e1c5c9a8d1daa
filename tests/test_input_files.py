"""Recipient files as real tools export them, and the mistakes real users make: each either works or fails
with one short error naming the file, how far it got and why, before anything is sent."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.testing import task_states

Run = Callable[..., tuple[str, str, list[str]]]


@pytest.fixture
def send_file(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], capfd: pytest.CaptureFixture[str]
) -> Run:
    """Run a campaign over ``recipients``; return its state, its log and the texts the emulator received."""
    emulator = globesms_conn()

    def run(recipients: str, message: str = "Hi {{ recipient.name }}", **options: Any) -> tuple[str, str, list[str]]:
        capfd.readouterr()
        with DAG("files_campaign", schedule=None) as dag:
            SendGlobeSmsOperator(task_id="send", recipients=recipients, message=message, **options)
        (state,) = task_states(run_dag(dag)).values()
        return state, capfd.readouterr().out, sorted(m["message"] for m in emulator.messages())

    return run


def test_an_excel_csv_with_a_byte_order_mark_works(send_file: Run, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffto,name\r\n+85291234567,Ann\r\n".encode())
    assert send_file(str(path))[::2] == ("success", ["Hi Ann"])


@pytest.mark.parametrize(
    ("header", "expected"),
    [("to,name,to", "names 'to' twice (columns 1 and 3)"), ("to,,name", "columns without a name (column 2)")],
)
def test_duplicate_or_blank_column_names_are_refused(
    send_file: Run, tmp_path: Path, header: str, expected: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(f"{header}\n+85291234567,Ann,+85291234568\n")
    state, log, sent = send_file(str(path))
    assert (state, sent) == ("failed", [])
    assert expected in log


def test_a_missing_cell_or_a_null_the_template_uses_is_a_row_error_never_none(send_file: Run, tmp_path: Path) -> None:
    csv_path = tmp_path / "short.csv"
    csv_path.write_text("to,name,code\n+85291234567,Ann,4711\n+85291234568,Bo\n")
    state, log, sent = send_file(str(csv_path), "Hi {{ recipient.name }}, code {{ recipient.code }}", on_invalid="skip")
    assert (state, sent) == ("success", ["Hi Ann, code 4711"])
    assert "code" in log
    jsonl = tmp_path / "nulls.jsonl"
    jsonl.write_text(json.dumps({"to": "+85291234569", "name": "Cy", "code": None}) + "\n")
    state, _, sent = send_file(str(jsonl), "Hi {{ recipient.name }}, code {{ recipient.code }}", on_invalid="skip")
    assert state == "failed"  # its only row is invalid
    assert not any("None" in text for text in sent)


def write_latin1(path: Path) -> None:
    path.write_bytes("to,name\n+85291234567,Jos\xe9\n".encode("latin-1"))


def write_truncated_gzip(path: Path) -> None:
    rng = random.Random(1)
    rows = "".join(f"+8529{rng.randrange(10**7):07d},{rng.randrange(10**12)}\n" for _ in range(5000))
    data = gzip.compress(f"to,name\n{rows}".encode())
    path.write_bytes(data[: len(data) // 2])  # a copy cut short: half of the compressed stream


def write_wide_header(path: Path) -> None:
    path.write_text(",".join(f"column_{n}" for n in range(100_000)) + "\n")


@pytest.mark.parametrize(
    ("name", "write", "expected"),
    [
        ("latin1.csv", write_latin1, "not UTF-8 text"),
        ("cut.csv.gz", write_truncated_gzip, "the compressed file is truncated or damaged"),
        ("missing.csv", None, "no such file"),
        ("wide.csv", write_wide_header, "the CSV header has no 'to' column"),
        ("people.txt", lambda p: p.write_text("to\n+85291234567\n"), "cannot tell the format"),
    ],
)
def test_unreadable_files_fail_with_one_short_error_naming_the_file(
    send_file: Run, tmp_path: Path, name: str, write: Callable[[Path], None] | None, expected: str
) -> None:
    path = tmp_path / name
    if write is not None:
        write(path)
    state, log, sent = send_file(str(path))
    assert (state, sent) == ("failed", [])
    error = next(line for line in log.splitlines() if expected in line)
    assert name in error
    assert len(error) < 2000  # a 100,000-column header used to make a 796 KB exception
    assert "TemplateNotFound" not in log


def test_a_uri_whose_file_system_is_not_installed_is_one_clear_error(send_file: Run) -> None:
    state, log, sent = send_file("nosuchscheme://bucket/people.csv")
    assert (state, sent) == ("failed", [])
    assert "nosuchscheme://bucket/people.csv" in log
    assert "no file system for this URI" in log


@pytest.mark.parametrize("content", ["", "to,name\n", "[]"])
def test_an_empty_input_warns_and_reports_zero_recipients(send_file: Run, tmp_path: Path, content: str) -> None:
    path = tmp_path / ("people.json" if content.startswith("[") else "people.csv")
    path.write_text(content)
    state, log, sent = send_file(str(path))
    assert (state, sent) == ("success", [])
    assert "No recipients in file" in log


def test_a_json_array_file_is_read_as_a_stream(send_file: Run, tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    rows = [{"to": f"+8529123456{n}", "name": f"C{n}"} for n in range(8)]
    path.write_text(json.dumps(rows, indent=2))
    state, _, sent = send_file(str(path))
    assert state == "success"
    assert sent == sorted(f"Hi C{n}" for n in range(8))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[{"to": "+85291234567"}]\n[{"to": "+85291234568"}]', "goes on after the array's closing bracket"),
        ('[{"to": "+85291234567"} {"to": "+85291234568"}]', "expected ',' or ']' after object 1"),
        ("[1." + "1" * 3_000_000 + "]", "larger than 1048576 characters"),
    ],
)
def test_a_json_array_never_drops_rows_silently_nor_grows_without_bound(
    send_file: Run, tmp_path: Path, content: str, expected: str
) -> None:
    """Found by an adversarial review: a second array was ignored; a long number grew the buffer unbounded."""
    path = tmp_path / "export.json"
    path.write_text(content)
    state, log, sent = send_file(str(path))
    assert (state, sent) == ("failed", [])
    assert expected in log
