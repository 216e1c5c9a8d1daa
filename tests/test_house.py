"""The house rules a reader relies on, checked over the package's source (issue 12).

Modules at most 400 lines, functions at most 50, a docstring on every public name, every error the client
raises under ``GlobeSmsError``, and the client core importing nothing from Airflow.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import airflow_provider_globesms
from airflow_provider_globesms.client import GlobeSmsError

PACKAGE = Path(airflow_provider_globesms.__file__).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
# Signals inside the transport, never raised to a caller of the client: each is caught and turned into a
# RequestNotSentError or OutcomeUnknownError (client/call.py) by the phase it happened in.
TRANSPORT_SIGNALS = {"ExchangeError", "ProtocolViolation", "PeerClosed"}


def modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p, _ in modules() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_no_function_over_50_lines() -> None:
    long = {
        f"{path.relative_to(PACKAGE)}:{node.name}": node.end_lineno - node.lineno + 1
        for path, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert long == {}


def _public_definitions(tree: ast.Module) -> Iterator[ast.AST]:
    """Public classes and functions at module level, and the public methods of public classes."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            yield node
            if isinstance(node, ast.ClassDef):
                yield from (
                    item
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and not item.name.startswith("_")
                )


def test_every_public_name_has_a_docstring() -> None:
    missing = [
        f"{path.relative_to(PACKAGE)}:{node.name}"  # type: ignore[attr-defined]
        for path, tree in modules()
        for node in _public_definitions(tree)
        if ast.get_docstring(node) is None  # type: ignore[arg-type]
    ]
    assert missing == []


def test_every_client_error_is_a_globesms_error() -> None:
    """A caller can catch everything the client raises with one ``except GlobeSmsError``."""
    client = importlib.import_module("airflow_provider_globesms.client")
    errors = {
        f"{info.name}.{name}": value
        for info in pkgutil.walk_packages(client.__path__, "airflow_provider_globesms.client.")
        for name, value in vars(importlib.import_module(info.name)).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name
    }
    assert len(errors) > 20  # the walk found the client's errors
    outside = {
        name
        for name, error in errors.items()
        if not issubclass(error, GlobeSmsError) and error.__name__ not in TRANSPORT_SIGNALS
    }
    assert outside == set()


def test_the_client_core_imports_nothing_from_airflow() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path, tree in modules()
        if path.is_relative_to(PACKAGE / "client")
        for node in ast.walk(tree)
        if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "airflow" for a in node.names))
        or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "airflow")
    ]
    assert found == []


def test_no_private_airflow_method_is_overridden() -> None:
    """Our Airflow classes extend Airflow through its public names only: a private method of an Airflow base
    class may change or vanish in any release (``_render``, ``_do_render_template_fields`` were overridden)."""
    overridden = []
    for path in PACKAGE.rglob("*.py"):
        if "client" in path.relative_to(PACKAGE).parts or "emulator" in path.relative_to(PACKAGE).parts:
            continue
        module = importlib.import_module(
            "airflow_provider_globesms." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        )
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            airflow_bases = [base for base in cls.__mro__[1:] if base.__module__.startswith("airflow.")]
            for name, value in vars(cls).items():
                private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
                method = callable(value) or isinstance(value, classmethod | staticmethod | property)
                private = private and method  # not ABC's bookkeeping (_abc_impl)
                if private and any(name in vars(base) for base in airflow_bases):
                    overridden.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
    assert overridden == []


def test_the_old_client_names_still_work_and_say_they_go() -> None:
    """``DysmsClient`` and ``AsyncDysmsClient`` (before 0.2) import with a DeprecationWarning, until 0.3."""
    import warnings

    from airflow_provider_globesms import client
    from airflow_provider_globesms.client import aio

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert client.DysmsClient is client.GlobeSmsClient
        assert aio.AsyncDysmsClient is aio.AsyncGlobeSmsClient
    assert [w.category for w in caught] == [DeprecationWarning, DeprecationWarning]
    assert "0.3" in str(caught[0].message)
