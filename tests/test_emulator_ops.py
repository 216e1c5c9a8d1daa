"""Operating the emulator: fault injection, inspection, the command line, persistence."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from alibabacloud_dysmsapi20180501 import models as sms_models
from alibabacloud_dysmsapi20180501.client import Client as SdkClient
from alibabacloud_tea_openapi import models as openapi_models

from airflow_provider_globesms.client import Credentials, GlobeSmsClient
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer, Faults
from airflow_provider_globesms.emulator.cli import parser
from tests.emulator_helpers import StoppedClock, call, send, sign

SEND_PARAMS = {"To": "85291234567", "Message": "hello"}


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=0, seed=3)) as server:
        yield server


# --- faults ------------------------------------------------------------------------------------------


def test_throttle_fault(emulator: EmulatorServer) -> None:
    emulator.set_faults(throttle=1.0)
    answer = call(emulator, "SendMessageToGlobe", SEND_PARAMS)
    assert (answer.status, answer.code) == (400, "Throttling.User")
    assert emulator.messages() == []


def test_5xx_fault(emulator: EmulatorServer) -> None:
    emulator.set_faults(unavailable=1.0)
    answer = call(emulator, "SendMessageToGlobe", SEND_PARAMS)
    assert (answer.status, answer.code) == (503, "ServiceUnavailable")
    assert emulator.messages() == []


def test_old_fault_names_still_work(emulator: EmulatorServer) -> None:
    """``error_5xx`` (the name before 0.2, and ``--error-ratio`` on the command line) still means 503."""
    assert emulator.set_faults(error_5xx=0.25)["unavailable"] == 0.25
    emulator.set_faults(error_5xx=0.0, script=["error_5xx"])
    answer = call(emulator, "SendMessageToGlobe", SEND_PARAMS)
    assert (answer.status, answer.code) == (503, "ServiceUnavailable")
    assert emulator.stats()["actions"]["SendMessageToGlobe"]["fault_unavailable"] == 1
    old, new = (parser().parse_args([flag, "0.5"]) for flag in ("--error-ratio", "--unavailable-ratio"))
    assert old.unavailable_ratio == new.unavailable_ratio == 0.5


def test_reset_fault_resets_the_tcp_connection(emulator: EmulatorServer) -> None:
    emulator.set_faults(reset=1.0)
    request = sign(emulator, "SendMessageToGlobe", SEND_PARAMS)
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        send(emulator, request)
    assert emulator.messages() == []
    assert emulator.stats()["actions"]["SendMessageToGlobe"]["fault_reset"] == 1


def test_hang_fault_accepts_then_holds_the_reply(emulator: EmulatorServer) -> None:
    emulator.set_faults(hang=1.0, hang_seconds=0.8)
    started = time.monotonic()
    answer = call(emulator, "SendMessageToGlobe", SEND_PARAMS)
    assert answer.code == "OK"
    assert time.monotonic() - started >= 0.8
    assert len(emulator.messages()) == 1


def test_hang_fault_makes_the_client_report_unknown_not_resend(emulator: EmulatorServer) -> None:
    from airflow_provider_globesms.client import OutcomeUnknownError, Timeout

    emulator.set_faults(hang=1.0, hang_seconds=5)  # read timeout 1.5 s: the replay's quick refusal fits in it
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url, timeout=Timeout(1, 1.5))
    with client, pytest.raises(OutcomeUnknownError):
        client.send_message("+85291234567", "hello")
    # The original hung; its byte-identical replay met SignatureNonceUsed: one message, never two.
    assert emulator.stats()["actions"]["SendMessageToGlobe"]["requests"] == 2
    assert len(emulator.messages()) == 1


@pytest.mark.parametrize(("fault", "arrived"), [("hang", True), ("reset", False)])
def test_the_blocking_client_settles_a_request_in_doubt_by_replaying_it(
    emulator: EmulatorServer, fault: str, arrived: bool
) -> None:
    """``replay_send`` on the request an ``OutcomeUnknownError`` kept: arrived, it is refused as seen (never a
    second message); lost before the gateway processed it, it is sent now, once."""
    from airflow_provider_globesms.client import OutcomeUnknownError, ReceivedWithoutAnswerError, RetryPolicy, Timeout

    emulator.set_faults(script=[fault], hang_seconds=5)
    policy = RetryPolicy(confirm_by_replay=False)
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url, timeout=Timeout(1, 1.5), retry=policy)
    with client:
        with pytest.raises(OutcomeUnknownError) as doubt:
            client.send_message("+85291234567", "hello")
        assert doubt.value.request is not None
        if arrived:
            with pytest.raises(ReceivedWithoutAnswerError):
                client.replay_send(doubt.value.request)
        else:
            assert client.replay_send(doubt.value.request).message_id
    assert len(emulator.messages()) == 1


def test_fault_ratios_hold_over_many_calls() -> None:
    with EmulatorServer(EmulatorConfig(delivery_delay=0, seed=11, faults=Faults(throttle=0.3))) as emulator:
        answers = [call(emulator, "SendMessageToGlobe", {"To": f"8529123{n:04d}", "Message": "hi"}) for n in range(300)]
    throttled = sum(a.code == "Throttling.User" for a in answers)
    assert 60 <= throttled <= 120  # 30% of 300, with room for chance


def test_faults_spare_queries(emulator: EmulatorServer) -> None:
    sent = call(emulator, "SendMessageToGlobe", SEND_PARAMS)
    emulator.set_faults(unavailable=1.0)
    assert call(emulator, "QueryMessage", {"MessageId": sent.body["MessageId"]}).code == "OK"


def test_control_endpoint_changes_faults_at_run_time(emulator: EmulatorServer) -> None:
    assert emulator.set_faults(throttle=0.25, hang_seconds=5)["throttle"] == 0.25
    assert emulator.set_faults(script=["reset", "hang:QueryMessage"])["script"] == ["reset", "hang:QueryMessage"]
    assert emulator.set_faults(throttle=0)["throttle"] == 0
    for bad in ({"throttle": 2}, {"explode": 1}, {"script": ["meteor"]}):
        with pytest.raises(urllib.error.HTTPError) as caught:
            emulator.set_faults(**bad)
        assert caught.value.code == 422


def test_settings_change_at_run_time(emulator: EmulatorServer) -> None:
    settings = emulator.set_settings(latency_ms=150, failure_rate=0.5)
    assert (settings["latency_ms"], settings["failure_rate"]) == (150, 0.5)
    started = time.monotonic()
    call(emulator, "SendMessageToGlobe", SEND_PARAMS)
    assert time.monotonic() - started >= 0.15
    assert "SECRET" not in json.dumps(settings)


# --- inspection --------------------------------------------------------------------------------------


def test_messages_can_be_filtered_and_cleared(emulator: EmulatorServer) -> None:
    StoppedClock(emulator)  # "the last second" holds all three calls, however slow
    call(emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "a", "TaskId": "c1"})
    call(emulator, "SendMessageToGlobe", {"To": "6591234567", "Message": "b", "TaskId": "c1"})
    call(emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "c", "TaskId": "c2"})
    assert [m["message"] for m in emulator.messages(to="+85291234567")] == ["a", "c"]
    assert [m["message"] for m in emulator.messages(to="85291234567", task_id="c2")] == ["c"]
    assert len(emulator.messages(task_id="c1")) == 2
    message = emulator.messages(task_id="c2")[0]
    assert set(message) >= {"message_id", "to", "from", "message", "segments", "status", "task_id", "submitted_at"}
    stats = emulator.stats()
    assert stats["actions"]["SendMessageToGlobe"]["ok"] == 3
    assert stats["messages"]["total"] == 3
    assert stats["windows"]["SendMessageToGlobe"]["AKID"]["rate_last_second"] >= 3
    assert emulator.clear() == 3
    assert emulator.messages() == []
    assert emulator.stats()["actions"] == {}


def test_health_and_openapi_docs(emulator: EmulatorServer) -> None:
    with urllib.request.urlopen(f"{emulator.url}/_emulator/health") as response:
        assert json.loads(response.read()) == {"status": "ok"}
    with urllib.request.urlopen(f"{emulator.url}/_emulator/openapi.json") as response:
        assert "/_emulator/messages" in json.loads(response.read())["paths"]


# --- command line ------------------------------------------------------------------------------------


def start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_globesms.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on http://127.0.0.1:" not in line:
        process.kill()
        raise AssertionError(line + process.communicate()[1])
    return process, line.split("listening on ")[1].split()[0]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_the_official_sdk_and_stops_cleanly(stop_signal: signal.Signals) -> None:
    process, url = start_cli("--access-key-id", "K1", "--access-key-secret", "S1", "--delivery-delay", "0")
    try:
        config = openapi_models.Config(
            access_key_id="K1", access_key_secret="S1", protocol="HTTP", endpoint=url.removeprefix("http://")
        )
        body = (
            SdkClient(config)
            .send_message_to_globe(sms_models.SendMessageToGlobeRequest(to="85291234567", message="from the CLI"))
            .body
        )
        assert body.response_code == "OK"
    finally:
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "stopped" in out


def test_cli_reads_a_keys_file_and_applies_flags(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nTEAM1:secret-one\nTEAM2:secret-two\n")
    process, url = start_cli("--keys-file", str(keys), "--qps", "7", "--throttle-ratio", "0.5", "--seed", "4")
    try:
        with urllib.request.urlopen(f"{url}/_emulator/settings") as response:
            settings = json.loads(response.read())
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert settings["access_key_ids"] == ["TEAM1", "TEAM2"]
    assert settings["qps"] == 7
    assert settings["faults"]["throttle"] == 0.5


def test_cli_reports_a_busy_port_clearly(emulator: EmulatorServer) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_globesms.emulator", "--port", str(emulator.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{emulator.port}" in done.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("globesms-emulator")
    assert script.exists()
    assert os.access(script, os.X_OK)


def test_messages_persist_in_a_db_file(tmp_path: Path) -> None:
    db = str(tmp_path / "messages.sqlite")
    with EmulatorServer(EmulatorConfig(db=db, delivery_delay=0)) as first:
        sent = call(first, "SendMessageToGlobe", SEND_PARAMS).body["MessageId"]
    with EmulatorServer(EmulatorConfig(db=db, delivery_delay=0)) as second:
        assert [m["message_id"] for m in second.messages()] == [sent]
        assert call(second, "QueryMessage", {"MessageId": sent}).body["ErrorCode"] == "DELIVERED"
