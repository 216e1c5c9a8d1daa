"""How the operator keeps Airflow's templating to the message: rows and numbers are data (``ShownMasked``),
the message is compiled once and rendered per recipient (``compile_message``, ``row_renderer``)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2
from airflow.sdk import literal

from airflow_provider_globesms.client import mask_number
from airflow_provider_globesms.client.bulk import RenderError
from airflow_provider_globesms.client.rules.phone import scrub_numbers

LITERAL = type(literal(None))  # what airflow.sdk.literal() wraps a value in (its class is not public)

MESSAGE_FILE_SUFFIXES = (".txt", ".j2")  # a message ending so is the name of a template file
_JINJA = re.compile(r"\{[{%#]")  # the start of a Jinja expression, statement or comment


class ShownMasked:
    """Numbers or rows, kept whole for ``execute`` but stored and shown by Airflow (the serialized DAG, the
    rendered fields in the metadata database, the UI) as ``shown``: masked numbers, or a count of rows.

    Airflow serializes a template field through its ``serialize()`` method when it has one, and renders
    it through ``resolve()``: rows are data, so they resolve to themselves, never rendered as Jinja.
    """

    __slots__ = ("shown", "value")

    def __init__(self, value: Any, shown: Any) -> None:
        self.value = value
        self.shown = shown

    @classmethod
    def numbers(cls, to: Any) -> ShownMasked:
        """``to`` (one number or several) shown as masked numbers."""
        return cls(to, [mask_number(n) for n in ([to] if isinstance(to, str | int) else to)])

    @classmethod
    def rows(cls, rows: Any) -> ShownMasked:
        """Rows shown as their count and field names."""
        return cls(rows, describe_rows(rows))

    def resolve(self, context: Any) -> ShownMasked:
        """What Airflow's rendering makes of it: itself (data is never a template)."""
        return self

    def serialize(self) -> Any:
        """What Airflow stores and shows for this field."""
        return self.shown

    def __repr__(self) -> str:
        return repr(self.shown)


def has_template(value: Any) -> bool:
    """Whether ``to`` is for Airflow to render or resolve first: Jinja markup in it, or an XComArg."""
    values = [value] if isinstance(value, str | int) else value
    if not isinstance(values, list | tuple):
        return True  # an XComArg, or anything else Airflow resolves: masked once rendered
    return any(not isinstance(v, int) and not (isinstance(v, str) and not _JINJA.search(v)) for v in values)


def is_rows(value: Any) -> bool:
    """Rows given as data: a mapping, or a sequence that is not text (a list, a lazy XCom sequence)."""
    return isinstance(value, Mapping) or (isinstance(value, Sequence) and not isinstance(value, str | bytes))


def describe_rows(rows: Any) -> str:
    """A rows field as shown by Airflow: how many and which fields, never the numbers or the data."""
    rows = [rows] if isinstance(rows, Mapping) else rows
    first = rows[0] if len(rows) and isinstance(rows[0], Mapping) else {}
    fields = f" with fields {', '.join(map(str, first))}" if first else ""
    return f"{len(rows)} row(s){fields} (data, not shown: rows hold phone numbers)"


def refuse_none(value: Any) -> Any:
    """Jinja's ``finalize``: every ``{{ }}`` output passes here; a null is a row error, not "None"."""
    if value is None:
        raise ValueError("a value the message uses is empty (null or a missing cell)")
    return value


def compile_message(message: Any, jinja_env: jinja2.Environment) -> jinja2.Template:
    """The message as a strict template: a missing variable or a null (at any depth, e.g.
    recipient.profile.name) is an error, whatever the DAG's `template_undefined` says, never "None"."""
    strict = jinja_env.overlay(undefined=jinja2.StrictUndefined, finalize=refuse_none)
    message = message.value if isinstance(message, LITERAL) else message
    if not isinstance(message, str):
        raise ValueError(f"message must be text, got {type(message).__name__}")
    if message.endswith(MESSAGE_FILE_SUFFIXES):
        return strict.get_template(message)
    return strict.from_string(message)


def row_renderer(template: jinja2.Template, context: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], str]:
    """A function rendering ``template`` for one row, the row as ``recipient`` over the task context."""
    variables = dict(context)

    def render(row: Mapping[str, Any]) -> str:
        # One context for every row, only `recipient` changing: Template.render would copy the
        # whole task context twice per row. Top-level {% set %} writes to the render's own locals.
        # str() of each part, not environment.concat: a native-object DAG's concat would turn "1.10"
        # into 1.1 and a lone "{{ recipient.code }}" into an int.
        # A missing cell or a null is undefined, so a template that uses it fails for that row
        # (StrictUndefined) instead of sending the text "None".
        variables["recipient"] = {k: v for k, v in row.items() if v is not None}
        try:
            return "".join(map(str, template.root_render_func(template.new_context(variables, shared=True))))
        # Error texts may quote the row's data (a number used as a key): numbers are masked in them.
        except jinja2.UndefinedError as exc:
            raise RenderError(f"template: {scrub_numbers(str(exc.message))}") from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"template: {scrub_numbers(str(exc))}") from None
        except Exception as exc:  # an error in one row's data (a string times 1.1, a zero divisor)
            raise RenderError(f"template: {type(exc).__name__}: {scrub_numbers(str(exc)[:200])}") from None

    return render


class _NoList:
    """The default of ``suppression``: none given."""

    def __repr__(self) -> str:
        return "no list"


NO_LIST: Any = _NoList()


def shown_inputs(to: Any, recipients: Any, suppression: Any) -> tuple[Any, Any, Any]:
    """Numbers and rows wrapped so that Airflow neither renders nor stores them in full: rows are data (a row
    holding "{{ conn.x.password }}" would send the secret); only a path or URI, or a template, is rendered.
    A suppression list not given (``NO_LIST``) is ``None``."""
    suppression = None if suppression is NO_LIST else suppression
    shown_to = ShownMasked.numbers(to) if to is not None and not has_template(to) else to
    shown_rows = ShownMasked.rows(recipients) if is_rows(recipients) else recipients
    numbers = (
        suppression is not None and not isinstance(suppression, str | os.PathLike) and not has_template(suppression)
    )
    return shown_to, shown_rows, ShownMasked.numbers(suppression) if numbers else suppression
