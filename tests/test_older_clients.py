"""Alibaba's older clients work against the emulator unchanged (issue 10): ``aliyun-python-sdk-core`` with a
``CommonRequest`` and ``@alicloud/pop-core`` (Node.js) with its README's options, beside the official SDK.

Both sign V1 (HMAC-SHA1) their own way: pop-core sends an unsigned ``x-acs-action`` header and, with POST,
the Action only in the form body; the Python core signs GET and POST query strings. Each test checks the
emulator's own record of what arrived, not only the client's answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer

NODE_DIR = Path(__file__).parent / "node"
VERSION = "2018-05-01"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=0)) as server:
        yield server


@pytest.fixture(autouse=True)
def _empty_inbox(emulator: EmulatorServer) -> None:
    emulator.clear()


# --- aliyun-python-sdk-core ----------------------------------------------------------------------

core_client = pytest.importorskip("aliyunsdkcore.client", reason="aliyun-python-sdk-core is a dev dependency")
from aliyunsdkcore.acs_exception.exceptions import ServerException  # noqa: E402
from aliyunsdkcore.auth.credentials import StsTokenCredential  # noqa: E402
from aliyunsdkcore.request import CommonRequest  # noqa: E402


def common_request(emulator: EmulatorServer, action: str, params: dict[str, str], method: str) -> CommonRequest:
    request = CommonRequest()
    request.set_accept_format("json")
    request.set_domain(f"127.0.0.1:{emulator.port}")
    request.set_protocol_type("http")
    request.set_method(method)
    request.set_version(VERSION)
    request.set_action_name(action)
    for name, value in params.items():
        request.add_query_param(name, value)
    return request


def core_call(
    emulator: EmulatorServer, action: str, params: dict[str, str], method: str = "POST", **client: Any
) -> Any:
    acs = core_client.AcsClient(client.pop("ak", "AKID"), client.pop("secret", "SECRET"), "ap-southeast-1", **client)
    return json.loads(acs.do_action_with_exception(common_request(emulator, action, params, method)))


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_python_core_common_request_sends_and_queries(emulator: EmulatorServer, method: str) -> None:
    sent = core_call(emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "Hi Li, 你好"}, method)
    assert sent["ResponseCode"] == "OK"
    [stored] = emulator.messages()
    assert (stored["to"], stored["message"], stored["encoding"]) == ("85291234567", "Hi Li, 你好", "UCS-2")
    found = core_call(emulator, "QueryMessage", {"MessageId": sent["MessageId"]}, method)
    assert found["ResponseCode"] == "OK"
    assert found["To"] == "85291234567"


def test_python_core_batch_send(emulator: EmulatorServer) -> None:
    numbers = ["85291234567", "6591234567"]
    reply = core_call(emulator, "BatchSendMessageToGlobe", {"To": json.dumps(numbers), "Message": "hi all"})
    assert reply["ResponseCode"] == "OK"
    assert sorted(m["to"] for m in emulator.messages()) == sorted(numbers)


def test_python_core_with_an_sts_token(emulator: EmulatorServer) -> None:
    credential = StsTokenCredential("AKID", "SECRET", "STS.token-for-the-test")
    acs = core_client.AcsClient(region_id="ap-southeast-1", credential=credential)
    request = common_request(emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "hi"}, "POST")
    assert json.loads(acs.do_action_with_exception(request))["ResponseCode"] == "OK"
    assert len(emulator.messages()) == 1


def test_python_core_sees_a_wrong_secret_refused(emulator: EmulatorServer) -> None:
    with pytest.raises(ServerException) as caught:
        core_call(emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "hi"}, secret="WRONG")
    assert caught.value.get_error_code() == "SignatureDoesNotMatch"
    assert caught.value.get_http_status() == 400
    assert emulator.messages() == []


# --- @alicloud/pop-core (Node.js) -----------------------------------------------------------------


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the @alicloud/pop-core checks need `node` (and npm to install it)")
    if not (NODE_DIR / "node_modules" / "@alicloud" / "pop-core").is_dir():
        message = "@alicloud/pop-core is not installed: `make test` runs `npm ci --prefix tests/node`"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI has Node: a missing install is a broken build, not a skip
        pytest.skip(message)
    return node


def pop_core(
    emulator: EmulatorServer,
    action: str,
    params: dict[str, Any],
    options: dict[str, Any] | None = None,
    **client: Any,
) -> dict[str, Any]:
    config = {
        "accessKeyId": "AKID",
        "accessKeySecret": "SECRET",
        "endpoint": emulator.url,
        "apiVersion": VERSION,
        **client,
    }
    call = {"client": config, "action": action, "params": params, "options": options or {}}
    done = subprocess.run(
        [_node(), str(NODE_DIR / "pop_core_call.js"), json.dumps(call)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


README_OPTIONS = {  # each way the README shows to call client.request
    "default-GET": {},
    "POST": {"method": "POST"},
    "POST-formatParams-false": {"method": "POST", "formatParams": False},
    "GET-formatAction-false-timeout": {"formatAction": False, "timeout": 10000},
    "POST-extra-headers": {"method": "POST", "headers": {"x-trace-id": "abc"}},
}


@pytest.mark.parametrize("options", README_OPTIONS.values(), ids=README_OPTIONS.keys())
def test_pop_core_sends_with_every_readme_option(emulator: EmulatorServer, options: dict[str, Any]) -> None:
    answer = pop_core(emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "Hi Bo"}, options)
    assert answer["ok"], answer
    assert answer["result"]["ResponseCode"] == "OK"
    [stored] = emulator.messages()
    assert (stored["to"], stored["message"], stored["message_id"]) == (
        "85291234567",
        "Hi Bo",
        answer["result"]["MessageId"],
    )


def test_pop_core_constructor_opts_token_batch_and_query(emulator: EmulatorServer) -> None:
    client = {"securityToken": "STS.token-for-the-test", "opts": {"timeout": 10000}}
    batch = {"To": json.dumps(["85291234567", "6591234567"]), "Message": "hello"}
    answer = pop_core(emulator, "BatchSendMessageToGlobe", batch, {"method": "POST"}, **client)
    assert answer["ok"], answer
    assert len(emulator.messages()) == 2
    message_id = emulator.messages()[0]["message_id"]
    found = pop_core(emulator, "QueryMessage", {"MessageId": message_id}, {"method": "POST"}, **client)
    assert found["ok"], found
    assert found["result"]["MessageId"] == message_id


def test_pop_core_sees_a_wrong_secret_refused(emulator: EmulatorServer) -> None:
    answer = pop_core(emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "hi"}, accessKeySecret="WRONG")
    assert not answer["ok"]
    assert "SignatureDoesNotMatch" in (answer["code"] or answer["message"])
    assert emulator.messages() == []
