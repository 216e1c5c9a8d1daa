"""Apache Airflow provider for Alibaba Cloud's international SMS API (SendMessageToGlobe).

This module is imported by Airflow's provider discovery and by the client, so it imports nothing.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.3.0.dev0"

CONN_TYPE = "globesms"
HOOK_NAME = "Alibaba Cloud SMS (international)"

# Shown by the connection form (Airflow >= 3.2 reads these without importing the hook).
CONNECTION_FIELDS: dict[str, dict[str, Any]] = {
    "region_id": {
        "label": "Region ID",
        "description": "Alibaba Cloud region of the SMS endpoint. Ignored when an endpoint URL is set.",
        "schema": {
            "type": ["string", "null"],
            "default": "ap-southeast-1",
            "enum": ["ap-southeast-1", "ap-southeast-5", "eu-central-1", "us-east-1", "cn-hongkong", "cn-beijing"],
        },
    },
    "endpoint": {
        "label": "Endpoint URL",
        "description": "Full URL that overrides the region, e.g. http://127.0.0.1:8787 for the local emulator. "
        "Plain http:// is accepted only for loopback addresses.",
        "schema": {"type": ["string", "null"], "format": "url"},
    },
    "security_token": {
        "label": "STS security token",
        "description": "Only for temporary (STS) credentials.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "signature_version": {
        "label": "Signature version",
        "description": "v3 (ACS3-HMAC-SHA256, what the official SDK sends) or v1 (HMAC-SHA1, older).",
        "schema": {"type": ["string", "null"], "default": "v3", "enum": ["v3", "v1"]},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "How long to wait for the API's answer. A send that times out is settled by "
        "resending its exact signed bytes (the API refuses a repeat), never signed and sent anew.",
        "schema": {"type": ["number", "null"], "default": 10, "minimum": 0.1},
    },
    "max_qps": {
        "label": "Max requests per second",
        "description": "SendMessageToGlobe calls per second this connection may make (the account cap is "
        "2,000/s). Split it between parallel tasks with an Airflow pool.",
        "schema": {"type": ["number", "null"], "default": 2000, "minimum": 0.1},
    },
    "default_region": {
        "label": "Default country of numbers",
        "description": "ISO code (e.g. HK) to read numbers written without + and country code as that "
        "country's. Empty: such numbers must carry their country code.",
        "schema": {"type": ["string", "null"]},
    },
}

CONNECTION_UI: dict[str, Any] = {
    "hidden-fields": ["host", "schema", "port", "extra"],
    "relabeling": {"login": "AccessKey ID", "password": "AccessKey Secret"},
    "placeholders": {
        "login": "LTAI5t... (leave empty to use ALIBABA_CLOUD_ACCESS_KEY_ID)",
        "password": "AccessKey secret (or ALIBABA_CLOUD_ACCESS_KEY_SECRET)",
        "region_id": "ap-southeast-1",
        "endpoint": "https://dysmsapi.ap-southeast-1.aliyuncs.com",
        "signature_version": "v3",
        "default_region": "HK",
    },
}

_MODULES = {
    "hooks": ["airflow_provider_globesms.hooks.globesms"],
    "operators": ["airflow_provider_globesms.operators.globesms"],
    "sensors": ["airflow_provider_globesms.sensors.globesms"],
    "triggers": [
        "airflow_provider_globesms.triggers.globesms",
        "airflow_provider_globesms.triggers.alert_digests",
        "airflow_provider_globesms.triggers.arrived_receipts",
    ],
}

CONFIG = {
    "globesms": {
        "description": "Alibaba Cloud SMS (international) provider.",
        "options": {
            "ledger_uri": {
                "description": "Where SendGlobeSmsOperator keeps its send ledgers and results files: a local "
                "directory (the default, $AIRFLOW_HOME/globesms) or any ObjectStoragePath URI (e.g. "
                "s3://bucket/globesms) that every worker can reach. The ledger is what makes a retried, "
                "killed or cleared task send nothing twice.",
                "version_added": "0.1.0",
                "type": "string",
                "example": "s3://my-bucket/globesms",
                "default": None,
            },
            "alerts_uri": {
                "description": "Where GlobeSmsNotifier's storm control keeps its alert windows: a local "
                "directory or an ObjectStoragePath URI every process that runs callbacks can reach (workers, "
                "the dag-processor, the triggerer). Unset: 'alerts' under ledger_uri.",
                "version_added": "0.3.0",
                "type": "string",
                "example": "s3://my-bucket/globesms/alerts",
                "default": None,
            },
            "alert_window": {
                "description": "Seconds between two texts to one recipient for GlobeSmsNotifier's storm control, "
                "for notifiers that do not set storm_window (the alerts in between fold into one digest).",
                "version_added": "0.3.0",
                "type": "float",
                "example": "300",
                "default": "600",
            },
            "push_uri": {
                "description": "Where pushed delivery receipts are kept: the receiver writes them, the delivery "
                "sensor and trigger and the operator read them. A local directory or an ObjectStoragePath URI "
                "every component can reach (receiver, workers, triggerer). Unset: '~push' under ledger_uri.",
                "version_added": "0.3.0",
                "type": "string",
                "example": "s3://my-bucket/globesms/push",
                "default": None,
            },
            "push_secret": {
                "description": "The secret in the push receiver's URL (https://HOST/globesms/push/SECRET/receipts), "
                "at least 32 characters: generate one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'. Unset, the receiver in the api-server "
                "answers nothing. Prefer push_secret_cmd or push_secret_secret.",
                "version_added": "0.3.0",
                "type": "string",
                "sensitive": True,
                "example": None,
                "default": None,
            },
            "push_allow": {
                "description": "Optional comma-separated source addresses or networks (CIDR) the push receiver "
                "accepts pushes from; unset, any address that knows the secret.",
                "version_added": "0.3.0",
                "type": "string",
                "example": "47.74.0.0/16, 8.219.0.0/16",
                "default": None,
            },
            "receipts_by_push": {
                "description": "Whether the delivery sensor and the operator read receipts pushed to the "
                "receiver (Alibaba's HTTP batch push configured in the SMS console): QueryMessage then asks only "
                "about messages with no pushed receipt after push_grace seconds.",
                "version_added": "0.3.0",
                "type": "boolean",
                "example": "True",
                "default": "False",
            },
            "push_grace": {
                "description": "Seconds a message waits for its pushed receipt before the delivery sensor asks "
                "QueryMessage about it (Alibaba retries a failed push after 1, 5 and 10 minutes), and that a "
                "send task waits for receipts confirming messages known only to have arrived.",
                "version_added": "0.3.0",
                "type": "float",
                "example": "600",
                "default": "1200",
            },
            "sandbox_url": {
                "description": "URL of a globesms-emulator whose SMS sandbox inbox the Airflow UI should show: "
                "an 'SMS sandbox' entry in the navigation, and an 'SMS sandbox' link on each send task to its "
                "campaign's page. Unset (the default), nothing is shown. For development; never a real "
                "endpoint.",
                "version_added": "0.1.0",
                "type": "string",
                "example": "http://127.0.0.1:8787",
                "default": None,
            },
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    """The provider's metadata for Airflow's ``apache_airflow_provider`` entry point."""
    integration = "Alibaba Cloud SMS (international)"
    info: dict[str, Any] = {
        "package-name": "airflow-provider-globesms",
        "name": "Alibaba Cloud SMS (international)",
        "description": "Send SMS worldwide (outside the Chinese mainland) through Alibaba Cloud's "
        "SendMessageToGlobe API: hook, bulk operator, delivery sensor and failure notifier.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": integration,
                "external-doc-url": "https://www.alibabacloud.com/help/en/sms/",
                "tags": ["alibaba", "service"],
            }
        ],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_provider_globesms.hooks.globesms.GlobeSmsHook",
                "hook-name": HOOK_NAME,
                "conn-fields": CONNECTION_FIELDS,
                "ui-field-behaviour": CONNECTION_UI,
            }
        ],
    }
    for kind, modules in _MODULES.items():
        info[kind] = [{"integration-name": integration, "python-modules": modules}]
    info["notifications"] = ["airflow_provider_globesms.notifications.globesms.GlobeSmsNotifier"]
    info["extra-links"] = ["airflow_provider_globesms.links.SandboxCampaignLink"]
    info["plugins"] = [
        {"name": "globesms_sandbox", "plugin-class": "airflow_provider_globesms.plugins.GlobeSmsSandboxPlugin"}
    ]
    info["config"] = CONFIG
    return info
