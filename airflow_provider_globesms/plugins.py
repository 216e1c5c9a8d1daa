"""The provider's Airflow plugin (entry point ``airflow.plugins``): the SMS sandbox in the UI's navigation.

Only when ``[globesms] sandbox_url`` is set; it is read when Airflow loads its plugins (restart the API
server after changing it). The send task's own link is ``links.SandboxCampaignLink``.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_globesms.links import INBOX_PATH, SandboxCampaignLink, sandbox_url


def sandbox_views() -> list[dict[str, Any]]:
    """The navigation entry, embedded in Airflow's UI, when a sandbox is configured; else none."""
    base = sandbox_url()
    if base is None:
        return []
    return [
        {
            "name": "SMS sandbox",
            "href": f"{base}{INBOX_PATH}",
            "url_route": "sms-sandbox",
            "destination": "nav",
            "category": "browse",
        }
    ]


class GlobeSmsSandboxPlugin(AirflowPlugin):
    """The sandbox's view and the send task's link, listed by Airflow's plugin API when configured."""

    name = "globesms_sandbox"
    external_views = sandbox_views()
    operator_extra_links = [SandboxCampaignLink()] if external_views else []
