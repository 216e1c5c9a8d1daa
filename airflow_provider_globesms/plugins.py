"""The provider's Airflow plugin (entry point ``airflow.plugins``): the SMS sandbox in the UI's navigation,
and the push receiver in the api-server.

The sandbox only when ``[globesms] sandbox_url`` is set; the push receiver (``receiver.receiver_app``,
mounted at ``/globesms``) only when ``[globesms] push_secret`` is. Both are read when Airflow loads its
plugins, in each api-server worker (restart the API server after changing them). The send task's own
link is ``links.SandboxCampaignLink``.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_globesms._compat import conf
from airflow_provider_globesms.links import INBOX_PATH, SandboxCampaignLink, sandbox_url
from airflow_provider_globesms.receiver import URL_PREFIX, receiver_app
from airflow_provider_globesms.storage import CONFIG_SECTION, configured_push_secret, push_store

log = logging.getLogger(__name__)


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


def push_receiver_apps() -> list[dict[str, Any]]:
    """The push receiver, to be mounted at ``/globesms``, when ``[globesms] push_secret`` is set; else none.

    The secret may come from ``push_secret_cmd`` or ``push_secret_secret`` (the option is sensitive). A
    secret the receiver refuses (too short) or an unreadable ``push_allow`` is logged, and nothing is
    served: the rest of the plugin (the sandbox) still loads.
    """
    try:
        secret = configured_push_secret()
    except Exception as exc:  # a failing push_secret_cmd or secrets backend: say so, serve nothing
        log.error("The globesms push receiver is not served: its secret could not be read (%s)", type(exc).__name__)
        return []
    if not secret:
        return []
    allow = (conf.get(CONFIG_SECTION, "push_allow", fallback=None) or "").split(",")
    try:
        app = receiver_app(push_store(), secret, allow=allow)
    except ValueError as exc:
        log.error("The globesms push receiver is not served: %s", exc)
        return []
    return [{"app": app, "url_prefix": URL_PREFIX, "name": "globesms push receiver"}]


class GlobeSmsSandboxPlugin(AirflowPlugin):
    """The sandbox's view and the send task's link, and the push receiver, listed by Airflow's plugin API
    when configured."""

    name = "globesms_sandbox"
    external_views = sandbox_views()
    operator_extra_links = [SandboxCampaignLink()] if external_views else []
    fastapi_apps = push_receiver_apps()
