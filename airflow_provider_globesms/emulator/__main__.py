"""``python -m airflow_provider_globesms.emulator``: the same as ``globesms-emulator``."""

import sys

from airflow_provider_globesms.emulator.cli import main

sys.exit(main())
