"""Issue 21's adversary review, kept as tests: honest statuses, the ledger at rest, one folder per task instance.

``test_attack_*`` each assert a promise an attack broke before its fix (another task instance's ledger
adopted by the legacy fallback, a blank key stored unsealed, a cached null Fernet, ``local://`` files readable,
receipts in another user's /tmp folder, an old lease left readable, a torn results line hiding a send);
``test_held_*`` are attacks that held from the start.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from cryptography.fernet import Fernet

from airflow_provider_globesms.client.ledger.sqlite_ledger import LedgerEntry, SqliteLedger, Status
from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.operators.ledger_place import ledger_location
from airflow_provider_globesms.operators.ledger_place import results_show_a_send as _results_show_a_send
from airflow_provider_globesms.operators.send_ledger import (
    airflow_cipher,
)
from airflow_provider_globesms.storage import default_campaign_id, location_segment, task_instance_location
from airflow_provider_globesms.testing import task_states, xcom_values
from tests.airflow_compat import airflow_get_fernet, forget_fernet
from tests.evidence_helpers import WHEN, campaign, run_at, ti, wider_than_owner


def stored_requests(ledger_file: Path) -> list[str]:
    with sqlite3.connect(ledger_file) as db:
        return [r[0] for r in db.execute("SELECT request FROM ledger WHERE request IS NOT NULL")]


# ======================================================================================================
# 1. The key at rest
# ======================================================================================================


@pytest.mark.parametrize("key", ["   ", " \t ", " {FERNET_KEY} "], ids=["spaces", "tab", "padded_placeholder"])
def test_attack_a_whitespace_only_key_is_set_but_unusable_yet_requests_are_stored_unsealed(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., EmulatorServer],
    tmp_path: Path,
    fernet: Callable[[str], None],
    key: str,
) -> None:
    """AIRFLOW__CORE__FERNET_KEY='   ' (a blank secret from a template or a _CMD): Airflow's own get_fernet()
    refuses it ('Could not create Fernet object'), i.e. it is *set but unusable*; the provider strips it,
    calls it 'not configured' and stores the request in doubt in clear."""
    emulator = globesms_conn()
    fernet(key)
    emulator.set_faults(script=["internal_error"])  # one request left in doubt: the ledger keeps it
    run_at(run_dag, campaign("adv_blank_key", str(tmp_path), confirm_by_replay=False, retries=0))
    sent = len(emulator.messages())
    ledgers = list(tmp_path.rglob("ledger.sqlite3"))
    unsealed = [r for found in ledgers for r in stored_requests(found) if not r.startswith("fernet:")]
    # promised: a key set but unusable refuses to send, never stores unsealed in its place
    assert sent == 0
    assert unsealed == [], f"stored unsealed: {unsealed[0][:120]}..."


def test_attack_a_cached_null_fernet_makes_a_configured_key_store_unsealed_without_a_warning(
    fernet: Callable[[str], None], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """airflow.sdk.crypto.get_fernet is @cache'd: once anything in the process asked for it with no key, a key
    configured later is seen by airflow_cipher's conf.get (so no 'not encrypted' warning) but get_fernet()
    still returns the cached _NullFernet, is_encrypted False -> None: unsealed, silently."""
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")
    forget_fernet()
    airflow_get_fernet()  # e.g. an earlier task in the same process, a connection read, dag.test
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())  # no cache_clear
    with caplog.at_level(logging.WARNING):
        cipher = airflow_cipher()
    forget_fernet()
    warned = "not encrypted" in caplog.text
    assert cipher is not None or warned, "a configured key, nothing sealed, and no warning said so"


@pytest.mark.parametrize(
    "key",
    [
        "short",
        "A" * 43,  # one short of a key
        Fernet.generate_key().decode() + ",",
        "," + Fernet.generate_key().decode(),
        Fernet.generate_key().decode() + ", ",
    ],
    ids=["short", "43", "trailing_comma", "leading_comma", "comma_space"],
)
def test_held_an_unusable_key_refuses(fernet: Callable[[str], None], key: str) -> None:
    from airflow_provider_globesms._compat import AirflowFailException

    fernet(key)
    with pytest.raises(AirflowFailException) as caught:
        airflow_cipher()
    assert key.strip(", ") not in str(caught.value)


def test_held_a_padded_valid_key_still_seals(fernet: Callable[[str], None], tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    fernet(f"  {key}\n")
    cipher = airflow_cipher()
    assert cipher is not None
    assert Fernet(key.encode()).decrypt(cipher.encrypt(b"x")) == b"x"


def test_held_a_rotated_key_without_the_old_fails_closed_for_pending_and_unknown(
    tmp_path: Path, fernet: Callable[[str], None]
) -> None:
    from airflow_provider_globesms.client.errors import SealedRequestError
    from airflow_provider_globesms.client.wire.signing import SignedRequest

    old = Fernet.generate_key()
    request = SignedRequest("POST", "/?To=85291234567", {"host": "h", "authorization": "x"})
    with SqliteLedger(tmp_path / "l.sqlite3", Fernet(old)) as ledger:
        ledger.write_many([LedgerEntry("k", Status.PENDING, 1, "+85291234567", request=request, updated_at=1.0)])
    with (
        SqliteLedger(tmp_path / "l.sqlite3", Fernet(Fernet.generate_key())) as ledger,
        pytest.raises(SealedRequestError),
    ):
        ledger.in_doubt()


# ======================================================================================================
# 2. Owner-only files
# ======================================================================================================


def test_attack_a_local_scheme_ledger_uri_writes_numbers_world_readable(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path, umask_022: None
) -> None:
    """ledger_uri='local:///path' is Airflow's own alias of file:// (airflow.sdk.io.fs: "local": _file), but
    storage.is_local only knows 'file://': the ledger becomes a SegmentLedger and the results a plain
    ObjectStoragePath write, both with the umask's 0644 - full numbers and (no key) the texts in doubt."""
    emulator = globesms_conn()
    base = tmp_path / "ledgers"
    emulator.set_faults(script=["internal_error"])
    run_at(run_dag, campaign("adv_local_scheme", f"local://{base}", confirm_by_replay=False, retries=0))
    assert len(emulator.messages()) >= 5
    files = [p for p in base.rglob("*") if p.is_file()]
    assert files, "nothing written"
    wider = wider_than_owner(base)
    print("ADV local:// modes", {k: v for k, v in wider.items() if (base / k).is_file()})
    assert not wider, wider


def test_attack_a_lease_file_left_readable_is_never_narrowed(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path, umask_022: None
) -> None:
    """A task folder a 0.2 try left (0755, its ledger.lease 0644): the ledger and results are narrowed,
    the lease (holder: dag/run/task, host, pid) and the folders are not."""
    globesms_conn()
    instance = ti("manual__2026-11-23T00:00:00+00:00", "adv_old_lease")
    folder = Path(task_instance_location(instance, str(tmp_path)))
    folder.mkdir(parents=True)
    for p in [folder, *folder.parents]:
        if tmp_path in p.parents:
            os.chmod(p, 0o755)
    (folder / "ledger.lease").write_text("{}")
    os.chmod(folder / "ledger.lease", 0o644)
    assert task_states(run_at(run_dag, campaign("adv_old_lease", str(tmp_path)))) == {"send": "success"}
    files = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in folder.iterdir() if p.is_file()}
    wider = {n: m for n, m in files.items() if int(m, 8) & 0o077}
    assert not wider, files


def test_attack_the_sensor_receipts_mirror_in_a_shared_tmp_folder_is_adopted_as_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None
) -> None:
    """For a remote ledger_uri the sensor keeps receipts.sqlite3 under <tmp>/globesms/<segment>: a fixed
    name in a shared /tmp. Another user who made that folder first (0777) and the file (0666) gets every
    receipt (full numbers): private_dirs leaves existing folders, narrow() skips files not ours."""
    import tempfile

    from airflow_provider_globesms.client.receipts.tracker import DeliveryTracker
    from airflow_provider_globesms.storage import local_work_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    location = "s3://bucket/globesms/promo/run/watch/task"
    from airflow_provider_globesms.storage import location_segment

    predicted = tmp_path / f"globesms-{os.getuid()}" / location_segment(location)  # what another user can guess
    nobody = 65534
    predicted.mkdir(parents=True)
    for p in (predicted.parent, predicted):
        os.chmod(p, 0o777)
        os.chown(p, nobody, nobody)
    sqlite3.connect(predicted / "receipts.sqlite3").close()
    os.chmod(predicted / "receipts.sqlite3", 0o666)
    os.chown(predicted / "receipts.sqlite3", nobody, nobody)
    folder = local_work_dir(location)
    assert predicted.parent not in folder.parents  # someone else's folder is never used
    folder.mkdir(parents=True, exist_ok=True)
    tracker = DeliveryTracker(folder / "receipts.sqlite3")
    tracker.close() if hasattr(tracker, "close") else None
    mode = stat.S_IMODE((folder / "receipts.sqlite3").stat().st_mode)
    owner = (folder / "receipts.sqlite3").stat().st_uid
    assert not (mode & 0o077 and owner != os.getuid()), f"receipts written into another user's {oct(mode)} file"


def test_held_results_partial_and_sqlite_sidecars_under_umask_000(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    previous = os.umask(0)
    try:
        emulator = globesms_conn()
        base = tmp_path / "l"
        emulator.set_faults(script=["internal_error"])
        run_at(run_dag, campaign("adv_umask0", f"file://{base}", confirm_by_replay=False, retries=0))
        run_at(run_dag, campaign("adv_umask0", f"file://{base}", retries=0))  # a retry into the same folder
    finally:
        os.umask(previous)
    assert not wider_than_owner(base), wider_than_owner(base)


# ======================================================================================================
# 3. One folder per task instance
# ======================================================================================================


@pytest.fixture
def run_id_is(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make dag.test() use this run id (Airflow lets users trigger runs with any run id)."""
    from airflow.models.dagrun import DagRun

    def use(run_id: str) -> None:
        monkeypatch.setattr(DagRun, "generate_run_id", staticmethod(lambda **_: run_id))

    return use


def test_attack_the_legacy_fallback_adopts_another_task_instances_ledger(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., EmulatorServer],
    tmp_path: Path,
    run_id_is: Callable[[str], None],
) -> None:
    """Run Y has the plain id 'manual__2026-11-23T00_00_00_00_00' (its own folder = run X's 0.2 folder); run X
    is 'manual__2026-11-23T00:00:00+00:00', a first try on 0.3 with no ledger of its own. X adopts Y's ledger as
    'an earlier try's', reports Y's recipient in doubt as its own (X fails though all 6 of X's messages were
    accepted), and overwrites Y's results file."""
    emulator = globesms_conn()
    x_run, y_run = "manual__2026-11-23T00:00:00+00:00", "manual__2026-11-23T00_00_00_00_00"
    run_id_is(y_run)
    emulator.set_faults(script=["internal_error"])
    y = run_at(run_dag, campaign("adv_adopt", str(tmp_path), confirm_by_replay=False, retries=0), WHEN + timedelta(1))
    assert y.run_id == y_run
    y_folder = Path(task_instance_location(ti(y_run, "adv_adopt"), str(tmp_path)))
    y_results_before = (y_folder / "results.jsonl").read_text()
    run_id_is(x_run)
    x = run_at(run_dag, campaign("adv_adopt", str(tmp_path), retries=0))
    assert x.run_id == x_run
    x_own = task_instance_location(ti(x_run, "adv_adopt"), str(tmp_path))
    chosen = ledger_location(
        {"ti": ti(x_run, "adv_adopt")}, str(tmp_path), default_campaign_id("adv_adopt", x_run, "send", -1)
    )
    (summary,) = xcom_values(x, "send", key="summary") or xcom_values(x, "send")
    problems = []
    if chosen != x_own:
        problems.append(f"X's ledger is Y's folder {chosen}")
    if (y_folder / "results.jsonl").read_text() != y_results_before:
        problems.append("Y's results file was overwritten by X's")
    if summary["total"] != 6:
        problems.append(f"X's summary counts {summary['total']} recipients (Y's in doubt included): {summary}")
    if task_states(x) != {"send": "success"}:
        problems.append(f"X {task_states(x)} though all its own messages went")
    print("ADV adopt", problems, summary)
    assert not problems, problems


@pytest.mark.parametrize(
    "ids",
    [
        ["Promo", "promo"],
        ["a" * 200, "a" * 201, "a" * 250, "a" * 300],
        ["\u00e9", "e\u0301"],  # NFC vs NFD
        ["", " ", "\x00", "\n", "/", "\\", "~", "~root", "$HOME"],
        ["x" * 100 + ":" + "1", "x" * 100 + ":" + "2"],
    ],
)
def test_held_distinct_ids_get_distinct_segments_inside_the_dag(ids: list[str], tmp_path: Path) -> None:
    folders = [task_instance_location(ti(run_id), str(tmp_path)) for run_id in ids]
    assert len(set(folders)) == len(ids)
    for run_id in ids:
        seg = location_segment(run_id)
        assert len(seg.encode()) <= 255
        assert "/" not in seg
        assert "\x00" not in seg
        assert seg not in (".", "..")
    for f in folders:
        assert (tmp_path / "promo").resolve() in Path(f).resolve().parents


def test_held_a_home_relative_base_with_tilde_run_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    f = task_instance_location(ti("~"), "~/ledgers")
    from airflow_provider_globesms.storage import local_path

    assert local_path(f).resolve().is_relative_to((tmp_path / "ledgers" / "promo").resolve())


def test_held_a_retry_after_upgrade_finds_its_0_2_ledger_for_a_colon_run_id(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    emulator = globesms_conn()
    emulator.set_faults(script=["internal_error"])
    first = run_at(run_dag, campaign("adv_upgrade", str(tmp_path), confirm_by_replay=False, retries=0))
    instance = ti(first.run_id, "adv_upgrade")
    new, old = (
        task_instance_location(instance, str(tmp_path)),
        task_instance_location(instance, str(tmp_path), legacy=True),
    )
    Path(old).parent.mkdir(parents=True, exist_ok=True)
    Path(new).rename(old)
    again = run_at(run_dag, campaign("adv_upgrade", str(tmp_path), retries=0, fail_on_unknown=False))
    assert task_states(again) == {"send": "success"}
    assert sorted(Counter(m["to"] for m in emulator.messages()).values()) == [1] * 6


# ======================================================================================================
# 4. The results-file evidence
# ======================================================================================================


def line(status: str, row: int = 1) -> str:
    return json.dumps({"row": row, "to": "+85291******1", "status": status}) + "\n"


def test_attack_one_malformed_line_hides_every_send_recorded_after_it(tmp_path: Path) -> None:
    """A results file whose first lines are the rows refused/suppressed/held (written first by _plan), then
    a damaged line (a torn write on a non-atomic store, a stray byte), then the sends: json.loads raises
    on the damaged line, contextlib.suppress(ValueError) ends the whole scan, 'no earlier send'."""
    results = tmp_path / "results.jsonl"
    results.write_text(line("suppressed") + line("invalid", 2) + '{"row": 3, "to": "+852\n' + line("accepted", 4) * 5)
    assert _results_show_a_send(str(results)), "five accepted lines after one torn line: not evidence"


@pytest.mark.parametrize("first", ["[]\n", "null\n", '"accepted"\n', "42\n"], ids=["list", "null", "string", "number"])
def test_attack_a_results_line_that_is_json_but_not_an_object_crashes_the_check(tmp_path: Path, first: str) -> None:
    """A valid JSON line that is not an object: .get raises AttributeError, which the suppress(OSError,
    ValueError) does not cover: the task dies with an AttributeError instead of reading on."""
    results = tmp_path / "results.jsonl"
    results.write_text(first + line("accepted"))
    try:
        found = _results_show_a_send(str(results))
    except AttributeError as exc:
        pytest.fail(f"crashed: {exc!r}")
    assert found


def test_attack_invalid_utf8_before_the_sends_hides_them(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_bytes(
        line("held").encode() + b'{"row": 2, "to": "\xff\xfe", "status": "held"}\n' + line("accepted").encode()
    )
    assert _results_show_a_send(str(results))


def test_held_a_results_file_with_only_holds_then_a_send_far_down_is_evidence(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    with results.open("w") as handle:
        for n in range(200_000):
            handle.write(line("held", n))
        handle.write(line("failed"))
    assert _results_show_a_send(str(results))
    results.write_text(line("received"))
    assert _results_show_a_send(str(results))
    results.write_text(line("dry_run") * 3)
    assert not _results_show_a_send(str(results))


def test_attack_a_dry_run_of_the_same_task_instance_erases_the_results_evidence(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    """A real run sends 6; the same task instance re-run as a dry run (a param flipped, the task cleared)
    overwrites results.jsonl with dry_run lines; the ledger is then lost (another worker, a wiped disk). With
    no task state store and try 1 (as after a clear on versions whose try number restarts, or where the
    results file is the only evidence), nothing stops the resend. CONDITIONAL: with Airflow 3.3's task state
    store the witness still stops the retry; this only bites where the results file is the sole evidence."""
    from airflow_provider_globesms.operators.send_ledger import earlier_try_evidence

    emulator = globesms_conn()
    first = run_at(run_dag, campaign("adv_dry_erases", str(tmp_path), retries=0))
    assert len(emulator.messages()) == 6
    folder = Path(task_instance_location(ti(first.run_id, "adv_dry_erases"), str(tmp_path)))
    assert _results_show_a_send(str(folder / "results.jsonl"))
    run_at(run_dag, campaign("adv_dry_erases", str(tmp_path), retries=0, dry_run=True))
    (folder / "ledger.sqlite3").unlink()
    evidence = earlier_try_evidence({"ti": ti(first.run_id, "adv_dry_erases")}, str(folder / "results.jsonl"))
    assert evidence is not None, "the only record of 6 sends was overwritten by a dry run"


# ======================================================================================================
# 5. arrived is never accepted
# ======================================================================================================


def test_held_arrived_in_the_same_try_by_an_inline_replay_fails_the_task(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    emulator = globesms_conn()
    emulator.set_faults(script=["internal_error"])
    dag_run = run_at(run_dag, campaign("adv_inline_arrived", str(tmp_path), retries=0))
    assert task_states(dag_run) == {"send": "failed"}
    summaries = xcom_values(dag_run, "send", key="summary")
    if summaries:
        (summary,) = summaries
        assert summary["accepted"] + summary["arrived"] + summary["unknown"] == 6
        assert summary["segments"] == summary["accepted"]
    assert len(emulator.messages()) == 6


def test_held_an_old_received_row_is_not_counted_accepted_on_retry(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    emulator = globesms_conn()
    first = run_at(run_dag, campaign("adv_old_received", str(tmp_path), retries=0))
    folder = Path(task_instance_location(ti(first.run_id, "adv_old_received"), str(tmp_path)))
    with sqlite3.connect(folder / "ledger.sqlite3") as db:
        db.execute("UPDATE ledger SET status = 'received', message_id = NULL WHERE row = 1")
    again = run_at(run_dag, campaign("adv_old_received", str(tmp_path), retries=0))
    assert task_states(again) == {"send": "failed"}
    (summary,) = xcom_values(again, "send", key="summary")
    assert (summary["accepted"], summary["arrived"], summary["segments"]) == (5, 1, 5)
    lax = run_at(run_dag, campaign("adv_old_received", str(tmp_path), retries=0, resend_unknown=True))
    assert task_states(lax) == {"send": "success"}
    assert sorted(Counter(m["to"] for m in emulator.messages()).values()) == [1, 1, 1, 1, 1, 2]


@pytest.mark.parametrize("with_other_run", [False, True], ids=["control_no_other_run", "other_run_at_legacy_path"])
def test_attack_a_wiped_ledger_plus_another_runs_ledger_at_the_legacy_path_resends_everything(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., EmulatorServer],
    tmp_path: Path,
    run_id_is: Callable[[str], None],
    with_other_run: bool,
) -> None:
    """X ('manual__2026-11-23T00:00:00+00:00') try 1 sends 6 into its own folder, one in doubt: it fails. Its
    folder is then lost (wiped volume, another worker) - the case the witness exists for - and meanwhile run Y
    (plain id 'manual__2026-11-23T00_00_00_00_00', whose own 0.3 folder is X's 0.2 folder) has a ledger there.
    X's try 2: no ledger of its own, the witness's folder is gone, so ledger_location adopts Y's non-empty ledger
    and, because it is not empty, the evidence check (witness) is skipped: X sends all 6 again. Without Y the
    same try 2 is refused by the witness (control)."""
    import shutil

    emulator = globesms_conn()
    x_run, y_run = "manual__2026-11-23T00:00:00+00:00", "manual__2026-11-23T00_00_00_00_00"
    dag_id = "adv_wipe_adopt" + ("_y" if with_other_run else "_c")
    base = str(tmp_path)

    def between_tries(context: Any) -> None:
        shutil.rmtree(task_instance_location(ti(x_run, dag_id), base))  # X's folder lost
        if with_other_run:  # what run Y's send leaves in its own folder
            y_folder = Path(task_instance_location(ti(y_run, dag_id), base))
            with SqliteLedger(y_folder / "ledger.sqlite3") as ledger:
                ledger.write_many(
                    [
                        LedgerEntry(
                            "y" * 40, Status.ACCEPTED, 1, "+85291234500", message_id="m", segments=1, updated_at=1
                        )
                    ]
                )

    run_id_is(x_run)
    emulator.set_faults(script=["internal_error"])
    dag = campaign(
        dag_id, base, confirm_by_replay=False, retries=1, retry_delay=timedelta(0), on_retry_callback=between_tries
    )
    x = run_at(run_dag, dag)
    assert x.run_id == x_run
    sent = Counter(m["to"] for m in emulator.messages())
    print("ADV wipe+adopt", with_other_run, task_states(x), dict(sent))
    assert set(sent.values()) == {1}, f"X's retry sent again: {dict(sent)} ({task_states(x)})"


def test_held_an_arrived_message_before_a_quiet_hours_deferral_still_fails_the_last_round(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], quiet_hours_clock: Any, tmp_path: Path
) -> None:
    quiet_hours_clock(datetime(2026, 11, 20, 4, tzinfo=timezone.utc))  # 12:00 in Hong Kong, 23:00 in New York
    emulator = globesms_conn()
    emulator.set_faults(script=["internal_error"])  # the first send's answer lost; the inline replay: arrived
    rows = [{"to": "+85291234500", "tz": "Asia/Hong_Kong"}, {"to": "+12125550123", "tz": "America/New_York"}]
    with DAG("adv_quiet_arrived", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="send",
            recipients=rows,
            message="Hi",
            quiet_hours=("21:00", "08:00"),
            tz_field="tz",
            ledger_uri=str(tmp_path),
            retries=0,
        )
    dag_run = run_at(run_dag, dag)
    sent = Counter(m["to"] for m in emulator.messages())
    summaries = xcom_values(dag_run, "send", key="summary")
    print("ADV quiet", task_states(dag_run), dict(sent), summaries)
    assert task_states(dag_run) == {"send": "failed"}
    assert set(sent.values()) == {1}
    if summaries:
        assert summaries[-1]["accepted"] <= 1
        assert summaries[-1]["arrived"] + summaries[-1]["unknown"] >= 1
