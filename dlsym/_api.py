"""``derive()``: the library API the CLI wraps. It reads a spec, hands it to its section
(the table ``BUILDERS``) and returns a derivation that satisfies the contract of
``dlsym.sections.Derivation``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from dlsym._errors import SpecError
from dlsym.sections import calculus, constrained, info, lqr, mdp
from dlsym.sections._base import DerivationBase
from dlsym.spec._common import section_of
from dlsym.spec._yamlfile import Document, load_file

# section id (dlsym.spec._common.SECTIONS; None for calculus) -> validate and derive
BUILDERS: dict[str | None, Callable[[Document], DerivationBase]] = {
    None: calculus.build,
    "constrained": constrained.build,
    "info": info.build,
    "mdp": mdp.build,
    "lqr": lqr.build,
}


def load_document(source: str | Path | Mapping) -> Document:
    """A spec file (path) or an in-memory mapping as a located ``Document``."""
    if isinstance(source, Mapping):
        return Document(dict(source), "<mapping>", {})
    if isinstance(source, (str, Path)):
        return load_file(source)
    raise SpecError(f"derive() takes a path or a mapping, not {type(source).__name__}")


def derive(
    source: str | Path | Mapping | Document, *, verify: bool = False, **verify_options
) -> DerivationBase:
    """Parse, validate and derive a spec (a path to a YAML file, or a mapping)."""
    doc = source if isinstance(source, Document) else load_document(source)
    d = BUILDERS[section_of(doc)](doc)
    if verify:
        d.verify(**verify_options)
    return d
