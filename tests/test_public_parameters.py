"""Every public parameter of the operator, sensor, trigger, hook and notifier is described where the docs'
API reference reads it (a ``:param name:`` line with text), and no such line names a parameter that is gone."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from airflow_provider_globesms.notifications.globesms import GlobeSmsNotifier, send_globe_sms_notification
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor
from airflow_provider_globesms.triggers.globesms import GlobeSmsDeliveryTrigger

PUBLIC = [SendGlobeSmsOperator, GlobeSmsDeliverySensor, GlobeSmsDeliveryTrigger, GlobeSmsHook, GlobeSmsNotifier]
PARAM = re.compile(r":param (\w+):(.*)")


def described(doc: str | None) -> dict[str, str]:
    """``:param`` names and their first line of text."""
    return {name: text.strip() for name, text in PARAM.findall(doc or "")}


def parameters(function: Callable[..., Any]) -> list[str]:
    skipped = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [
        p.name for p in inspect.signature(function).parameters.values() if p.name != "self" and p.kind not in skipped
    ]


def own_public_methods(cls: type) -> list[Callable[..., Any]]:
    """Methods a user calls: defined on the class itself, public, not an Airflow base class's (``execute``,
    ``render_template_fields``: Airflow calls those, with its own documented arguments)."""
    inherited = {name for base in cls.__mro__[1:] for name in vars(base)}
    return [
        member
        for name, member in vars(cls).items()
        if not name.startswith("_") and name not in inherited and inspect.isfunction(member)
    ]


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_every_constructor_parameter_is_described(cls: type) -> None:
    docs = {**described(cls.__doc__), **described(cls.__init__.__doc__)}  # type: ignore[misc]
    missing = [name for name in parameters(cls.__init__) if not docs.get(name)]  # type: ignore[misc]
    assert not missing, f"{cls.__name__}: no :param line (or an empty one) for {missing}"


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_no_param_line_names_a_parameter_that_is_gone(cls: type) -> None:
    stale = set(described(cls.__doc__)) - set(parameters(cls.__init__))  # type: ignore[misc]
    assert not stale, f"{cls.__name__}: :param lines for parameters it does not take: {sorted(stale)}"


@pytest.mark.parametrize(
    "method",
    [m for cls in PUBLIC for m in own_public_methods(cls)] + [send_globe_sms_notification],
    ids=lambda m: m.__qualname__,
)
def test_every_parameter_of_a_public_method_is_described(method: Callable[..., Any]) -> None:
    docs = described(method.__doc__)
    missing = [name for name in parameters(method) if name != "context" and not docs.get(name)]
    assert not missing, f"{method.__qualname__}: no :param line for {missing}"
    taken = set(inspect.signature(method).parameters)  # **options is described too
    assert set(docs) <= taken, f"{method.__qualname__}: :param lines for what it does not take"


def test_the_check_sees_a_missing_description() -> None:
    """The rule itself: a class with an undescribed parameter is caught."""

    class Undocumented:
        """:param a: described."""

        def __init__(self, a: int, b: int) -> None:
            pass

    docs = described(Undocumented.__doc__)
    assert [name for name in parameters(Undocumented.__init__) if not docs.get(name)] == ["b"]
