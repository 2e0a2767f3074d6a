"""The catalog of specs (``dlsym list``, and names in place of paths: ``dlsym derive
ridge_regression``, ``dlsym.derive("ridge_regression")``). Light: the CLI reads it
without importing SymPy."""

from __future__ import annotations

from pathlib import Path

from dlsym._errors import SpecError

# The catalog: installed as the package data dlsym/catalog (pyproject.toml maps the
# repository's derivations/ there); in a checkout (an editable install), derivations/
_INSTALLED = Path(__file__).resolve().parent / "catalog"
_CHECKOUT = Path(__file__).resolve().parent.parent / "derivations"


def catalog_dir() -> Path:
    """Where the catalog's specs are: the installed package data, the checkout's
    derivations/, or else ./derivations."""
    for where in (_INSTALLED, _CHECKOUT):
        if where.is_dir():
            return where
    return Path.cwd() / "derivations"


def resolve(spec: str | Path) -> Path:
    """A path, or the name of a catalog spec (``ridge_regression``)."""
    path = Path(spec)
    if path.exists():
        return path
    named = catalog_dir() / f"{spec}.yaml"
    if path.suffix == "" and named.exists():
        return named
    raise SpecError(f"{spec}: no such file (nor a catalog spec of that name; see 'dlsym list')")
