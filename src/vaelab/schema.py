"""Typed configuration sections: dataclass fields with help, choices and checks, built and
validated from plain values (as read from YAML), and the YAML dialect configs are written in.

:func:`build_section` turns a nested dict into a dataclass, collecting every problem (unknown
keys with the closest valid name, wrong types, invalid choices, out-of-range values) instead of
stopping at the first; :mod:`vaelab.config` composes the sections of a run. No torch here.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from dataclasses import field
from collections.abc import Callable
from typing import Any, NamedTuple

import yaml

from .errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, with two changes for configs: a key given twice in one mapping is an
    error (not silently the last value), and numbers are read the way people write them:
    ``1e-3`` and ``3E5`` are floats (YAML 1.1 wants ``1.0e-3``)."""


_FLOAT = (r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
          r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
          r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_StrictLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in list(_StrictLoader.yaml_implicit_resolvers):
    _StrictLoader.yaml_implicit_resolvers[_first] = [
        (tag, regexp) for tag, regexp in _StrictLoader.yaml_implicit_resolvers[_first]
        if tag != "tag:yaml.org,2002:float"]
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(_FLOAT), list("-+0123456789."))


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (lines {seen[key] + 1} and "
                f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

if getattr(yaml, "__with_libyaml__", False):
    class _StrictCLoader(yaml.CSafeLoader):
        """:class:`_StrictLoader` on libyaml's parser (about 10x faster; the same resolvers and
        constructors, so the same values)."""

    _StrictCLoader.yaml_implicit_resolvers = _StrictLoader.yaml_implicit_resolvers
    _StrictCLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _FAST_LOADER: type = _StrictCLoader
else:  # PyYAML built without libyaml
    _FAST_LOADER = _StrictLoader


MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and lists a vaelab YAML file may have (configs need 3)."""
MAX_YAML_BYTES = 16 * 1024 * 1024
"""Largest YAML text vaelab reads (configs and sweep files are a few kilobytes)."""


def _limit_structure(text: str) -> None:
    """Refuse aliases (``*name``: a few lines can expand to billions of nodes), nesting deeper
    than :data:`MAX_YAML_DEPTH` and texts over :data:`MAX_YAML_BYTES`, before anything is built.

    Raises:
        yaml.constructor.ConstructorError: with the reason and the line.
    """
    if len(text) > MAX_YAML_BYTES:
        raise yaml.constructor.ConstructorError(
            None, None, f"the file is {len(text) / 1e6:.0f} MB; vaelab YAML files are small (at most "
            f"{MAX_YAML_BYTES // 2**20} MB)", None)
    if getattr(yaml, "__with_libyaml__", False):
        from yaml.cyaml import CParser

        parser = CParser(text)
    else:
        parser = yaml.SafeLoader(text)  # the pure-Python reader, scanner and parser
    depth = 0
    try:
        while True:
            event = parser.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return
            if isinstance(event, yaml.AliasEvent):
                raise yaml.constructor.ConstructorError(
                    None, None, f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed "
                    "in vaelab files; write the value out", event.start_mark)
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"line {event.start_mark.line + 1}: nested more than {MAX_YAML_DEPTH} levels deep; "
                        "a config needs three", event.start_mark)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    finally:
        dispose = getattr(parser, "dispose", None)
        if dispose is not None:
            dispose()


def yaml_load(text: str) -> Any:
    """Parse config YAML: safe (no objects), duplicate keys rejected, ``1e-3`` a number, no
    aliases, at most :data:`MAX_YAML_DEPTH` levels.

    Raises:
        yaml.YAMLError: invalid YAML, a duplicate key, an alias or too deep a nesting (with its
            line).
    """
    _limit_structure(text)
    return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - a SafeLoader subclass


class _StrictDumper(yaml.SafeDumper):
    """YAML's safe dumper quoting every string that :func:`yaml_load` would read back as
    something else (``1e5``, ``3E5``): a run named ``1e5`` stays the string ``1e5``."""


_StrictDumper.yaml_implicit_resolvers = _StrictLoader.yaml_implicit_resolvers


def yaml_dump(value: Any, **options) -> str:
    """``yaml.safe_dump`` whose output :func:`yaml_load` reads back to the same values."""
    return yaml.dump(value, Dumper=_StrictDumper, **options)


INT64 = (-(2 ** 63), 2 ** 63 - 1)
"""The range of every integer option (seeds, sizes): what torch and numpy can hold."""


class Applies(NamedTuple):
    """When a config field has an effect (``config_field(..., applies=...)``): the field at
    dotted ``key`` takes one of ``values`` (a tuple, or a callable giving them when asked: the
    names of a registry's components with some property), or passes ``test``. Setting the field
    otherwise does nothing, which the command line warns about."""

    key: str
    values: tuple | Callable[[], tuple] = ()
    test: Callable[[Any], bool] | None = None
    needs: str | None = None
    """What makes it apply, for the warning (default: ``values``, "a, b or c")."""

    def holds(self, config) -> bool:
        """Whether the field has an effect in ``config`` (a :class:`~vaelab.config.Config`)."""
        value = config
        for part in self.key.split("."):
            value = getattr(value, part)
        return self.test(value) if self.test is not None else value in self.allowed()

    def allowed(self) -> tuple:
        return tuple(self.values() if callable(self.values) else self.values)

    def text(self) -> str:
        if self.needs is not None:
            return self.needs
        values = [str(v) for v in self.allowed()]
        return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


def when(key: str, values: tuple | Callable[[], tuple]) -> Applies:
    """The field applies when the field at dotted ``key`` is one of ``values``."""
    return Applies(key, values)


def config_field(default, help: str, *, choices: tuple | None = None, check=None, factory=None,
                 applies: Applies | None = None):
    """A dataclass field carrying ``help``, optional ``choices``, a ``check`` predicate and when
    it ``applies`` (:class:`Applies`; default: always).

    ``check(value) -> str | None`` returns a problem description, or None when valid.
    """
    meta = {"help": help, "choices": choices, "check": check, "applies": applies}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def at_least(lo):
    return lambda v: None if v >= lo else f"must be >= {lo}"


def between(lo, hi):
    """A check that a number (or every number of a list) lies in ``[lo, hi]``: the upper bound
    keeps a typo (an extra zero or three) from hanging the machine or exhausting its memory."""
    def check(v):
        values = v if isinstance(v, list) else [v]
        return None if all(lo <= x <= hi for x in values) else f"must be between {lo:,} and {hi:,}"
    return check


def positive(v):
    return None if v > 0 else "must be > 0"


def positive_list(v):
    return None if all(w >= 1 for w in v) else "every width must be >= 1"


def probability(v):
    return None if 0 <= v < 1 else "must be in [0, 1)"


def positive_floats(v):
    return None if all(x > 0 for x in v) else "every value must be > 0"


def section_from_dict(cls, values: dict[str, Any] | None):
    """Build and validate one config dataclass ``cls`` from plain values.

    Raises:
        ConfigError: listing every problem found.
    """
    problems: list[str] = []
    config = build_section(cls, values or {}, "", problems)
    if problems:
        raise ConfigError(format_problems(problems))
    return config


def set_dotted(values: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Apply ``{"section.key": value}`` overrides to a nested dict in place."""
    for dotted, value in overrides.items():
        target = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"cannot set {dotted}: {part} is not a section")
        target[leaf] = value


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"hidden": [400]}}`` -> ``{"model.hidden": [400]}`` (the inverse of
    :func:`set_dotted`), depth first in the mapping's order."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@functools.lru_cache(maxsize=None)
def type_hints(cls) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, computed once per class (it evaluates every annotation
    string, which made building a config cost milliseconds)."""
    return typing.get_type_hints(cls)


def build_section(cls, values: Any, prefix: str, problems: list[str]):
    where = prefix.rstrip(".") or "config"
    if not isinstance(values, dict):
        problems.append(f"{where} must be a mapping, got {values!r}")
        return cls()
    hints = type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (valid: {', '.join(fields)})"
            problems.append(f"unknown key {prefix}{key}{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name not in values:
            continue
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = build_section(kind, values[name], f"{prefix}{name}.", problems)
            continue
        ok, value = _coerce(values[name], kind)
        items = value if isinstance(value, list) else [value]
        if ok and any(isinstance(v, float) and not math.isfinite(v) for v in items):
            problems.append(f"{prefix}{name} must be a finite number, got {_short(values[name])}")
            continue
        if ok and any(isinstance(v, int) and not isinstance(v, bool) and not INT64[0] <= v <= INT64[1] for v in items):
            problems.append(f"{prefix}{name} must be an integer between -2^63 and 2^63 - 1, got {_short(values[name])}")
            continue
        if ok and any(isinstance(v, str) and _bad_text(v) for v in items):
            problems.append(f"{prefix}{name} {_bad_text(next(v for v in items if isinstance(v, str) and _bad_text(v)))}")
            continue
        if not ok:
            problems.append(f"{prefix}{name} must be {_type_name(kind)}, got {values[name]!r}")
            continue
        choices = f.metadata.get("choices")
        if choices and value is not None and value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = (f" (did you mean {close[0]}?)" if close else "") + getattr(choices, "hint", "")
            problems.append(f"{prefix}{name} must be one of {', '.join(choices)}; got {value!r}{hint}")
            continue
        check = f.metadata.get("check")
        if check is not None and value is not None:
            problem = check(value)
            if problem:
                problems.append(f"{prefix}{name} {problem} (got {value!r})")
                continue
        kwargs[name] = value
    return cls(**kwargs)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'" + f" ({len(text)} characters)"


def _bad_text(text: str) -> str | None:
    """Why a string cannot be a config value (a path or a name), or None."""
    if "\x00" in text:
        return "contains a NUL byte; remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid text (bytes that are not UTF-8); use UTF-8 characters"
    return None


def _coerce(value: Any, kind) -> tuple[bool, Any]:
    """Check ``value`` against a simple type hint, allowing int -> float and scalar -> [scalar]."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return True, None
        for arg in args:
            if arg is type(None):
                continue
            ok, out = _coerce(value, arg)
            if ok:
                return True, out
        return False, value
    if origin is list:
        (item,) = typing.get_args(kind)
        items = value if isinstance(value, (list, tuple)) else [value]
        out = []
        for v in items:
            ok, c = _coerce(v, item)
            if not ok:
                return False, value
            out.append(c)
        return (len(out) > 0), out
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return (isinstance(value, int) and not isinstance(value, bool)), value
    if kind is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, (int, float)):
            try:
                return True, float(value)
            except OverflowError:  # an integer beyond any float: not finite
                return True, math.inf
        return False, value
    if kind is str:
        return isinstance(value, str), value
    return False, value


def _type_name(kind) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(kind) if a is not type(None)]
        return " or ".join(names) + " or null"
    if origin is list:
        return f"a non-empty list of {_type_name(typing.get_args(kind)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(kind, str(kind))


def format_problems(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"invalid config: {problems[0]}"
    return "invalid config (" + str(len(problems)) + " problems):\n  - " + "\n  - ".join(problems)
