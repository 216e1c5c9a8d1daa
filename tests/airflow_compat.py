"""The tests' own reach into Airflow where 3.1 and 3.2+ differ (the provider's is airflow_provider_globesms._compat)."""

from __future__ import annotations

from typing import Any

import airflow
from packaging.version import Version

AIRFLOW_VERSION = Version(Version(airflow.__version__).base_version)


def serialize_dag(dag: Any) -> dict[str, Any]:
    """The DAG as the dag processor stores it."""
    try:
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization  # type: ignore[attr-defined,assignment]
    serialized: dict[str, Any] = DagSerialization.serialize_dag(dag)
    return serialized


def async_callback() -> Any:
    """The Deadline Alert callback class that runs a callable in the triggerer."""
    try:
        from airflow.sdk.definitions.callback import AsyncCallback
    except ImportError:  # Airflow 3.1
        from airflow.sdk.definitions.deadline import AsyncCallback  # type: ignore[attr-defined]
    return AsyncCallback


def airflow_get_fernet() -> Any:
    """Airflow's own get_fernet(), where each version keeps it."""
    try:
        from airflow.sdk.crypto import get_fernet
    except ImportError:  # Airflow 3.1
        from airflow.models.crypto import get_fernet  # type: ignore[no-redef,unused-ignore]
    return get_fernet()


def forget_fernet() -> None:
    """Drop Airflow's cached Fernet, so that the next get_fernet() reads [core] fernet_key again."""
    try:
        from airflow.sdk.crypto import get_fernet
    except ImportError:  # Airflow 3.1: core's get_fernet keeps its Fernet in a module global, no cache_clear
        import airflow.models.crypto as core_crypto

        core_crypto._fernet = None  # type: ignore[attr-defined]
        return
    get_fernet.cache_clear()


# Airflow 3.2's templater asks the templated object for render_template_as_native_obj before the DAG; 3.1's
# BaseNotifier asks context["dag"] directly.
NOTIFIER_ASKS_ITSELF_FIRST = Version("3.2") <= AIRFLOW_VERSION

# Airflow 3.2 builds the connection form from get_provider_info's conn-fields; 3.1 only from the hook's
# get_connection_form_widgets, which needs flask_appbuilder and wtforms (the FAB provider).
CONN_FIELDS_READ = Version("3.2") <= AIRFLOW_VERSION

# Airflow 3.3 keeps a task state store (context["task_state_store"]); the tests that assert it skip before.
TASK_STATE_STORE = Version("3.3") <= AIRFLOW_VERSION


def reuse_the_in_process_execution_api() -> None:
    """Airflow 3.1's ``dag.test()`` builds its in-process Execution API app anew for every task (about 3 s of
    route generation, measured; 3.2 and later build it once), which made the floor cell four times slower
    than the newest. On 3.1 only, the tests build it once per process; each task still gets its own DAG bag
    and dependency overrides (set on the app by ``InProcessExecutionAPI.app`` each time)."""
    if Version("3.2") <= AIRFLOW_VERSION:
        return
    import functools

    import airflow.api_fastapi.execution_api.app as execution_api

    execution_api.create_task_execution_api_app = functools.cache(  # type: ignore[assignment]
        execution_api.create_task_execution_api_app
    )
