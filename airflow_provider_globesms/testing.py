"""Helpers for testing DAGs that send SMS, with ``dag.test()`` and the emulator: ``run_dag(dag)`` runs a DAG,
``task_states`` and ``xcom_values`` read what its tasks did (the docs' emulator page shows a whole test).

Airflow 3's ``dag.test()`` runs a DAG only once it is serialized in the metadata database; ``run_dag``
does that for a DAG built in a test or loaded from a file. Needs an initialised database
(``airflow.utils.db.initdb()``) under the test's ``AIRFLOW_HOME``.
"""

from __future__ import annotations

from typing import Any


def run_dag(dag: Any, **test_kwargs: Any) -> Any:
    """Serialize ``dag`` into the metadata database, then ``dag.test(**test_kwargs)``; returns the run."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.utils.session import create_session

    from airflow_provider_globesms._compat import conf, dag_bag

    DagBag, sync_bag_to_db = dag_bag()
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)  # type: ignore[no-untyped-call]
    bag = DagBag(dag_folder=conf.get("core", "dags_folder"))
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    try:
        from airflow.sdk.execution_time.cache import SecretCache

        SecretCache.reset()  # type: ignore[no-untyped-call]  # connections may have changed since
    except ImportError:  # pragma: no cover
        pass
    return dag.test(**test_kwargs)


def xcom_values(dag_run: Any, task_id: str, key: str = "return_value") -> list[Any]:
    """What a task pushed in a finished run: one value per map index, in order."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key)
        rows: list[Any] = list(session.scalars(query).all())
        rows.sort(key=lambda r: r.map_index)
        return [XComModel.deserialize_value(r) for r in rows]


def task_states(dag_run: Any) -> dict[str, str]:
    """``task_id`` (``task_id[map_index]`` when mapped) -> its final state in a finished run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(TaskInstance).where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
            for ti in session.scalars(query).all()
        }
