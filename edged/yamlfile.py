"""YAML documents that remember where each value came from.

Config, manifest and scenario files are all validated by pydantic; this module keeps the YAML node tree next to
the data so that every validation error can name the file, the field path and the line, and it expands
``${VAR}`` / ``${VAR:-default}`` from the environment before validation (so secrets stay out of the file).
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edged.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class YamlDocument:
    """A parsed YAML file: its data, and the node tree that maps field paths back to lines."""

    def __init__(self, data: Any, root: yaml.Node | None, name: str) -> None:
        self.data = data
        self.root = root
        self.name = name

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node on `loc` that exists in the file."""
        node = self.root
        best = node.start_mark.line + 1 if node is not None else None
        for key in loc:
            child = _child_node(node, key)
            if child is None:
                continue  # a union tag or a validator name in pydantic's loc: not a YAML key
            node = child
            best = node.start_mark.line + 1
        return best

    def validate(self, model: type[ModelT], context: dict[str, Any] | None = None) -> ModelT:
        """Validate against `model`; raise ConfigError listing every problem with its line."""
        try:
            return model.model_validate(self.data if self.data is not None else {}, context=context)
        except ValidationError as exc:
            raise ConfigError([str(p) for p in self.problems(exc, model)]) from None

    def problems(self, exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
        problems = []
        for err in exc.errors(include_url=False):
            loc = _data_path(self.data, err["loc"])
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = "unknown key" + _suggestion(str(loc[-1]), _allowed_keys(model, loc[:-1]))
            elif err["type"] in ("missing", "union_tag_not_found"):
                message = err["msg"]
            elif "input" in err and not isinstance(err["input"], dict | list):
                message = f"{err['msg']} (got {err['input']!r})"
            problems.append(Problem(self.name, self.line_of(loc), format_loc(loc), message))
        return problems


def load_yaml(path: str | Path, expand_env: bool = True) -> YamlDocument:
    """Read and parse `path`; syntax errors and missing variables become ConfigError with the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    return parse_yaml(text, str(path), expand_env)


def parse_yaml(text: str, name: str = "<string>", expand_env: bool = True) -> YamlDocument:
    try:
        loader = yaml.SafeLoader(text)  # its reader rejects control characters (a NUL, a binary editor's save)
    except yaml.reader.ReaderError as exc:
        at = text.count("\n", 0, exc.position) + 1
        raise ConfigError([str(Problem(name, at, "", f"invalid YAML: {exc.reason} {exc.character!r}"))]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return YamlDocument({}, None, name)
        problems = _expand_env(root, name) if expand_env else []
        if problems:
            raise ConfigError([str(p) for p in problems])
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError([str(Problem(name, line, "", f"invalid YAML: {exc.problem}"))]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    return YamlDocument(data, root, name)


def format_loc(loc: Sequence[str | int]) -> str:
    """('mqtt', 'tls', 'ca') -> 'mqtt.tls.ca'; ('variants', 2, 'file') -> 'variants[2].file'."""
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _expand_env(node: yaml.Node, name: str) -> list[Problem]:
    problems: list[Problem] = []

    def visit(n: yaml.Node, path: list[str | int]) -> None:
        if isinstance(n, yaml.ScalarNode):
            if "${" in n.value:
                n.value = _substitute(n.value, n, path, problems, name)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                visit(item, [*path, i])
        elif isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                visit(value, [*path, key.value])

    visit(node, [])
    return problems


def _substitute(value: str, node: yaml.Node, path: list[str | int], problems: list[Problem], name: str) -> str:
    def replace(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        problems.append(
            Problem(name, node.start_mark.line + 1, format_loc(path), f"environment variable {var} is not set")
        )
        return ""

    return _ENV_PATTERN.sub(replace, value)


def _child_node(node: yaml.Node | None, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for k, v in node.value:
            if k.value == key:
                return v
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key]
    return None


def _data_path(data: Any, loc: Sequence[str | int]) -> list[str | int]:
    """Drop the parts of pydantic's loc that are not keys in the data (union tags, validator names)."""
    path: list[str | int] = []
    current = data
    for i, key in enumerate(loc):
        if isinstance(current, Mapping) and key in current:
            current = current[key]
        elif isinstance(current, list) and isinstance(key, int) and 0 <= key < len(current):
            current = current[key]
        elif not (i == len(loc) - 1 and isinstance(key, str) and not isinstance(current, list)):
            continue  # not a key of the document; the last key is kept: a missing or unknown key is the point
        path.append(key)
    return path


def _suggestion(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (expected one of: {', '.join(sorted(allowed))})" if allowed else ""


def _allowed_keys(model: Any, loc: Sequence[str | int]) -> list[str]:
    """Field names accepted at `loc` in `model`, found by walking the annotations."""
    current: list[Any] = [model]
    for key in loc:
        nxt: list[Any] = []
        for tp in current:
            for arm in _arms(tp):
                if isinstance(key, int):
                    if typing.get_origin(arm) in (list, tuple, Sequence):
                        nxt.extend(typing.get_args(arm)[:1])
                elif _is_model(arm) and key in arm.model_fields:
                    nxt.append(arm.model_fields[key].annotation)
                elif typing.get_origin(arm) in (dict, Mapping):
                    nxt.extend(typing.get_args(arm)[1:2])
        current = nxt
    names: list[str] = []
    for tp in current:
        for arm in _arms(tp):
            if _is_model(arm):
                names.extend(n for n in arm.model_fields if n not in names)
    return names


def _arms(tp: Any) -> list[Any]:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _arms(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [a for arg in typing.get_args(tp) for a in _arms(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)
