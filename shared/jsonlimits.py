"""What JSON the services take in: the one rule for request bodies, WebSocket frames and the
free JSON of a task (`args`, `metadata`), applied before anything is stored.

Refused, wherever it comes from:

- text that is not JSON: not UTF-8, a syntax error, or `NaN` / `Infinity` (Python's `json`
  accepts those; JSON, RFC 8259, does not, and they would be stored as something else);
- a number out of range: one beyond a double's range (`1e400`, which Python would read as
  `Infinity`: refused as Infinity is, not later and otherwise), or an integer too long to read
  (longer than the interpreter converts: 4300 digits by default);
- a string or key holding a lone UTF-16 surrogate (`"\\ud800"`): valid JSON syntax, but no
  Unicode text, so neither BSON nor UTF-8 can hold it (RFC 7493, I-JSON, refuses it too);
- nesting deeper than a limit: `MAX_DEPTH` levels of objects and arrays in a task's free JSON,
  `MAX_DOCUMENT_DEPTH` in a whole body or frame (the free JSON and the envelope around it).
  MongoDB refuses documents nested over 100 levels, and every recursive walk (the parser,
  pydantic, the encoders) has a limit of its own; a task stored deeper could never be claimed.

A task's free JSON must also fit BSON: keys without NUL, integers within 64 bits.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any

#: Levels of objects and arrays a task's `args` or `metadata` may nest (`{"a": {"b": 1}}`: 2).
MAX_DEPTH = 32
#: Levels around the free JSON in the deepest request that carries it: a batch's body, its
#: `tasks` list, one task, and its `args`.
ENVELOPE_DEPTH = 4
#: Levels a whole request body or WebSocket frame may nest.
MAX_DOCUMENT_DEPTH = MAX_DEPTH + ENVELOPE_DEPTH

#: The integer range BSON stores (int64).
_INT64 = range(-(2**63), 2**63)
_SURROGATE = re.compile("[\ud800-\udfff]")

#: Violation types: the `type` of each error `violations` reports.
TOO_DEEP = "json_too_deep"
LONE_SURROGATE = "json_lone_surrogate"
KEY_NUL = "json_key_nul"
INT_RANGE = "json_int_too_large"
NOT_FINITE = "json_not_finite"


@dataclass
class JsonRefused(ValueError):
    """A document refused by `loads`: `too_deep` says whether for its nesting (else: not JSON)."""

    detail: str
    too_deep: bool = False

    def __str__(self) -> str:
        return self.detail


def _refuse_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not JSON (only finite numbers are)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else f"{text[:20]}…{text[-10:]}"
        raise JsonRefused(f"{shown} is out of range (numbers must be finite doubles)")
    return value


def loads(data: bytes | str, *, max_depth: int = MAX_DOCUMENT_DEPTH) -> Any:
    """The JSON value of a request body or frame; raises `JsonRefused` saying what is wrong."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRefused(f"the body is not UTF-8 (byte {exc.start})") from None
    else:
        text = data
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        # The parser recurses per level: a document this deep is refused for its depth.
        raise JsonRefused(_deeper(max_depth), too_deep=True) from None
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except JsonRefused:
        raise
    except ValueError:
        # The one other ValueError the parser raises: an integer longer than the interpreter
        # converts, which would otherwise escape as a crash.
        digits = sys.get_int_max_str_digits()
        raise JsonRefused(f"an integer is out of range (over {digits} digits)") from None
    found = violations(value, [], max_depth=max_depth, storable=False)
    if found:
        first = found[0]
        where = ".".join(map(str, first["loc"])) or "the document"
        raise JsonRefused(f"{where}: {first['msg']}", too_deep=first["type"] == TOO_DEEP)
    return value


def _deeper(max_depth: int) -> str:
    return f"nested deeper than {max_depth} levels of objects and arrays"


def violations(
    value: Any, loc: list[str | int], *, max_depth: int = MAX_DEPTH, storable: bool = True
) -> list[dict[str, Any]]:
    """Where `value` breaks the rule, each as a validation error (`loc`, `msg`, `type`) under
    `loc`; empty when it is fine. `storable` adds what BSON cannot hold (NUL in keys, integers
    over 64 bits, non-finite numbers) for JSON that is to be stored as it is.

    Iterative, so that a value of any depth is walked without recursion; one error per kind of
    violation at most for depth (its first place), every place for the others.
    """
    errors: list[dict[str, Any]] = []
    too_deep_seen = False
    # (value, its location, its depth: 1 for a container at the top)
    stack: list[tuple[Any, list[str | int], int]] = [(value, loc, 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                errors.append(_error(where, "text holds a lone UTF-16 surrogate", LONE_SURROGATE))
            continue
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            if storable and item not in _INT64:
                errors.append(_error(where, "integers must fit in 64 bits", INT_RANGE))
            continue
        if isinstance(item, float):
            if storable and not math.isfinite(item):
                errors.append(_error(where, "numbers must be finite", NOT_FINITE))
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            if not too_deep_seen:
                too_deep_seen = True
                errors.append(_error(where, _deeper(max_depth), TOO_DEEP))
            continue
        if isinstance(item, list):
            # Pushed in reverse, so that errors come in document order.
            stack.extend(
                (child, [*where, i], depth + 1) for i, child in reversed(list(enumerate(item)))
            )
            continue
        children: list[tuple[Any, list[str | int], int]] = []
        for key, child in item.items():
            text = str(key)
            if _SURROGATE.search(text):
                errors.append(
                    _error([*where, text], "key holds a lone UTF-16 surrogate", LONE_SURROGATE)
                )
            elif storable and "\x00" in text:
                errors.append(_error([*where, text], "keys must not hold NUL", KEY_NUL))
            children.append((child, [*where, text], depth + 1))
        stack.extend(reversed(children))
    return errors


def _error(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    # A location goes back to the client, so it must be text itself: a lone surrogate in a key
    # is shown as its escape (`\ud800`).
    shown = [
        part.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(part, str) else part
        for part in loc
    ]
    return {"loc": shown, "msg": msg, "type": type_}
