"""The test process imports Airflow (the operator's helpers): give it a throw-away home, not ~/airflow."""

from __future__ import annotations

import os
import tempfile

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="globesms-cluster-client-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
import logging

logging.getLogger("werkzeug").setLevel(logging.WARNING)
