"""A local emulator of Alibaba Cloud's international SMS API, for demos, tests and development.

It verifies V3 and V1 signatures, enforces the per-key QPS caps, applies the API's business rules,
simulates carrier receipts and can inject faults. Nothing leaves the machine and nothing is billed.
"""

from airflow_provider_globesms.emulator.config import EmulatorConfig, Faults
from airflow_provider_globesms.emulator.gateway import Gateway
from airflow_provider_globesms.emulator.server import EmulatorServer

__all__ = ["EmulatorConfig", "EmulatorServer", "Faults", "Gateway"]
