"""Bulk sending: validate -> render -> rate-limit -> send -> record, in constant memory.

``prepare``: ``Campaign.prepare`` turns one recipient row into a validated request (or a ``RowError``), and
``validate`` runs it over every row before anything is sent. ``spill``: the valid messages wait on disk.
``sender``: ``BulkSender`` streams them again, many in flight on one event loop (latency, not CPU, bounds a
send), paced by the client's rate limiter at the account's QPS cap, and the ledger makes every message
exactly-once across retries, killed workers and cleared tasks (see ``ledger``). Reporting (progress, the
results file, the summary) is in ``report``. ``collector`` keeps the garbage collector off the task's
existing heap while all this runs.

Nothing here imports Airflow; the operator passes in the renderer, the rows and the stores.
"""

from airflow_provider_globesms.client.bulk.collector import existing_objects_frozen
from airflow_provider_globesms.client.bulk.commit import SendGuard
from airflow_provider_globesms.client.bulk.prepare import (
    MAX_REASONS,
    Campaign,
    Deduplicator,
    Held,
    PreparedMessage,
    PreparedRow,
    RowError,
    Suppressed,
    ValidationReport,
    validate,
)
from airflow_provider_globesms.client.bulk.sender import BulkSender
from airflow_provider_globesms.client.bulk.spill import Spill
from airflow_provider_globesms.client.campaign.budget import Budget
from airflow_provider_globesms.client.campaign.suppression import SuppressionList
from airflow_provider_globesms.client.errors import LedgerError, RenderError

__all__ = [
    "MAX_REASONS",
    "Budget",
    "BulkSender",
    "Campaign",
    "Deduplicator",
    "Held",
    "LedgerError",
    "PreparedMessage",
    "PreparedRow",
    "RenderError",
    "RowError",
    "SendGuard",
    "Spill",
    "Suppressed",
    "SuppressionList",
    "ValidationReport",
    "existing_objects_frozen",
    "validate",
]
