"""The ``distributions`` of an information-theory spec: validated, exact, located.

Each entry becomes a frozen dataclass. Probabilities given as numbers stay exact SymPy
Rationals (0.1 is 1/10); they must be non-negative and sum to one exactly. Parameters
(a Bernoulli's p, a Gaussian's mean and variance) are expressions over the spec's
declared scalar ``symbols``, parsed by the project's safe parser.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from dlsym._errors import SpecError, did_you_mean
from dlsym.expr._parse import check_identifier
from dlsym.sections._base import probability_range_error
from dlsym.sections.info._joint import joint_function
from dlsym.spec._common import total_shown
from dlsym.spec._latex import checked_latex
from dlsym.spec._read import _parse
from dlsym.spec._symbols import default_latex

MAX_OUTCOMES = 32  # symbolic expansions grow with the number of outcomes
FAMILIES = ("categorical", "bernoulli", "gaussian", "joint")


@dataclass(frozen=True)
class Categorical:
    """Probabilities ``probs`` over outcomes 1..k; ``symbolic``: free on the simplex."""

    name: str
    k: int
    probs: tuple  # SymPy expressions (Indexed p[i] when symbolic)
    symbolic: bool
    latex: str
    base: sp.IndexedBase
    bernoulli: bool = False  # a Bernoulli(p), kept as the categorical (p, 1 - p)


@dataclass(frozen=True)
class Gaussian:
    name: str
    mean: sp.Matrix  # k x 1
    cov: sp.Matrix  # k x k (1 x 1: the variance)
    latex: str

    vector: bool = False  # given with mean: [...] / cov: [[...]]
    diagonal: tuple = ()  # (k,): a vector mean and variance, N(mu, diag(var)) in k dims
    size: object = None  # k (a dim Symbol): mean is a vector symbol, cov an spd matrix one
    lifted: bool = False  # a univariate N(m, v) standing for N(m 1, v I) in ``size`` dims

    @property
    def dim(self):
        """The dimension: a number, or the symbolic size of a matrix-symbol covariance."""
        return self.size if self.size is not None else self.mean.shape[0]

    @property
    def univariate(self) -> bool:
        return not self.vector


@dataclass(frozen=True)
class Joint:
    """A table p(x, y): rows index the first variable, columns the second."""

    name: str
    variables: tuple  # (X, Y) names
    shape: tuple  # (m, n)
    table: tuple  # rows of SymPy expressions, or None when symbolic
    latex: str
    func: object  # _joint.JointFunctions: p(x, y), p(x), p(y), p(y | x)

    @property
    def symbolic(self) -> bool:
        return self.table is None


def _entry(doc, path, where, scope):
    e = _parse(doc, path, where, scope)
    shape = scope.algebra.shape(e)
    if shape:
        raise SpecError(
            f"{where} must be a scalar, got a vector [{', '.join(map(str, shape))}]"
            " (vectors are the mean and variance of a diagonal Gaussian only)",
            doc.loc(*path),
        )
    return e


def _probabilities(doc, path, raw, name, scope) -> tuple:
    """A list of probabilities: each an expression; non-negative; summing to one."""
    if not raw:
        raise SpecError(f"distribution '{name}' needs at least one probability", doc.loc(*path))
    probs = []
    for i, _ in enumerate(raw):
        p = _entry(doc, path + (i,), f"probability {i + 1} of '{name}'", scope)
        _check_probability(doc, path + (i,), p, f"probability {i + 1} of '{name}'")
        probs.append(p)
    total = sp.simplify(sum(probs))
    if total != 1:
        what = "sum" if all(p.is_Rational for p in probs) else "sum (as expressions)"
        raise SpecError(
            f"the probabilities of '{name}' {what} to {total_shown(total)}, not 1"
            + (
                " exactly"
                if all(p.is_Rational for p in probs)
                else "; write them so they sum to one for every value of the symbols"
            ),
            doc.loc(*path),
        )
    return tuple(probs)


def _check_probability(doc, path, p, what):
    if p.is_number:
        if not p.is_real:
            raise SpecError(f"{what} must be a real number, got {p}", doc.loc(*path))
        if p < 0:
            raise SpecError(
                f"{what} is negative ({p}); probabilities lie in [0, 1]", doc.loc(*path)
            )
        if p > 1:
            raise SpecError(
                f"{what} is {p}, more than 1; probabilities lie in [0, 1]", doc.loc(*path)
            )
    elif p.is_negative:
        raise SpecError(f"{what} is negative for every value of its symbols", doc.loc(*path))


def _categorical(doc, path, name, raw, scope, latex) -> Categorical:
    base = sp.IndexedBase(name, positive=True)
    if isinstance(raw, bool) or not isinstance(raw, (int, list)):
        raise SpecError(
            f"categorical of '{name}' takes a number of outcomes (4) or a list of "
            "probabilities ([1/2, 1/4, 1/4])",
            doc.loc(*path),
        )
    if isinstance(raw, int):
        if not 2 <= raw <= MAX_OUTCOMES:
            raise SpecError(
                f"categorical of '{name}' needs 2 to {MAX_OUTCOMES} outcomes, got {raw}",
                doc.loc(*path),
            )
        return Categorical(name, raw, tuple(base[i] for i in range(1, raw + 1)), True, latex, base)
    if len(raw) > MAX_OUTCOMES:
        raise SpecError(
            f"categorical of '{name}' has {len(raw)} outcomes; at most {MAX_OUTCOMES}",
            doc.loc(*path),
        )
    probs = _probabilities(doc, path, raw, name, scope)
    return Categorical(name, len(probs), probs, False, latex, base)


def _bernoulli(doc, path, name, raw, scope, latex) -> Categorical:
    p = _entry(doc, path, f"the parameter of '{name}'", scope)
    _check_probability(doc, path, p, f"the parameter of '{name}'")
    return Categorical(
        name, 2, (p, 1 - p), False, latex, sp.IndexedBase(name, positive=True), bernoulli=True
    )


def _matrix(doc, path, raw, what, scope, rows_only=False) -> sp.Matrix:
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{what} must be a non-empty list", doc.loc(*path))
    if rows_only:
        return sp.Matrix(
            [_entry(doc, path + (i,), f"entry {i + 1} of {what}", scope) for i in range(len(raw))]
        )
    rows = []
    for i, row in enumerate(raw):
        if not isinstance(row, list) or len(row) != len(raw):
            raise SpecError(
                f"{what} must be a square list of lists ({len(raw)} rows of {len(raw)})",
                doc.loc(*path, i),
            )
        rows.append(
            [
                _entry(doc, path + (i, j), f"entry ({i + 1}, {j + 1}) of {what}", scope)
                for j in range(len(row))
            ]
        )
    return sp.Matrix(rows)


def _gaussian(doc, path, name, raw, scope, latex) -> Gaussian:
    if not isinstance(raw, dict):
        raise SpecError(
            f"gaussian of '{name}' takes {{mean: ..., var: ...}} or {{mean: [...], cov: [[...]]}}",
            doc.loc(*path),
        )
    for key in raw:
        if key not in ("mean", "var", "cov"):
            raise SpecError(
                f"unknown key '{key}' in the gaussian '{name}'"
                f"{did_you_mean(key, ('mean', 'var', 'cov'))}",
                doc.key_loc(*path, key),
            )
    if "mean" not in raw:
        raise SpecError(f"gaussian '{name}' needs a mean", doc.loc(*path))
    if ("var" in raw) == ("cov" in raw):
        raise SpecError(
            f"gaussian '{name}' needs exactly one of var (univariate) and cov (multivariate)",
            doc.loc(*path),
        )
    # a vector of variances under cov: is the diagonal covariance the README promises,
    # read as var: (it was refused, "must be a square matrix symbol")
    key, cov = ("var" if "var" in raw else None), None
    if "cov" in raw and isinstance(raw["cov"], str):
        cov = _parse(doc, path + ("cov",), f"the covariance of '{name}'", scope)
        key = "cov" if len(scope.algebra.shape(cov)) == 1 else None
    if key is not None:
        mean = _parse(doc, path + ("mean",), f"the mean of '{name}'", scope)
        var = (
            cov
            if key == "cov"
            else _parse(doc, path + ("var",), f"the variance of '{name}'", scope)
        )
        shapes = {tuple(scope.algebra.shape(e)) for e in (mean, var)} - {()}
        if len(shapes) > 1:
            raise SpecError(
                f"the mean and variance of '{name}' have different shapes "
                f"({' and '.join(str(list(x)) for x in sorted(shapes, key=str))})",
                doc.loc(*path),
            )
        diagonal = next(iter(shapes), ())
        if len(diagonal) > 1:
            raise SpecError(
                f"the mean and variance of '{name}' must be scalars or vectors; "
                "a covariance matrix is written cov:",
                doc.loc(*path),
            )
        if var.is_number and not var > 0:
            raise SpecError(
                f"the variance of '{name}' must be positive, got {var}", doc.loc(*path, key)
            )
        if var.is_nonpositive:
            raise SpecError(f"the variance of '{name}' is never positive", doc.loc(*path, key))
        if not var.is_number and var.is_nonnegative is not True:
            # a variance that the symbols' domains let be negative (s real): verification
            # would draw it there and find the entropy undefined
            raise SpecError(
                f"the variance of '{name}', {var}, may be negative: give its symbols a "
                "domain (e.g. domain: positive)",
                doc.loc(*path, key),
            )
        return Gaussian(name, sp.Matrix([mean]), sp.Matrix([[var]]), latex, diagonal=diagonal)
    if cov is not None:  # a matrix symbol, parsed above
        return _symbolic_gaussian(doc, path, name, raw, cov, scope, latex)
    mean = _matrix(doc, path + ("mean",), raw["mean"], f"the mean of '{name}'", scope, True)
    cov = _matrix(doc, path + ("cov",), raw["cov"], f"the covariance of '{name}'", scope)
    if cov.shape[0] != mean.shape[0]:
        raise SpecError(
            f"the covariance of '{name}' is {cov.shape[0]}x{cov.shape[1]} but its "
            f"mean has {mean.shape[0]} entries",
            doc.loc(*path, "cov"),
        )
    if sp.simplify(cov - cov.T) != sp.zeros(*cov.shape):
        raise SpecError(f"the covariance of '{name}' is not symmetric", doc.loc(*path, "cov"))
    if all(e.is_number for e in cov) and not cov.is_positive_definite:
        raise SpecError(
            f"the covariance of '{name}' is not positive definite (eigenvalues "
            f"{', '.join(f'{float(v):.4g}' for v in cov.eigenvals())})",
            doc.loc(*path, "cov"),
        )
    return Gaussian(name, mean, cov, latex, vector=True)


def _symbolic_gaussian(doc, path, name, raw, cov, scope, latex) -> Gaussian:
    """N(m, S) with S (``cov``, as parsed) an spd matrix symbol of size k x k and m a
    vector expression of size k: the closed forms stay in matrix form (tr, inv, log det)."""
    shape = tuple(scope.algebra.shape(cov))
    if len(shape) != 2 or shape[0] != shape[1] or not cov.is_Symbol:
        raise SpecError(
            f"the covariance of '{name}' must be a square matrix symbol with "
            "domain spd, or a list of lists",
            doc.loc(*path, "cov"),
        )
    if cov not in scope.algebra.symmetric:
        raise SpecError(f"the covariance of '{name}' must have domain spd", doc.loc(*path, "cov"))
    if not isinstance(raw["mean"], str):
        raise SpecError(
            f"the mean of '{name}' must be a vector of size {shape[0]} (a vector "
            "symbol, or an expression in one), since its covariance is a matrix "
            "symbol",
            doc.loc(*path, "mean"),
        )
    mean = _parse(doc, path + ("mean",), f"the mean of '{name}'", scope)
    if tuple(scope.algebra.shape(mean)) != shape[:1]:
        raise SpecError(
            f"the mean of '{name}' must be a vector of size {shape[0]}, like its "
            f"covariance {shape[0]} x {shape[1]}",
            doc.loc(*path, "mean"),
        )
    return Gaussian(name, sp.Matrix([mean]), sp.Matrix([[cov]]), latex, vector=True, size=shape[0])


def _joint(doc, path, name, raw, variables, scope, latex) -> Joint:
    vpath = path[:-1] + ("variables",)
    if variables is None:
        variables = ["X", "Y"]
    if not isinstance(variables, list) or len(variables) != 2:
        raise SpecError(
            f"variables of '{name}' must be a list of two names, such as [X, Y]", doc.loc(*vpath)
        )
    for i, v in enumerate(variables):
        check_identifier(v, "variable name", doc.loc(*vpath, i))
    if variables[0] == variables[1]:
        raise SpecError(f"the two variables of '{name}' have the same name", doc.loc(*vpath, 1))
    if isinstance(raw, list) and len(raw) == 2 and all(type(v) is int for v in raw):
        m, n = raw
        if not (1 <= m <= MAX_OUTCOMES and 1 <= n <= MAX_OUTCOMES and m * n >= 2):
            raise SpecError(
                f"joint '{name}' needs 1 to {MAX_OUTCOMES} rows and columns, and at least two "
                f"cells (got {m} x {n})",
                doc.loc(*path),
            )
        return Joint(
            name, tuple(variables), (m, n), None, latex, joint_function(name, variables, latex)
        )
    if not isinstance(raw, list) or not raw or not all(isinstance(r, list) for r in raw):
        raise SpecError(
            f"joint of '{name}' takes a table (a list of rows) or a shape [m, n] "
            "(symbolic probabilities)",
            doc.loc(*path),
        )
    n = len(raw[0])
    for i, row in enumerate(raw):
        if len(row) != n:
            raise SpecError(
                f"row {i + 1} of the joint '{name}' has {len(row)} entries; row 1 has {n}",
                doc.loc(*path, i),
            )
    flat = [x for row in raw for x in row]
    if len(flat) > MAX_OUTCOMES**2:
        raise SpecError(f"joint '{name}' has too many cells", doc.loc(*path))
    cells = []
    for i, row in enumerate(raw):
        out = []
        for j, _ in enumerate(row):
            where = f"p({variables[0]}={i + 1}, {variables[1]}={j + 1}) of '{name}'"
            p = _entry(doc, path + (i, j), where, scope)
            _check_probability(doc, path + (i, j), p, where)
            out.append(p)
        cells.append(tuple(out))
    total = sp.simplify(sum(sum(r) for r in cells))
    if total != 1:
        raise SpecError(
            f"the joint table '{name}' sums to {total_shown(total)}, not 1", doc.loc(*path)
        )
    return Joint(
        name,
        tuple(variables),
        (len(raw), n),
        tuple(cells),
        latex,
        joint_function(name, variables, latex),
    )


def check_ranges(doc, dists: dict, decls) -> None:
    """Probabilities written in symbols stay in [0, 1] over the symbols' domains
    (``_section.probability_range_error``), each a located error otherwise."""
    for name, d in dists.items():
        cells = []
        if isinstance(d, Categorical) and not d.symbolic:
            if d.bernoulli:
                cells = [
                    (("distributions", name, "bernoulli"), d.probs[0], f"the parameter of '{name}'")
                ]
            else:
                cells = [
                    (
                        ("distributions", name, "categorical", i),
                        p,
                        f"probability {i + 1} of '{name}'",
                    )
                    for i, p in enumerate(d.probs)
                ]
        elif isinstance(d, Joint) and not d.symbolic:
            cells = [
                (("distributions", name, "joint", i, j), p, f"p[{i + 1}, {j + 1}] of '{name}'")
                for i, row in enumerate(d.table)
                for j, p in enumerate(row)
            ]
        for path, p, what in cells:
            why = probability_range_error(p, decls, what)
            if why:
                raise SpecError(why, doc.loc(*path))


_BUILDERS = {"categorical": _categorical, "bernoulli": _bernoulli, "gaussian": _gaussian}


def parse_distributions(doc, scope, taken: set) -> dict:
    """{name: Categorical | Gaussian | Joint} from the ``distributions`` key."""
    raw = doc.data.get("distributions")
    if raw is None:
        key = next(k for k in ("quantities", "identities", "units") if k in doc.data)
        raise SpecError(
            "an information-theory spec needs 'distributions' (name -> {categorical: 4}, ...)",
            doc.key_loc(key),
        )
    if not isinstance(raw, dict) or not raw:
        raise SpecError(
            "distributions must be a mapping: name -> {categorical: 4}, "
            "{bernoulli: p}, {gaussian: {mean: mu, var: s2}} or {joint: [[...]]}",
            doc.loc("distributions"),
        )
    out, variables = {}, {}
    for name, info in raw.items():
        loc = doc.key_loc("distributions", name)
        check_identifier(name, "distribution name", loc)
        if name in taken or name in variables:
            raise SpecError(
                f"distribution '{name}' has the name of a symbol, function or "
                "variable already in use",
                loc,
            )
        if not isinstance(info, dict):
            raise SpecError(
                f"distribution '{name}' must be a mapping such as {{categorical: 4}}",
                doc.loc("distributions", name),
            )
        families = [k for k in info if k in FAMILIES]
        extra = [k for k in info if k not in FAMILIES + ("variables", "latex")]
        if extra:
            raise SpecError(
                f"unknown key '{extra[0]}' in distribution '{name}'"
                f"{did_you_mean(extra[0], FAMILIES)}; one of: {', '.join(FAMILIES)}",
                doc.key_loc("distributions", name, extra[0]),
            )
        if len(families) != 1:
            raise SpecError(
                f"distribution '{name}' needs exactly one family ({', '.join(FAMILIES)})",
                doc.loc("distributions", name),
            )
        family = families[0]
        latex = info.get("latex")
        if latex is not None and not isinstance(latex, str):
            raise SpecError(
                f"latex of '{name}' must be a string", doc.loc("distributions", name, "latex")
            )
        if latex is not None:
            where = doc.loc("distributions", name, "latex")
            latex = checked_latex(latex, f"latex of '{name}'", where)
        latex = latex or default_latex(name, ())
        path = ("distributions", name, family)
        if "variables" in info and family != "joint":
            raise SpecError(
                "variables apply to a joint table only",
                doc.key_loc("distributions", name, "variables"),
            )
        if family == "joint":
            d = _joint(doc, path, name, info[family], info.get("variables"), scope, latex)
            for i, v in enumerate(d.variables):
                if v in taken or v in raw or v in variables:
                    raise SpecError(
                        f"variable '{v}' of '{name}' has the name of a symbol, "
                        "distribution or other variable",
                        doc.loc("distributions", name, "variables", i),
                    )
                variables[v] = name
        else:
            d = _BUILDERS[family](doc, path, name, info[family], scope, latex)
        out[name] = d
    return out
