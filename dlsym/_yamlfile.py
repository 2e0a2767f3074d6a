"""Safe YAML loading that remembers where every node came from.

PyYAML's ``safe_load`` forgets line numbers and silently keeps the last of two
duplicate keys. We compose the node tree with the safe loader instead, convert it
ourselves, and keep a table from each value's path (a tuple of keys and indices)
to its location, so that every later error can point at the exact node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ._errors import Location, SpecError

MAX_SPEC_BYTES = 1_000_000


@dataclass(frozen=True)
class Document:
    """A loaded YAML document: plain Python data plus the location of each path."""

    data: Any
    file: str
    locations: dict = field(default_factory=dict)
    source: str = ""

    def loc(self, *path) -> Location:
        """The location of ``path``, or of its nearest located ancestor."""
        while path not in self.locations and path:
            path = path[:-1]
        return self.locations.get(path, Location(self.file, 1, 1))

    def key_loc(self, *path) -> Location:
        """The location of the key (not the value) at ``path``."""
        return self.locations.get(("#key",) + path, self.loc(*path))


def _mark(file: str, node: yaml.Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(node: yaml.Node, path: tuple, file: str, locs: dict, loader) -> Any:
    locs[path] = _mark(file, node)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("mapping keys must be plain names", _mark(file, key_node))
            key = loader.construct_object(key_node)
            if not isinstance(key, (str, int)):
                raise SpecError(f"mapping key {key!r} must be a name", _mark(file, key_node))
            key = str(key)
            if key in out:
                raise SpecError(f"duplicate key '{key}'", _mark(file, key_node))
            locs[("#key",) + path + (key,)] = _mark(file, key_node)
            out[key] = _convert(value_node, path + (key,), file, locs, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, path + (i,), file, locs, loader) for i, v in enumerate(node.value)]
    return loader.construct_object(node)


def load_text(text: str, file: str) -> Document:
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"spec is larger than {MAX_SPEC_BYTES} bytes", Location(file, 1, 1))
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        raise SpecError(f"invalid YAML: {exc.problem or exc.context}", where) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", Location(file, 1, 1)) from None
    finally:
        loader.dispose()
    locs: dict = {}
    if root is None:
        raise SpecError("the spec is empty", Location(file, 1, 1))
    try:
        data = _convert(root, (), file, locs, yaml.SafeLoader(""))
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise SpecError(f"invalid YAML value: {exc.problem}",
                        Location(file, mark.line + 1, mark.column + 1)) from None
    return Document(data, file, locs, text)


def load_file(path: str | Path) -> Document:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read: {exc}") from None
    return load_text(text, str(path))
