"""The house rules a reader relies on, checked over the package's source (issue 12).

Modules at most 400 lines, functions at most 50, a docstring on every public name, every error the client
raises under ``GlobeSmsError``, no private Airflow method overridden, and the layers declared in pyproject.toml
(import-linter) holding, with a scratch change against each failing it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import airflow_provider_globesms
from airflow_provider_globesms.client import GlobeSmsError

PACKAGE = Path(airflow_provider_globesms.__file__).parent
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"  # the contracts (beside the tests in a cell)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
# Signals inside the transport, never raised to a caller of the client: each is caught and turned into a
# RequestNotSentError or OutcomeUnknownError (client/wire/call.py) by the phase it happened in.
TRANSPORT_SIGNALS = {"ExchangeError", "ProtocolViolation", "PeerClosed"}


def modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p, _ in modules() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_no_function_over_50_lines() -> None:
    """Counted from the first line of the body (its docstring, if any) to the last: a parameter list is a
    declaration, one per line as ruff formats it (the operator's constructor declares 35), not logic."""
    long = {
        f"{path.relative_to(PACKAGE)}:{node.name}": node.end_lineno - node.body[0].lineno + 1
        for path, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.body[0].lineno + 1 > MAX_FUNCTION_LINES
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


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts (pyproject.toml) over the package found under ``root``."""
    linter = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [str(linter), "--config", str(PYPROJECT), "--no-cache"]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=120, check=False)


def test_the_layers_hold() -> None:
    """The contracts in pyproject.toml: Airflow adapters above the core, the core free of Airflow and of the
    emulator, the emulator off the core's clients, the core's rooms in order, no cycles (``make test`` runs
    ``lint-imports`` too)."""
    done = lint_imports(PACKAGE.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "added", "broken"),
    [
        ("client/rules/phone.py", "import airflow.sdk", "The client core imports nothing of Airflow"),
        ("client/errors.py", "from airflow_provider_globesms.client.ledger import lease", "rooms, in their order"),
        ("client/wire/retry.py", "from airflow_provider_globesms.emulator import config", "emulator beside them"),
        ("emulator/carrier.py", "from airflow_provider_globesms.client import blocking", "never its clients"),
        ("receiver/app.py", "from airflow_provider_globesms import storage", "receiver imports nothing of Airflow"),
        ("operators/send_plan.py", "from airflow_provider_globesms.operators import globesms", "No import cycles"),
    ],
)
def test_a_scratch_change_against_the_layers_fails_them(tmp_path: Path, module: str, added: str, broken: str) -> None:
    """Each contract bites: a copy of the package with one import added fails the contract it breaks, also when
    the import is for type checking only."""
    copy = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / module
    path.write_text(path.read_text() + f"\n\nimport typing\n\nif typing.TYPE_CHECKING:\n    {added}\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout
    assert f"{broken}" in done.stdout.split("Broken contracts")[-1], done.stdout


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


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("airflow_provider_globesms.client", "GlobeSmsClient"),
        ("airflow_provider_globesms.client", "AsyncGlobeSmsClient"),
        ("airflow_provider_globesms.client.aio", "AsyncGlobeSmsClient"),
        ("airflow_provider_globesms.client.blocking", "GlobeSmsClient"),
        ("airflow_provider_globesms.client.errors", "GlobeSmsError"),
        ("airflow_provider_globesms.operators.globesms", "SendGlobeSmsOperator"),
        ("airflow_provider_globesms.sensors.globesms", "GlobeSmsDeliverySensor"),
        ("airflow_provider_globesms.triggers.globesms", "GlobeSmsDeliveryTrigger"),
        ("airflow_provider_globesms.notifications.globesms", "GlobeSmsNotifier"),
        ("airflow_provider_globesms.hooks.globesms", "GlobeSmsHook"),
        ("airflow_provider_globesms.emulator", "EmulatorServer"),
        ("airflow_provider_globesms.emulator.cli", "main"),
        ("airflow_provider_globesms.emulator.pytest_plugin", "globesms_emulator"),
        ("airflow_provider_globesms.testing", "run_dag"),
    ],
)
def test_the_public_import_paths_hold(module: str, name: str) -> None:
    """What users import, from where the docs say; rooms inside the core may move, these may not."""
    assert getattr(importlib.import_module(module), name)


def test_no_module_imports_itself_back_through_a_package() -> None:
    """No cycle at all in the module graph, a package's ``__init__`` and its own modules included (which
    ``acyclic_siblings`` does not look at), type-checking and lazy imports counted."""
    import grimp

    graph = grimp.build_graph(PACKAGE.name)
    cycles = strongly_connected(graph.modules, graph.find_modules_directly_imported_by)
    assert [sorted(c) for c in cycles if len(c) > 1] == []


def strongly_connected(nodes: set[str], edges: Callable[[str], set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, without recursion (a long chain of imports is no stack)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges(root) & nodes)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges(child) & nodes))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_importing_the_whole_core_loads_nothing_of_airflow() -> None:
    """What no static check sees (``importlib.import_module("airflow")``): every module of the core imported
    in a fresh interpreter, and then nothing of Airflow, of the adapters or of the emulator is loaded."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import airflow_provider_globesms.client as core\n"
        "for info in pkgutil.walk_packages(core.__path__, core.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        "outside = ('airflow_provider_globesms.client', 'airflow_provider_globesms')\n"
        "print('\\n'.join(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')\n"
        "    or (m.startswith('airflow_provider_globesms.') and not m.startswith(outside[0]))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
