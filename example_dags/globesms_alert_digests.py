"""The digest sweeper for GlobeSmsNotifier's storm control: deploy this file once and unpause the DAG.

When many alerts come at once, the first goes at once and the rest fold into one digest, sent when the
window ends. The sweeper (an asset watcher in the triggerer) sends it if no later alert does.
"""

from __future__ import annotations

from airflow_provider_globesms.notifications.digest_dag import alert_digest_dag

dag = alert_digest_dag()
