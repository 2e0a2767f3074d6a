"""Reading located values out of a spec: mappings with known keys, and expressions
parsed so that their errors point into the YAML text."""

from __future__ import annotations

import functools

from dlsym._errors import SpecError, did_you_mean
from dlsym.expr._parse import Scope, parse_expression
from dlsym.spec._yamlfile import Document


def _check_keys(doc: Document, mapping: dict, allowed, path: tuple, what: str):
    before = None
    for key in mapping:
        if key not in allowed:
            raise SpecError(
                f"unknown key '{key}' in {what}"
                f"{_split_by_a_comma(mapping, before, key) or did_you_mean(key, allowed)}",
                doc.key_loc(*path, key),
            )
        before = key


def _split_by_a_comma(mapping: dict, before, key) -> str:
    """In a YAML flow mapping a comma ends a value: ``{distribution: normal(0, 1)}`` is
    ``distribution: "normal(0"`` and a key ``"1)"``. Said so, with the quoted value."""
    value = mapping.get(before)
    if not (isinstance(value, str) and isinstance(key, str) and mapping[key] is None):
        return ""
    if value.count("(") <= value.count(")") and value.count("[") <= value.count("]"):
        return ""
    return (
        f": inside {{ }} a comma ends a value, so '{before}: {value}, {key}' was read as two "
        f'keys; quote the value: {before}: "{value}, {key}"'
    )


def _mapping(doc, value, path, what):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{what} must be a mapping", doc.loc(*path))
    return value


@functools.lru_cache(maxsize=8)
def _lines(source: str) -> tuple:
    # split once per spec, not once per expression (an MDP has thousands of them)
    return tuple(source.splitlines())


def _col_shift(doc: Document, path) -> int:
    """1 when the YAML scalar at ``path`` is quoted (the text starts one column later)."""
    loc = doc.loc(*path)
    lines = _lines(doc.source) if doc.source else ()
    if 0 < loc.line <= len(lines):
        line = lines[loc.line - 1]
        if loc.col - 1 < len(line) and line[loc.col - 1] in "'\"":
            return 1
    return 0


def _parse(doc: Document, path: tuple, where: str, scope: Scope):
    """Parse the expression at ``path``; its errors point into the YAML text."""
    text = doc.data
    for key in path:
        text = text[key]
    return parse_expression(
        text,
        where,
        doc.loc(*path),
        scope,
        _col_shift(doc, path),
        locate=lambda index: doc.text_loc(path, text, index),
    )
