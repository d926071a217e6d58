"""Form widgets generated from parameter schemas: one labelled `Input` per parameter, with its
range and help as hints, validated as the user types (every comma-separated value goes through
the schema's own parser, so the form accepts exactly what `-p name=v1,v2` accepts)."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.suggester import SuggestFromList
from textual.validation import ValidationResult, Validator
from textual.widgets import Collapsible, Input, Label, Static

from engine.params import Param, ParamError


def format_value(value: Any) -> str:
    """A value as the form shows it, so that parsing it gives the value back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def split_list(text: str) -> list[str]:
    """`a, b,c` -> ["a", "b", "c"]; an empty item is kept (as "") so that it fails validation."""
    return [item.strip() for item in text.split(",")]


class ValuesValidator(Validator):
    """Valid when every comma-separated value (or the whole text, without `lists`) parses;
    the failure message is the parser's own, which names the parameter."""

    def __init__(self, parse: Callable[[str], Any], *, what: str, lists: bool = True) -> None:
        super().__init__()
        self.parse, self.what, self.lists = parse, what, lists

    def validate(self, value: str) -> ValidationResult:
        items = split_list(value) if self.lists else [value.strip()]
        for item in items:
            if not item:
                return self.failure(f"{self.what}: empty value in {value!r} (use comma-separated values, e.g. 0,1)")
            try:
                self.parse(item)
            except (ParamError, ValueError) as error:
                return self.failure(str(error))
        return self.success()


def int_parser(what: str, minimum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ParamError(f"{what}: expected a whole number, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise ParamError(f"{what}: {value} is below the minimum {minimum}")
        return value

    return parse


def float_parser(what: str, minimum: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ParamError(f"{what}: expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ParamError(f"{what}: expected a finite number, got {text!r}")
        if minimum is not None and value < minimum:
            raise ParamError(f"{what}: {value:g} is below the minimum {minimum:g}")
        return value

    return parse


def choice_parser(what: str, choices: Iterable[str]) -> Callable[[str], str]:
    known = tuple(choices)

    def parse(text: str) -> str:
        if text not in known:
            raise ParamError(f"{what}: {text!r} is not one of {', '.join(known)}")
        return text

    return parse


LABEL_WIDTH = 20  # the longest parameter name (progressive_shrink) and a space either side


class Field(Vertical):
    """A labelled one-line `Input` as wide as the form allows, its range and help under it
    (wrapped, never cut), and the validation message (red) under that while the value is
    invalid. A screen narrower than a breakpoint puts the label above the input (its CSS:
    `.field-row` vertical)."""

    DEFAULT_CSS = f"""
    Field {{ height: auto; }}
    Field > .field-row {{ height: auto; }}
    Field .field-label {{ width: {LABEL_WIDTH}; padding-left: 1; }}
    Field Input {{ width: 1fr; }}
    Field .field-hint {{ color: $text-muted; padding-left: {LABEL_WIDTH}; }}
    Field .field-error {{ color: $error; padding-left: {LABEL_WIDTH}; display: none; }}
    Field.-invalid .field-error {{ display: block; }}
    Field.-invalid .field-label {{ color: $error; }}
    """

    def __init__(
        self,
        label: str,
        value: str,
        *,
        input_id: str,
        parse: Callable[[str], Any] | None = None,
        lists: bool = True,
        range_text: str = "",
        hint: str = "",
        placeholder: str = "",
        suggestions: Iterable[str] = (),
        valid_empty: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.label, self.initial, self.input_id = label, value, input_id
        self.parse, self.lists, self.valid_empty = parse, lists, valid_empty
        self.range_text, self.hint, self.placeholder = range_text, hint, placeholder
        self.suggestions = list(suggestions)
        self._checked_value: str | None = None
        self._message: str | None = None
        self._shown_message: str | None = None

    def compose(self) -> ComposeResult:
        validators = [ValuesValidator(self.parse, what=self.label, lists=self.lists)] if self.parse else None
        suggester = SuggestFromList(self.suggestions, case_sensitive=False) if self.suggestions else None
        # Kept as attributes: a screen reads every field on each keystroke, and DOM queries
        # over hundreds of widgets would make typing lag.
        self.input = Input(self.initial, id=self.input_id, placeholder=self.placeholder, validators=validators,
                           valid_empty=self.valid_empty, suggester=suggester, compact=True, tooltip=self.hint or None)
        self.error = Static("", classes="field-error", markup=False)
        with Horizontal(classes="field-row"):
            yield Label(self.label, classes="field-label", markup=False)
            yield self.input
        hint = " · ".join(text for text in (self.range_text, self.hint) if text)
        if hint:
            yield Static(hint, classes="field-hint", markup=False)
        yield self.error

    @property
    def value(self) -> str:
        return self.input.value

    @value.setter
    def value(self, text: str) -> None:
        self.input.value = text

    def values(self) -> list[str]:
        """The comma-separated values (the whole text for a field without lists)."""
        return split_list(self.value) if self.lists else [self.value.strip()]

    def check(self) -> str | None:
        """Validate the current value, show or hide the message; the message, or None.
        Cached by value, and the widgets change only when the message does (a screen checks
        every field on each keystroke)."""
        value = self.input.value
        if value != self._checked_value:
            result = self.input.validate(value)
            self._checked_value = value
            self._message = None if result is None or result.is_valid else "; ".join(result.failure_descriptions)
        if self._message != self._shown_message:
            self._shown_message = self._message
            self.set_class(self._message is not None, "-invalid")
            self.error.update(self._message or "")
        return self._message

    def on_input_changed(self, event: Input.Changed) -> None:
        # Runs before the message reaches the screen, which then reads the fields' state.
        self.check()


class ParamField(Field):
    """The field of one technique parameter; `bool` and `choice` ones take comma lists too."""

    def __init__(self, technique: str, param: Param, value: Any = None) -> None:
        super().__init__(
            param.name,
            format_value(param.default if value is None else value),
            input_id=f"param-{technique}-{param.name}",
            parse=lambda text: param.parse(text, technique=technique),
            range_text=param.describe_range(),
            hint=param.help,
            suggestions=param.choices or (("true", "false") if param.kind == "bool" else ()),
        )
        self.technique, self.param = technique, param

    def is_default(self) -> bool:
        values = self.values()
        try:
            return len(values) == 1 and self.param.parse(values[0], technique=self.technique) == self.param.default
        except ParamError:
            return False


class TechniqueForm(Vertical):
    """The parameters of one technique: its own, then (collapsed) the post-processing options
    every technique takes."""

    DEFAULT_CSS = """
    TechniqueForm { height: auto; margin-bottom: 1; border-top: solid $accent; }
    TechniqueForm Collapsible { padding-left: 0; }
    """

    def __init__(self, technique, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(id=f"form-{technique.name}", classes="technique-form")
        self.technique, self.params = technique, dict(params or {})

    def compose(self) -> ComposeResult:
        from engine.options import POSTPROCESS_SCHEMA

        name = self.technique.name
        yield Label(f"[b]{name}[/b]  {self.technique.summary}", classes="section-title")
        own = [ParamField(name, p, self.params.get(p.name, p.default)) for p in self.technique.schema]
        post = [ParamField(name, p, self.params.get(p.name, p.default)) for p in POSTPROCESS_SCHEMA]
        self._composed = own + post
        yield from own
        changed = any(self.params.get(p.name, p.default) != p.default for p in POSTPROCESS_SCHEMA)
        with Collapsible(title="post-processing options (every technique)", collapsed=not changed, id=f"post-{name}"):
            yield from post

    def on_mount(self) -> None:
        self._fields = self._composed

    def fields(self) -> list[ParamField]:
        """Every parameter's field, in schema order (empty until mounted)."""
        return list(getattr(self, "_fields", []))

    def field(self, name: str) -> ParamField:
        return next(f for f in self.fields() if f.param.name == name)

    def grid(self) -> dict[str, list[str]]:
        """The parameters set to something other than their default: {name: [raw values]}
        (the grid of a sweep; one value each for a single run)."""
        return {f.param.name: f.values() for f in self.fields() if not f.is_default()}

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Every field to `params[name]` where given, else to its default."""
        from engine.options import POSTPROCESS_SCHEMA

        fields = getattr(self, "_composed", None)
        if fields is None:  # not composed yet: compose takes them
            self.params = dict(params)
            return
        post = {p.name for p in POSTPROCESS_SCHEMA}
        expand = False
        for field in fields:
            value = params.get(field.param.name, field.param.default)
            field.input.value = format_value(value)
            if field.param.name in post and value != field.param.default:
                expand = True
        if expand and self.is_mounted:
            self.query_one(Collapsible).collapsed = False
