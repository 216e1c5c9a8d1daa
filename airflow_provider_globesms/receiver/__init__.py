"""The push receiver: Alibaba's HTTP batch push of delivery receipts, stored durably before it is answered.

One ASGI app (``receiver_app``), served two ways, at the same URL path either way::

    POST https://HOST/globesms/push/<secret>/receipts      (body: a JSON array of receipts)

- **In Airflow's api-server**, by the provider's plugin: set ``[globesms] push_secret`` (at least 32
  URL-safe characters; ``push_secret_cmd`` or ``push_secret_secret`` keep it out of the config file),
  optionally ``[globesms] push_allow`` (addresses or CIDR networks) and ``[globesms] push_uri`` (where the
  receipts are kept), and restart the api-server: the plugin mounts the app at ``/globesms``. The
  api-server gives a plugin's app no authentication; the app checks the secret and the source itself.
- **Standalone**, without Airflow's metadata database (nothing here imports Airflow): the
  ``globesms-receiver`` command serves the same app under ``/globesms`` with uvicorn::

      GLOBESMS_PUSH_SECRET=... globesms-receiver --store s3://bucket/globesms/push --host 0.0.0.0

  (``--secret-file`` reads the secret from an owner-only file instead; it is never a command-line argument.)

Answers: ``200 {"code": 0, "msg": "OK"}`` only once the push is durable; ``503`` when the store failed,
so Alibaba pushes again (after 1, 5 and 10 minutes); ``400``/``408``/``413`` for a body refused whole,
nothing stored; ``404`` (byte for byte an unknown path's answer) for a wrong secret or a source outside
the allowlist. Records that cannot be read are kept in the store's dead-letter area with the reason.
The secret never reaches a log: access log lines show ``/globesms/push/***/receipts``.
"""

from __future__ import annotations

from airflow_provider_globesms.receiver.app import URL_PREFIX, check_secret, parse_allow, receiver_app
from airflow_provider_globesms.receiver.redaction import SecretPathFilter, install_log_redaction, redact_path

__all__ = [
    "URL_PREFIX",
    "SecretPathFilter",
    "check_secret",
    "install_log_redaction",
    "parse_allow",
    "receiver_app",
    "redact_path",
]
