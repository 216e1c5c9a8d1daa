"""pytest fixtures for testing DAGs against the emulator.

Enable with ``pytest_plugins = ["airflow_provider_globesms.emulator.pytest_plugin"]`` in a conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from airflow_provider_globesms.emulator.config import EmulatorConfig
from airflow_provider_globesms.emulator.server import EmulatorServer


@pytest.fixture
def globesms_emulator_factory() -> Iterator[Callable[..., EmulatorServer]]:
    """Start emulators with any settings: ``globesms_emulator_factory(delivery_delay=0.1)``."""
    started: list[EmulatorServer] = []

    def start(**settings: object) -> EmulatorServer:
        server = EmulatorServer(EmulatorConfig(**settings)).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def globesms_emulator(globesms_emulator_factory: Callable[..., EmulatorServer]) -> EmulatorServer:
    """An emulator on a free loopback port with key AKID/SECRET and receipts final after 0.2 s."""
    return globesms_emulator_factory(delivery_delay=0.2)
