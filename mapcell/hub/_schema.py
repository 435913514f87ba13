"""A small type schema for JSON documents: what a bundle's ``mapcell.json`` and a registry hold.

Each field has a type and is required or optional; objects may hold fields this version does not
know (newer writers add optional fields within a schema version), and those are left unchecked.
The checker reports every field that is missing and every value of the wrong type, by its
dotted path (``encoder.n_latent``, ``models[2].sha256``), so a message can name them all.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_JSON_KINDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _is_kind(value, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool):  # JSON true is no number, though Python's bool is an int
        return False
    if kind == "integer":
        return isinstance(value, int)
    return isinstance(value, int | float)


def describe_value(value) -> str:
    """What a JSON value is, for messages: ``a string ('4')``, ``an object``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value:g})"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass(frozen=True)
class Scalar:
    """A JSON scalar of one of ``kinds`` (``"string"``, ``"integer"``, ``"number"``, ...)."""

    kinds: tuple[str, ...]
    pattern: str | None = None
    finite: bool = False

    def check(self, value, where: str, problems: list[str], missing: list[str]) -> None:
        """Append what is wrong with ``value`` (at ``where``) to ``problems``."""
        if not any(_is_kind(value, kind) for kind in self.kinds):
            expected = " or ".join(_JSON_KINDS[kind] for kind in self.kinds)
            problems.append(f"{where} is {describe_value(value)}, expected {expected}")
        elif self.pattern is not None and isinstance(value, str):
            if not re.fullmatch(self.pattern, value):
                problems.append(f"{where} ({value!r}) is not of the form {self.pattern}")
        elif self.finite and isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{where} is {value}, expected a finite number")


@dataclass(frozen=True)
class ListOf:
    """A JSON array whose every item has the type ``item``."""

    item: Scalar | ListOf | MapOf | Obj

    def check(self, value, where: str, problems: list[str], missing: list[str]) -> None:
        """Append what is wrong with ``value`` (at ``where``) to ``problems``."""
        if not isinstance(value, list):
            problems.append(f"{where} is {describe_value(value)}, expected a list")
            return
        for i, item in enumerate(value):
            self.item.check(item, f"{where}[{i}]", problems, missing)


@dataclass(frozen=True)
class MapOf:
    """A JSON object with any keys, whose every value has the type ``value``."""

    value: Scalar | ListOf | MapOf | Obj

    def check(self, value, where: str, problems: list[str], missing: list[str]) -> None:
        """Append what is wrong with ``value`` (at ``where``) to ``problems``."""
        if not isinstance(value, dict):
            problems.append(f"{where} is {describe_value(value)}, expected an object")
            return
        for key, item in value.items():
            self.value.check(item, f"{where}.{key}", problems, missing)


@dataclass(frozen=True)
class Obj:
    """A JSON object with ``required`` and ``optional`` fields; other keys are allowed."""

    required: dict = field(default_factory=dict)
    optional: dict = field(default_factory=dict)

    def check(self, value, where: str, problems: list[str], missing: list[str]) -> None:
        """Append wrong types to ``problems`` and absent required fields to ``missing``."""
        if not isinstance(value, dict):
            problems.append(
                f"{where or 'the document'} is {describe_value(value)}, expected an object"
            )
            return
        prefix = f"{where}." if where else ""
        for key, spec in self.required.items():
            if key not in value:
                missing.append(f"{prefix}{key}")
            else:
                spec.check(value[key], f"{prefix}{key}", problems, missing)
        for key, spec in self.optional.items():
            if key in value:
                spec.check(value[key], f"{prefix}{key}", problems, missing)


Spec = Scalar | ListOf | MapOf | Obj

STRING = Scalar(("string",))
INTEGER = Scalar(("integer",))
NUMBER = Scalar(("number",))
FINITE = Scalar(("number",), finite=True)
BOOLEAN = Scalar(("boolean",))
OPTIONAL_STRING = Scalar(("string", "null"))
SHA256 = Scalar(("string",), pattern="[0-9a-f]{64}")


def check(document, schema: Obj) -> tuple[list[str], list[str]]:
    """The absent required fields and the type problems of ``document``, by dotted path."""
    problems: list[str] = []
    missing: list[str] = []
    schema.check(document, "", problems, missing)
    return missing, problems
