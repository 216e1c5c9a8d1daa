"""Alert storm control: each alert once, one text per window per recipient, the rest in one digest."""

from airflow_provider_globesms.client.alerts.digest import Alert, backlog_text, muted_text
from airflow_provider_globesms.client.alerts.store import AlertStore, LocalAlertStore, ObjectAlertStore
from airflow_provider_globesms.client.alerts.storm import Route, StormControl, Text, Verdict

__all__ = [
    "Alert",
    "AlertStore",
    "LocalAlertStore",
    "ObjectAlertStore",
    "Route",
    "StormControl",
    "Text",
    "Verdict",
    "backlog_text",
    "muted_text",
]
