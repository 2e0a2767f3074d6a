"""Safe YAML loading that remembers where every node came from.

PyYAML's ``safe_load`` forgets line numbers and silently keeps the last of two
duplicate keys. We compose the node tree with the safe loader instead, convert it
ourselves, and keep a table from each value's path (a tuple of keys and indices)
to its location, so that every later error can point at the exact node.
"""

from __future__ import annotations

import codecs
import math
import os
import re
import select
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlsym._errors import Location, SpecError

MAX_SPEC_BYTES = 1_000_000
MAX_ALIAS_NODES = 10_000  # nodes reached again through aliases


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

    def text_loc(self, path: tuple, value: str, index: int) -> Location | None:
        """The location in the file of character ``index`` of the string scalar ``value``
        at ``path``, or None when unknown (no source, or not a string scalar).

        YAML folds multi-line scalars (plain, ``>``) and drops quotes and indentation, so
        a column in the value is not a column in the file: we count the non-blank
        characters before ``index`` and find the same number in the scalar's source text.
        """
        span = self.locations.get(("#span",) + tuple(path))
        if span is None or not self.source or not isinstance(value, str):
            return None
        i, line, col, end, style = span
        src = self.source
        if style in ("'", '"'):  # skip the quotes
            i, col, end = i + 1, col + 1, end - 1
        elif style in ("|", ">"):  # skip the header line (indicators, comment)
            while i < end and src[i] not in "\n\r\x85\u2028\u2029":
                i, col = i + 1, col + 1
        wanted = sum(1 for c in value[:index] if not c.isspace())
        seen, after = 0, None
        while i < min(end, len(src)):
            ch = src[i]
            if not ch.isspace():
                if seen == wanted:
                    return Location(self.file, line + 1, col + 1)
                seen, after = seen + 1, (line, col + 1)
            if ch in "\n\x85\u2028\u2029" or (ch == "\r" and src[i + 1 : i + 2] != "\n"):
                line, col = line + 1, 0
            else:
                col += 1
            i += 1
        # ``index`` is past the last non-blank character: point just after it.
        return Location(self.file, after[0] + 1, after[1] + 1) if after else None


# a number in exponent form without a dot (1e-300, 2E5), which YAML 1.1 (PyYAML) reads as
# text: the error then said only "got '1e-300'"
_YAML12_FLOAT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")

# YAML 1.2's core schema: the numbers a plain scalar may be. YAML 1.1 (PyYAML) also
# reads 010 as 8 (octal), 1:30 as 90 (base 60), 0b101, 1_000 and 1_000.5 as numbers:
# dims: {n: 010} was 8, without a word
_INTEGERS = (
    (re.compile(r"[-+]?[0-9]+"), 10, 0),  # 010 is 10
    (re.compile(r"0o[0-7]+"), 8, 2),
    (re.compile(r"0x[0-9a-fA-F]+"), 16, 0),
)
_CORE_FLOAT = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
)
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


def _core_number(node: yaml.ScalarNode, value: Any) -> Any:
    """``value`` as YAML 1.2's core schema reads the plain scalar ``node``: an integer
    in decimal (010 is 10), 0o octal or 0x hex, and a float in decimal; any other text
    that YAML 1.1 resolved as a number (1:30, 0b101, 1_000) stays text, so that the
    key reading it says what is wrong with it, where it is."""
    if node.style or node.tag not in (_INT_TAG, _FLOAT_TAG, "tag:yaml.org,2002:str"):
        return value
    text = node.value
    if node.tag == _FLOAT_TAG:
        return value if _CORE_FLOAT.fullmatch(text) else text
    for pattern, base, skip in _INTEGERS:
        if pattern.fullmatch(text):
            return int(text[skip:], base)
    if node.tag == _INT_TAG:
        return text
    # 1.5e3: text to YAML 1.1, whose exponents need a sign
    return float(text) if isinstance(value, str) and _CORE_FLOAT.fullmatch(text) else value


class WrittenFloat(float):
    """A YAML float with the decimal text it was written as: exact arithmetic reads the
    text (0.33333333333333333 three times sums to 1 as written; as floats, to
    1 − 1e-16, and a reward of 1.0000000000000001 was 1, a false tie)."""

    text: str

    def __new__(cls, value: float, text: str):
        out = super().__new__(cls, value)
        out.text = text
        return out

    def __reduce__(self):  # pickled (to a checked function's process) as the float
        return (float, (float(self),))


def _mark(file: str, node: yaml.Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(
    node: yaml.Node, path: tuple, file: str, locs: dict, loader, seen: dict | None = None
) -> Any:
    locs[path] = _mark(file, node)
    # Aliases share nodes: a recursive one would recurse forever, and nested ones
    # ("billion laughs") expand exponentially. Both are errors, not hangs.
    seen = {"active": set(), "done": set(), "repeats": 0} if seen is None else seen
    if id(node) in seen["active"]:
        raise SpecError("recursive YAML alias", _mark(file, node))
    if id(node) in seen["done"]:
        seen["repeats"] += 1
        if seen["repeats"] > MAX_ALIAS_NODES:
            raise SpecError(
                f"YAML aliases expand to more than {MAX_ALIAS_NODES} nodes", _mark(file, node)
            )
    seen["done"].add(id(node))
    if isinstance(node, yaml.ScalarNode):
        locs[("#span",) + path] = (
            node.start_mark.index,
            node.start_mark.line,
            node.start_mark.column,
            node.end_mark.index,
            node.style or None,  # a plain scalar: None from PyYAML, '' from libyaml
        )
        try:
            value = _scalar(loader, node)
        except ValueError:  # an integer of over 4300 digits: Python refuses to read it
            raise SpecError(
                f"the number is too long to read: {len(node.value)} characters, where an "
                "integer may have at most 4300 digits",
                _mark(file, node),
            ) from None
        if isinstance(value, str) and not node.style and _YAML12_FLOAT.fullmatch(value):
            value = float(value)  # 1e-300: text to YAML 1.1, a number to YAML 1.2 and to users
        value = _core_number(node, value)
        # a decimal as written (the core schema's float, not .inf or .nan)
        if (
            type(value) is float
            and math.isfinite(value)
            and not node.style
            and _CORE_FLOAT.fullmatch(node.value)
        ):
            value = WrittenFloat(value, node.value)
        if isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):
            # "\ud800" in a double-quoted scalar: not a character, and no output (UTF-8
            # text, LaTeX, a file) can hold it
            raise SpecError(
                "the text holds a lone surrogate (a \\ud800-\\udfff escape), which is not "
                "a character",
                _mark(file, node),
            )
        return value
    seen["active"].add(id(node))
    try:
        return _convert_collection(node, path, file, locs, loader, seen)
    finally:
        seen["active"].discard(id(node))


_BOOL_TAG = "tag:yaml.org,2002:bool"


_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


def _scalar(loader, node):
    """A scalar node's value. YAML 1.2's booleans are true and false alone: YAML 1.1's
    off, on, yes, no, y and n are names here (a symbol ``off`` for an offset was read as
    False), as the 1e-300 above is a number. YAML 1.2 has no dates either: 2001-12-14 is
    text (a seed written so was reported as datetime.date(2001, 12, 14))."""
    if node.tag == _BOOL_TAG and not node.style and node.value.lower() not in ("true", "false"):
        return node.value
    if node.tag == _TIMESTAMP_TAG and not node.style:
        return node.value
    return loader.construct_object(node)


def _convert_collection(node, path, file, locs, loader, seen) -> Any:
    # The safe constructor is bypassed for collections: refuse the tags it would refuse
    # (!!python/object/apply:...) and the ones we do not build (!!set, !!omap).
    if node.tag not in (
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
        yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
    ):
        raise SpecError(f"unsupported YAML tag '{node.tag}'", _mark(file, node))
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("mapping keys must be plain names", _mark(file, key_node))
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SpecError(
                    "YAML merge keys (<<: *anchor) are not supported: write the keys out",
                    _mark(file, key_node),
                )
            key = _scalar(loader, key_node)
            if not isinstance(key, (str, int)):
                raise SpecError(f"mapping key {key!r} must be a name", _mark(file, key_node))
            key = str(_core_number(key_node, key))
            if key in out:
                raise SpecError(f"duplicate key '{key}'", _mark(file, key_node))
            locs[("#key",) + path + (key,)] = _mark(file, key_node)
            out[key] = _convert(value_node, path + (key,), file, locs, loader, seen)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(v, path + (i,), file, locs, loader, seen) for i, v in enumerate(node.value)
        ]
    return loader.construct_object(node)


# YAML nesting a spec may have (a joint table over eight variables nests ten): PyYAML's
# composer recurses once per level, and its depth must not depend on Python's recursion
# limit, which dlsym.derive raises for SymPy
MAX_YAML_DEPTH = 100


class _TooDeep(Exception):
    pass


class _Loader(yaml.SafeLoader):
    """The safe loader, composing at most ``MAX_YAML_DEPTH`` levels of collections."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooDeep
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# libyaml, where PyYAML was built with it: it composes a 3000-line spec in 0.04 s, the
# pure-Python composer in 0.5 s (a tenth of a long define chain's whole run)
_FAST = yaml.__with_libyaml__


def _depth_checked(text: str) -> None:
    """``_TooDeep`` past ``MAX_YAML_DEPTH`` levels, from libyaml's event stream (a loop,
    before its composer, which recurses once per level, sees the text)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _TooDeep
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _compose(text: str):
    """The root node of ``text`` (None when empty), with its marks. Invalid YAML is
    composed again by the pure-Python composer, whose error says what is wrong in the
    words dlsym has always used (libyaml's differ), on every installation."""
    if _FAST:
        try:
            _depth_checked(text)
            return _single_node(yaml.CSafeLoader(text))
        except yaml.YAMLError:
            pass
    # the reader refuses unprintable characters (NUL) as the loader is made
    return _single_node(_Loader(text))


def _single_node(loader):
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def load_text(text: str, file: str) -> Document:
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"spec is larger than {MAX_SPEC_BYTES} bytes", Location(file, 1, 1))
    try:
        root = _compose(text)
    except _TooDeep:
        raise SpecError(
            f"invalid YAML: nested too deeply (more than {MAX_YAML_DEPTH} levels)",
            Location(file, 1, 1),
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        raise SpecError(f"invalid YAML: {exc.problem or exc.context}", where) from None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses: at its offset
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise SpecError(
            f"invalid YAML: unacceptable character #x{exc.character:04x}: {exc.reason}",
            Location(file, line, column),
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", Location(file, 1, 1)) from None
    except RecursionError:  # the composer recurses once per level of nesting
        raise SpecError("invalid YAML: nested too deeply", Location(file, 1, 1)) from None
    locs: dict = {}
    if root is None:
        raise SpecError("the spec is empty", Location(file, 1, 1))
    try:
        data = _convert(root, (), file, locs, yaml.SafeLoader(""))
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise SpecError(
            f"invalid YAML value: {exc.problem}", Location(file, mark.line + 1, mark.column + 1)
        ) from None
    except RecursionError:
        raise SpecError("invalid YAML: nested too deeply", Location(file, 1, 1)) from None
    return Document(data, file, locs, text)


# how long a pipe or FIFO may take to deliver its spec: one with no writer blocked open()
# for ever (dlsym check and codegen have no other time limit)
PIPE_SECONDS = 10.0


def _read_bounded(path: Path) -> bytes:
    """At most MAX_SPEC_BYTES + 1 bytes of ``path``; a pipe or FIFO (bash's <(...)) is
    read without blocking, within PIPE_SECONDS: a FIFO with no writer reads as empty."""
    if stat.S_ISREG(os.stat(path).st_mode):
        with open(path, "rb") as f:
            return f.read(MAX_SPEC_BYTES + 1)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        chunks, size, deadline = [], 0, time.monotonic() + PIPE_SECONDS
        while size <= MAX_SPEC_BYTES:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise SpecError(
                    f"{path}: nothing more to read after {PIPE_SECONDS:g} s (a pipe or FIFO "
                    "whose writer does not finish)"
                )
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# the encodings YAML allows a stream to declare by its byte order mark
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _decoded(data: bytes, file: str) -> str:
    """The spec's text: UTF-8, or what its byte order mark says (UTF-16 or UTF-32, as
    YAML allows); bytes that are not UTF-8 are a located error."""
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            f"the spec is not {encoding.upper().replace('-SIG', '')} text: byte "
            f"0x{data[exc.start]:02x} (save it as UTF-8; Latin-1's é is one such byte)",
            Location(file, line, col),
        ) from None


def load_file(path: str | Path) -> Document:
    path = Path(path)
    try:
        # at most one byte past the limit: an endless FIFO (or /dev/zero) is refused
        # after a megabyte instead of filling the memory
        data = _read_bounded(path)
        if len(data) > MAX_SPEC_BYTES:
            raise SpecError(
                f"spec is larger than {MAX_SPEC_BYTES} bytes", Location(str(path), 1, 1)
            )
        text = _decoded(data, str(path))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder, not a spec file") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc}") from None
    # universal newlines, as read_text gave them (CRLF and CR files)
    return load_text(text.replace("\r\n", "\n").replace("\r", "\n"), str(path))
