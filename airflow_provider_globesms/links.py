"""The send task's link to its campaign in the SMS sandbox, when ``[globesms] sandbox_url`` is set.

``sandbox_url`` (``make demo`` sets it) is the URL of an emulator (``globesms-emulator``) whose inbox the
Airflow UI should show; ``plugins.py`` adds the inbox to the navigation. Without it nothing is added.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

from airflow_provider_globesms._compat import conf
from airflow_provider_globesms.storage import CONFIG_SECTION, default_campaign_id

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

INBOX_PATH = "/_emulator/ui"
log = logging.getLogger(__name__)


def sandbox_url() -> str | None:
    """``[globesms] sandbox_url`` as ``scheme://host[:port]``, or ``None`` when it is not set or not usable."""
    url = str(conf.get(CONFIG_SECTION, "sandbox_url", fallback="") or "").strip()
    if not url:
        return None
    problem = sandbox_url_problem(url)
    if problem:
        _warn_once(problem)
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@functools.lru_cache(maxsize=8)
def _warn_once(problem: str) -> None:
    log.warning("[%s] sandbox_url is ignored: %s", CONFIG_SECTION, problem)


_HOST = re.compile(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]")


def sandbox_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the sandbox's address, or ``None`` when it can.

    The inbox's pages link to each other by absolute paths, so it must be served at the root of its origin;
    a query or a user name would carry a secret (a ``?token=``) into every Airflow user's links.
    """
    if any(ch in "?#@\\\"'<>`{}|^" or ord(ch) < 33 or ord(ch) == 127 for ch in url):
        return "give only scheme, host and port, such as http://127.0.0.1:8787 (no query, fragment or user)"
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError on a port that is not a number from 0 to 65535
    except ValueError as exc:
        return f"not a URL ({exc})"
    host = parts.netloc.rsplit(":", 1)[0] if parts.port is not None else parts.netloc
    if parts.scheme not in ("http", "https") or not _HOST.fullmatch(host or "-") or not parts.hostname:
        return "it must be an http:// or https:// URL with a host, such as http://127.0.0.1:8787"
    if port == 0 or parts.path.strip("/"):
        return "give only scheme, host and port: the inbox is served at the root of its origin"
    return None


def campaign_url(base: str, campaign_id: str) -> str:
    """The sandbox page of one campaign (Alibaba's TaskId)."""
    return f"{base}{INBOX_PATH}/campaign?id={quote(campaign_id, safe='')}"


class SandboxCampaignLink(BaseOperatorLink):
    """ "SMS sandbox" on a send task: its campaign's page in the sandbox inbox (counts, receipts)."""

    name = "SMS sandbox"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The campaign's page; empty when no sandbox is configured (then no link is shown)."""
        base = sandbox_url()
        if base is None:
            return ""
        campaign = getattr(operator, "campaign_id", None) or default_campaign_id(
            ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index
        )
        return campaign_url(base, str(campaign))


class SandboxLinks:
    """``operator_extra_links`` that holds the sandbox link only while ``sandbox_url`` is set.

    A descriptor, not a property: Airflow reads the attribute from the operator class too (mapped tasks).
    It is read when a DAG is parsed (which links the UI lists) and when a task ends (the link's URL).
    """

    def __get__(self, instance: object, owner: type | None = None) -> tuple[BaseOperatorLink, ...]:
        return (SandboxCampaignLink(),) if sandbox_url() else ()
