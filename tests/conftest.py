"""Shared test set-up: an isolated AIRFLOW_HOME on SQLite, the emulator fixtures, DAG-run helpers.

The environment is fixed here, at import, because Airflow reads its configuration once, on first import.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="globesms-airflow-home-"))
(_AIRFLOW_HOME / "dags").mkdir()
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_AIRFLOW_HOME / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP"] = r"airflow_provider_globesms\..*"
os.environ.pop("AIRFLOW_CONN_GLOBESMS_DEFAULT", None)
for _name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN"):
    os.environ.pop(_name, None)

import json  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from airflow_provider_globesms import testing  # noqa: E402
from airflow_provider_globesms.emulator import EmulatorServer  # noqa: E402
from tests.airflow_compat import forget_fernet, reuse_the_in_process_execution_api  # noqa: E402

reuse_the_in_process_execution_api()

pytest_plugins = ["airflow_provider_globesms.emulator.pytest_plugin"]

AIRFLOW_HOME = _AIRFLOW_HOME


def connection_json(endpoint: str, **extra: Any) -> str:
    """The one-variable connection of the README, pointed at ``endpoint``."""
    login = extra.pop("login", "AKID")
    password = extra.pop("password", "SECRET")
    return json.dumps(
        {"conn_type": "globesms", "login": login, "password": password, "extra": {"endpoint": endpoint, **extra}}
    )


@pytest.fixture
def globesms_conn(
    monkeypatch: pytest.MonkeyPatch, globesms_emulator: EmulatorServer
) -> Iterator[Callable[..., EmulatorServer]]:
    """Point ``globesms_default`` at the emulator; call it again to change extras."""

    def configure(conn_id: str = "globesms_default", **extra: Any) -> EmulatorServer:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(globesms_emulator.url, **extra))
        _forget_cached_connections()
        return globesms_emulator

    configure()
    yield configure
    _forget_cached_connections()


def _forget_cached_connections() -> None:
    try:
        from airflow.sdk.execution_time.cache import SecretCache
    except ImportError:  # pragma: no cover
        return
    SecretCache.reset()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the SQLite metadata database once per session (about two seconds)."""
    from airflow.utils import db

    db.initdb()
    return AIRFLOW_HOME


@pytest.fixture
def run_dag(airflow_db: Path) -> Callable[..., Any]:
    """Run an in-memory DAG with ``dag.test()``: it is serialized first, as the dag processor would."""
    return testing.run_dag


@pytest.fixture(autouse=True)
def own_alert_windows(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own alert storm windows (``[globesms] alerts_uri``): one test's alerts never fold
    another's, whichever order xdist runs them in."""
    folder = tmp_path_factory.mktemp("alerts")
    monkeypatch.setenv("AIRFLOW__GLOBESMS__ALERTS_URI", str(folder))
    return folder


@pytest.fixture(scope="session", autouse=True)
def memory_object_storage() -> None:
    """``memory://`` as an ObjectStoragePath scheme: a stand-in for s3:// that never leaves the process.

    Providers plug filesystems in through Airflow's registry (``get_fs`` per scheme); this does the same
    for fsspec's in-memory filesystem, test-only.
    """
    from airflow.sdk.io import fs
    from fsspec.implementations.memory import MemoryFileSystem  # type: ignore[import-untyped]

    fs._BUILTIN_SCHEME_TO_FS["memory"] = lambda _conn_id, options: MemoryFileSystem(**options)
    fs._register_filesystems.cache_clear()


class QuietHoursClock:
    """The quiet-hours clock under a test's control: it reads ``now``; each deferral's trigger (Airflow's own
    DateTimeTrigger, run for real) moves it to the moment waited for, plus 30 s, as the triggerer's wait would.
    Moments in the past make the trigger fire at once."""

    def __init__(self, now: Any) -> None:
        self.now = now
        self.moments: list[Any] = []

    def trigger(self, moment: Any) -> Any:
        from datetime import timedelta

        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        self.moments.append(moment)
        self.now = moment + timedelta(seconds=30)
        return DateTimeTrigger(moment=moment)


@pytest.fixture
def quiet_hours_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], QuietHoursClock]:
    """``clock = quiet_hours_clock(datetime(..., tzinfo=UTC))``: the operator's quiet hours then run on it."""
    from airflow_provider_globesms.client.campaign import quiet_hours
    from airflow_provider_globesms.operators import campaign_controls

    def start(now: Any) -> QuietHoursClock:
        clock = QuietHoursClock(now)
        monkeypatch.setattr(quiet_hours, "utc_now", lambda: clock.now)
        monkeypatch.setattr(campaign_controls, "DateTimeTrigger", clock.trigger)
        return clock

    return start


@pytest.fixture
def fernet(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """``fernet("key1,key2")`` sets [core] fernet_key for the runs that follow."""

    def configure(value: str) -> None:
        monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", value)
        forget_fernet()

    yield configure
    forget_fernet()


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common default umask, under which a file made without care is world-readable."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


# The longest tests first (a kill test takes two minutes): pytest-xdist hands tests out in collection order,
# so a long one drawn last would leave the other core idle while it runs.
LONGEST_FIRST = ("test_operator_reliability.py", "test_honest_evidence.py", "test_example_by_hand.py", "test_chaos.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)
