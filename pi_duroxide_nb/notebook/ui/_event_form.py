"""The form that answers a waiting instance: built from the JSON Schema of the event it waits for.

Booleans and enums are buttons, numbers and strings are fields, other shapes a JSON box; each
field's description is its help. Without a model, the form is the event name (filled in) and a
JSON box. Errors from the model are shown beside the fields they name.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from pydantic import ValidationError

from ...models import EventWait
from ._controller import parse_json_field
from ._widgets import close_children, close_tree

__all__ = ["EventForm", "field_spec"]

_UNSET = object()


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` and drop ``null`` from ``anyOf`` (an optional field)."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = root.get("$defs", {}).get(ref.split("/")[-1], {})
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    options = schema.get("anyOf")
    if isinstance(options, list):
        real = [o for o in options if o.get("type") != "null"]
        if len(real) == 1:
            merged = {**_resolve(real[0], root), **{k: v for k, v in schema.items() if k != "anyOf"}}
            merged["nullable"] = True
            return merged
    return schema


def field_spec(schema: dict[str, Any], root: dict[str, Any]) -> tuple[str, list[Any]]:
    """How a property is edited: ``("bool"|"enum"|"integer"|"number"|"string"|"json", enum values)``."""
    schema = _resolve(schema, root)
    if "enum" in schema:
        return "enum", list(schema["enum"])
    if "const" in schema:
        return "enum", [schema["const"]]
    kind = schema.get("type")
    if kind == "boolean":
        return "bool", [True, False]
    if kind in ("integer", "number", "string"):
        return str(kind), []
    return "json", []


class EventForm(widgets.VBox):  # type: ignore[misc]
    """A form for the events a selected instance waits for.

    Public widgets, to fill it in from code as a person would in the browser:

    * ``event_choice`` - which event, when it waits for several
    * ``fields`` - one widget per model field (``ToggleButtons`` for booleans and enums, ``Text``
      for numbers and strings, ``Textarea`` with JSON otherwise)
    * ``payload`` - the JSON box of an event without a model
    * ``send_button`` - sends; ``error_html`` and ``field_errors`` show what was refused

    Example:
        form = dash.event_form
        form.fields["approved"].value = True
        form.send_button.click()
    """

    def __init__(self, *, on_send: Callable[[str, Any], str]) -> None:
        self._on_send = on_send
        self.instance_id: str | None = None
        self.waits: tuple[EventWait, ...] = ()
        self.title_html = widgets.HTML()
        self.event_choice = widgets.ToggleButtons(options=[], description="event")
        self.fields: dict[str, widgets.ValueWidget] = {}
        self.field_errors: dict[str, widgets.HTML] = {}
        self._kinds: dict[str, str] = {}
        self._required: set[str] = set()
        self.payload = widgets.Textarea(
            placeholder='JSON, e.g. {"approved": true} (empty sends null)',
            layout=widgets.Layout(width="100%", min_height="60px"),
        )
        self.fields_box = widgets.VBox(layout=widgets.Layout(width="100%"))
        self.send_button = widgets.Button(description="Send", button_style="primary", tooltip="Send the event")
        self.error_html = widgets.HTML()
        self.last_result = ""
        """What the last send did (or why it was refused)."""
        self.send_button.on_click(lambda _: self.send())
        self.event_choice.observe(lambda _change: self._build_fields(), names="value")
        super().__init__(
            children=[self.title_html, self.event_choice, self.fields_box, self.send_button, self.error_html],
            layout=widgets.Layout(width="100%", display="none"),
        )

    # --- building -------------------------------------------------------------------------

    def show(self, instance_id: str | None, waits: tuple[EventWait, ...]) -> None:
        """Show the form for what ``instance_id`` waits for (hidden when it waits for nothing).

        The form is rebuilt only when the instance or its waits change, so what a person
        typed survives the dashboard's refreshes.
        """
        if instance_id == self.instance_id and waits == self.waits:
            return
        same_instance = instance_id == self.instance_id
        self.instance_id, self.waits = instance_id, waits
        if not same_instance:
            self._set_error("")
        if not waits:
            self.layout.display = "none"
            return
        self.layout.display = "flex"
        names = [w.name for w in waits]
        self.event_choice.options = names
        if self.event_choice.value not in names:
            self.event_choice.value = names[0]
        self.event_choice.layout.display = "flex" if len(names) > 1 else "none"
        self._build_fields()

    @property
    def wait(self) -> EventWait | None:
        """The event the form sends now."""
        return next((w for w in self.waits if w.name == self.event_choice.value), None)

    def _build_fields(self) -> None:
        wait = self.wait
        old_rows = [row for row in self.fields_box.children if row is not self.payload]
        self.fields_box.children = ()
        seen = {id(self.payload)}
        for row in old_rows:
            close_tree(row, seen)
        self.fields, self.field_errors, self._kinds, self._required = {}, {}, {}, set()
        if wait is None:
            self.fields_box.children = ()
            return
        name = html.escape(wait.name)
        schema = wait.json_schema
        if schema is None or not isinstance(schema.get("properties"), dict):
            self.title_html.value = f"<b>Waits for event <code>{name}</code></b> (any JSON)"
            self.payload.value = ""
            self.fields_box.children = (self.payload,)
            self.send_button.description = f"Send {wait.name}"
            return
        model = html.escape((wait.model or "").rsplit(".", 1)[-1])
        help_text = html.escape(str(schema.get("description", "")))
        self.title_html.value = f"<b>Waits for event <code>{name}</code></b> ({model})" + (
            f"<br><small>{help_text}</small>" if help_text else ""
        )
        self._required = set(schema.get("required", []))
        rows: list[widgets.Widget] = []
        for key, prop in schema["properties"].items():
            kind, values = field_spec(prop, schema)
            resolved = _resolve(prop, schema)
            default = resolved.get("default", _UNSET)
            label = str(resolved.get("title") or key) + ("" if key not in self._required else " *")
            widget: widgets.ValueWidget
            if kind in ("bool", "enum"):
                labels = [v if isinstance(v, str) else json.dumps(v) for v in values]
                widget = widgets.ToggleButtons(options=list(zip(labels, values, strict=True)), value=None)
                if default is not _UNSET and default in values:
                    widget.value = default
            elif kind == "json":
                widget = widgets.Textarea(
                    value="" if default is _UNSET else json.dumps(default),
                    placeholder="JSON",
                    layout=widgets.Layout(width="100%"),
                )
            else:
                shown = "" if default is _UNSET or default is None else str(default)
                widget = widgets.Text(value=shown, placeholder=kind, layout=widgets.Layout(width="100%"))
            description = str(resolved.get("description", ""))
            widget.tooltip = description
            self.fields[key] = widget
            self._kinds[key] = kind
            error = widgets.HTML()
            self.field_errors[key] = error
            label_html = widgets.HTML(
                f"<b>{html.escape(label)}</b>"
                + (f"<br><small style='color:#57606a'>{html.escape(description)}</small>" if description else ""),
                layout=widgets.Layout(min_width="120px", max_width="35%"),
            )
            rows.append(
                widgets.HBox(
                    [label_html, widgets.VBox([widget, error], layout=widgets.Layout(flex="1 1 auto"))],
                    layout=widgets.Layout(width="100%"),
                )
            )
        self.fields_box.children = tuple(rows)
        self.send_button.description = f"Send {wait.name}"

    def close(self) -> None:
        """Close the form and every widget in it (the JSON box too, shown or not)."""
        seen = {id(self)}
        close_children(self, seen)
        close_tree(self.payload, seen)
        super().close()

    # --- sending --------------------------------------------------------------------------

    def data(self) -> Any:
        """The payload the form holds now (fields left empty are left out, so defaults apply)."""
        wait = self.wait
        if wait is None:
            return None
        if not self.fields:
            return parse_json_field(self.payload.value, f"The data of event {wait.name!r}")
        out: dict[str, Any] = {}
        for key, widget in self.fields.items():
            kind, value = self._kinds[key], widget.value
            if kind in ("bool", "enum"):
                if value is not None:
                    out[key] = value
                continue
            text = str(value).strip()
            if not text:
                continue
            if kind == "json":
                out[key] = parse_json_field(text, f"Field {key!r}")
            elif kind in ("integer", "number"):
                try:
                    out[key] = int(text) if kind == "integer" else float(text)
                except ValueError:
                    out[key] = text  # the model names the field and says what it expects
            else:
                out[key] = str(value)
        return out

    def send(self) -> str:
        """Send the event with the form's data; a refusal is shown in the form (and returned)."""
        from ..._errors import ModelValidationError, PiDuroxideError

        wait = self.wait
        for error in self.field_errors.values():
            error.value = ""
        if wait is None or self.instance_id is None:
            return self._set_error("Select an instance that waits for an event first.")
        try:
            self.last_result = self._on_send(wait.name, self.data())
        except ModelValidationError as exc:
            for path in exc.fields:
                head = path.split(".", 1)[0]
                if head in self.field_errors:
                    self.field_errors[
                        head
                    ].value = f"<small style='color:#cf222e'>{html.escape(_field_message(exc, head))}</small>"
            return self._set_error(str(exc))
        except PiDuroxideError as exc:
            return self._set_error(str(exc))
        self._set_error("")
        return self.last_result

    def _set_error(self, text: str) -> str:
        self.last_result = text
        self.error_html.value = f"<span style='color:#cf222e'>{html.escape(text)}</span>" if text else ""
        return text


def _field_message(exc: Exception, field: str) -> str:
    """What the model said about one field (from pydantic's errors, when it checked)."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        said = [e["msg"] for e in cause.errors() if e["loc"] and str(e["loc"][0]) == field]
        if said:
            return "; ".join(said)
    return "does not fit (see below)"
