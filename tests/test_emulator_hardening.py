"""The sandbox holds against what older clients and careless callers send (issue 10, part): the signed
Action decides the operation, settings must be finite, and arbitrary action names cannot grow the stats."""

from __future__ import annotations

import dataclasses
import urllib.error

import pytest

from airflow_provider_globesms.emulator import EmulatorServer
from tests.emulator_helpers import send, sign


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_an_unsigned_action_header_cannot_pick_the_operation(globesms_emulator: EmulatorServer, scheme: str) -> None:
    """@alicloud/pop-core sends an x-acs-action header that V1 does not sign; it used to select the handler
    (a plain-text HTTP 500 from a KeyError when it differed from the signed Action)."""
    signed = sign(globesms_emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "hi"}, scheme=scheme)
    if scheme == "v1":
        signed = dataclasses.replace(signed, headers={**signed.headers, "x-acs-action": "NotAnAction"})
    answer = send(globesms_emulator, signed)
    assert (answer.status, answer.code) == (200, "OK")
    assert len(globesms_emulator.messages()) == 1


@pytest.mark.parametrize("value", ["NaN", "inf", "-inf", "fast", None])
def test_settings_must_be_finite_numbers(globesms_emulator: EmulatorServer, value: object) -> None:
    before = globesms_emulator.stats()["settings"]["qps"] if "settings" in globesms_emulator.stats() else None
    with pytest.raises(urllib.error.HTTPError) as caught:
        globesms_emulator.set_settings(qps=value)  # type: ignore[arg-type]
    assert caught.value.code in (400, 422)  # refused (it used to be accepted: NaN disabled the cap)
    if before is not None:
        assert globesms_emulator.stats()["settings"]["qps"] == before


def test_arbitrary_action_names_share_one_bucket(globesms_emulator: EmulatorServer) -> None:
    for n in range(40):
        signed = sign(globesms_emulator, f"Made{n}Up", {"To": "85291234567"}, scheme="v1")
        assert send(globesms_emulator, signed).code == "InvalidAction.NotFound"
    assert set(globesms_emulator.stats()["actions"]) <= {"Unknown", "SendMessageToGlobe", "QueryMessage"}
    assert globesms_emulator.stats()["actions"]["Unknown"]["requests"] == 40
