"""Recurrences (shared/spec-format.md, "Recurrences (RNNs, optimizers, filters)"):
``recurrence: {index, state, update, loss}`` validated into a frozen ``Recurrence``.

One step is written in symbols that stand for the values around step t: each state's
value before the step (``h`` in ``update``: h_{t-1}), after it (``h`` in ``loss``: h_t)
and at the next step (h_{t+1}), each ``x[t]`` (x_t) and the next (x_{t+1}), and the
adjoints δ_t and δ_{t+1}. The derivation (``dlsym.calculus._bptt``) differentiates those
one-step expressions; nothing is unrolled symbolically, so T stays a symbol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from dlsym._errors import SpecError, did_you_mean
from dlsym.expr import _ops as ops
from dlsym.expr._algebra import Algebra
from dlsym.expr._names import check_user_name
from dlsym.expr._parse import Scope
from dlsym.spec._common import Header, header
from dlsym.spec._laws import parse_laws
from dlsym.spec._read import _check_keys, _mapping, _parse
from dlsym.spec._spec import Spec
from dlsym.spec._symbols import SymbolDecl, _dims, _symbols, default_latex, scripted
from dlsym.spec._yamlfile import Document

KEYS = ("recurrence", "wrt", "define")
RECURRENCE_KEYS = ("index", "state", "update", "loss", "final")
KINDS = ("gradient", "jacobian", "closed_form")
HORIZON = "T"  # the dim the time index runs to


@dataclass(frozen=True)
class State:
    name: str
    shape: tuple
    init: Any  # its value at time 0, in the spec's symbols
    prev: sp.Symbol  # h_{t-1}
    cur: sp.Symbol  # h_t
    next: sp.Symbol  # h_{t+1}
    adjoint: sp.Symbol  # δ_t = ∂ℓ/∂h_t
    adjoint_next: sp.Symbol  # δ_{t+1}
    update: Any  # h_t in prev states and the inputs at t
    update_next: Any  # h_{t+1} in cur states and the inputs at t + 1


@dataclass(frozen=True)
class Read:
    """A [T, ...] symbol read at the time index: x[t]."""

    name: str
    symbol: sp.Symbol  # the whole sequence
    cur: sp.Symbol  # x_t
    next: sp.Symbol  # x_{t+1}


@dataclass(frozen=True)
class Recurrence:
    head: Header
    index: str
    horizon: sp.Symbol  # T
    states: tuple  # State
    reads: tuple  # Read
    loss: Any  # ℓ_t in cur states and the inputs at t; None: no per-step loss
    wrt: tuple  # names of declared symbols
    step: sp.Symbol  # the index t as an update reads it: the step being made, 1..T
    spec: Spec = field(repr=False, compare=False)  # every symbol, for the calculus engine
    # the read at step t of a random [T] symbol -> its law (every entry's): g[t] ~ g's
    laws: dict = field(default_factory=dict, repr=False, compare=False)
    # what the derivation says of how the spec was read (a define in two scopes)
    notes: tuple = field(default=(), compare=False)
    # a term at t = T only, in cur states (h_T) and the inputs at T; None: none (a loss
    # on the last output of a sequence model, as "loss only at the end" writes it)
    final: Any = None

    def state(self, name: str) -> State:
        return next(s for s in self.states if s.name == name)


def _words(text) -> set:
    """The names a text reads (a define's, an update's, the loss's)."""
    return set(re.findall(r"[A-Za-z_]\w*", str(text)))


def _defines_in_two_scopes(raw, raw_defines, prev_scope, partial, loss) -> tuple:
    """A note for each define that reads the states and is used in an update and in the
    loss: the same name is two values, as the contract reads it (an update's states are
    those at t − 1, the loss's those at t). A loss on z = W h + U x[t] is not on the
    pre-activation that produced h_t, which a reader may well have meant."""
    if loss is None or not raw_defines:
        return ()
    before = {m["prev"].symbol for _, _, _, m in partial}
    # the scope holds each define's expression, read in the update's scope
    reading = [n for n in raw_defines if prev_scope.symbols[n].free_symbols & before]
    in_loss = _words(raw.get("loss", "")) | _words(raw.get("final", ""))
    in_updates = set().union(*(_words(t) for t in (raw.get("update") or {}).values()))
    # a define read by another define counts where that one is read (later reads earlier)
    for n in reversed(list(raw_defines)):
        read = _words(raw_defines[n]) & set(raw_defines)
        in_loss |= read if n in in_loss else set()
        in_updates |= read if n in in_updates else set()
    both = [n for n in reading if n in in_loss and n in in_updates]
    return tuple(
        f"the define {n} reads the states, and is used in an update and in the loss: in "
        "the update it is read with the states at t − 1 (the step being made), in the "
        f"loss with the states at t (after it), so the loss's {n} is not the value that "
        f"produced the state at t; to put the loss on that one, carry {n} as a state"
        for n in both
    )


def _decl(name, shape, latex, like: SymbolDecl | None = None) -> SymbolDecl:
    """A step's symbol; ``like``: the sequence it is read from, whose domain it keeps
    (tok[t] of labels {index: V} is a label too: E[tok[t]] gathers a row)."""
    if like is not None and like.domain == "index":
        return SymbolDecl(
            name, sp.Symbol(name, integer=True), tuple(shape), "index", latex, like.index_size
        )
    if like is not None and like.domain in ("onehot", "simplex") and len(like.shape) >= 2:
        # a step of one-hot rows Y: [T, C] is one-hot, Y[t] sums to 1: the output layer's
        # gradient kept softmax(·) sum(Y_t) − Y_t for p_t − y_t
        return SymbolDecl(name, sp.Symbol(name, real=True), tuple(shape), like.domain, latex)
    return SymbolDecl(name, sp.Symbol(name, real=True), tuple(shape), "real", latex)


def build_recurrence(doc: Document) -> Recurrence:
    if not isinstance(doc.data, dict):
        raise SpecError("a spec must be a YAML mapping of keys", doc.loc())
    head = header(doc, KEYS, KINDS, ("gradient",))
    if len(head.derive) > 1:
        raise SpecError(
            f"a recurrence spec derives one kind (gradient, jacobian or closed_form), "
            f"got {', '.join(head.derive)}: write one spec per kind",
            doc.loc("derive"),
        )
    dims, dim_symbols = _dims(doc)
    decls = _symbols(doc, dim_symbols)
    raw = _mapping(doc, doc.data["recurrence"], ("recurrence",), "recurrence")
    _check_keys(doc, raw, RECURRENCE_KEYS, ("recurrence",), "recurrence")
    for key in ("index", "state", "update"):
        if key not in raw:
            raise SpecError(f"recurrence needs '{key}'", doc.loc("recurrence"))
    index = raw["index"]
    taken = {d.name for d in decls} | set(dims)
    if not isinstance(index, str):
        raise SpecError(
            "recurrence.index must be a name, such as t", doc.loc("recurrence", "index")
        )
    check_user_name(index, "time index", doc.loc("recurrence", "index"))
    if index in taken:
        raise SpecError(
            f"the time index '{index}' is also a symbol or a dim", doc.loc("recurrence", "index")
        )
    if HORIZON not in dim_symbols:
        raise SpecError(
            f"a recurrence runs {index} = 1..{HORIZON}: declare {HORIZON} in dims (the "
            "number of steps verification unrolls)",
            doc.loc("dims") if "dims" in doc.data else doc.loc(),
        )
    horizon = dim_symbols[HORIZON]
    shapes = {d.symbol: d.shape for d in decls}
    labels = {d.symbol: d.index_size for d in decls if d.domain == "index"}
    base = Algebra(ops.ShapeTable(shapes), index_symbols=labels)
    table = {d.name: d.symbol for d in decls}
    values = {dim_symbols[k]: v for k, v in dims.items()}
    scope = Scope(table, dim_symbols, base, values)

    # x[t]: the symbols with T as their first axis
    reads = []
    synthetic = []
    for d in decls:
        if d.shape and d.shape[0] == horizon:
            cur = _decl(f"_{d.name}_t", d.shape[1:], scripted(d.latex) + "_{t}", d)
            nxt = _decl(f"_{d.name}_next", d.shape[1:], scripted(d.latex) + "_{t+1}", d)
            reads.append(Read(d.name, d.symbol, cur.symbol, nxt.symbol))
            synthetic += [cur, nxt]

    raw_state = _mapping(doc, raw["state"], ("recurrence", "state"), "recurrence.state")
    raw_update = _mapping(doc, raw["update"], ("recurrence", "update"), "recurrence.update")
    if not raw_state:
        raise SpecError("recurrence.state names no state", doc.loc("recurrence", "state"))
    partial = []
    several = len(raw_state) > 1
    for name in raw_state:
        # δ^{(c)}: whose adjoint, when there are several
        tag = default_latex(name, ()) if several else ""
        loc = doc.key_loc("recurrence", "state", name)
        check_user_name(name, "state", loc)
        if name in taken or name == index:
            raise SpecError(f"state '{name}' has the name of a symbol, dim or the index", loc)
        init = _parse(doc, ("recurrence", "state", name), f"the initial {name}", scope)
        if name not in raw_update:
            raise SpecError(f"recurrence.update has no rule for state '{name}'", loc)
        shape = tuple(base.shape(init))
        # the name as calculus writes it (m_1: m_{1}), braced for the step's subscript
        latex = scripted(default_latex(name, shape))
        made = {
            "prev": _decl(f"_{name}_prev", shape, latex + "_{t-1}"),
            "cur": _decl(f"_{name}_t", shape, latex + "_{t}"),
            "next": _decl(f"_{name}_next", shape, latex + "_{t+1}"),
            "adjoint": _decl(f"_delta_{name}", shape, _delta(shape, tag, "t")),
            "adjoint_next": _decl(
                f"_delta_{name}_next",
                shape,
                _delta(shape, tag, "t+1"),
            ),
        }
        synthetic += list(made.values())
        partial.append((name, shape, init, made))
    for name in raw_update:
        if name not in raw_state:
            raise SpecError(
                f"recurrence.update has a rule for '{name}', which is not a state"
                f"{did_you_mean(name, raw_state)}",
                doc.key_loc("recurrence", "update", name),
            )
    if len(partial) > 1 and "jacobian" in head.derive:
        raise SpecError(
            "the jacobian of the final state is derived for one state in this version",
            doc.key_loc("recurrence", "state", list(raw_state)[1]),
        )
    # t in an update (avg + (θ - avg)/t, lr/t): the number of the step being made, a
    # scalar; the same symbol the closed forms are solved in
    step_symbol = sp.Symbol(index, integer=True, nonnegative=True)
    summing = [d for d in synthetic if d.domain in ("simplex", "onehot")]
    algebra = base.extended(
        {d.symbol: d.shape for d in synthetic} | {step_symbol: ()},
        labels={d.symbol: d.index_size for d in synthetic if d.domain == "index"},
        sums_to_one=frozenset(d.symbol for d in summing if len(d.shape) == 1),
        rows_sum_to_one=frozenset(d.symbol for d in summing if len(d.shape) > 1),
    )
    steps = {r.name: (index, r.cur) for r in reads}

    raw_defines = (
        _mapping(doc, doc.data["define"], ("define",), "define") if "define" in doc.data else {}
    )
    for name in raw_defines:
        loc = doc.key_loc("define", name)
        check_user_name(name, "define", loc)
        if name in taken or name == index or name in raw_state:
            raise SpecError(
                f"define '{name}' has the name of a symbol, dim, state or the index", loc
            )

    def scope_with(role):
        """The names an update (``prev``) or the loss (``cur``) reads: the symbols, the
        states at that step, the index, and the defines, read in that scope and put in
        as their expressions (a define may read the states: z = W @ h + U @ x[t])."""
        names = dict(table)
        names.update({n: m[role].symbol for n, _, _, m in partial})
        names[index] = step_symbol
        scope = Scope(names, dim_symbols, algebra, values, steps, index)
        for name in raw_defines:  # in order: each may read those before it
            names[name] = _parse(doc, ("define", name), f"the define {name}", scope)
        return scope

    states = []
    for name, shape, init, made in partial:
        path = ("recurrence", "update", name)
        update = _parse(doc, path, f"the update of {name}", scope_with("prev"))
        if algebra.shape(update) != shape:
            raise SpecError(
                f"the update of {name} is a {ops.fmt_shape(algebra.shape(update))}, but "
                f"{name} starts as a {ops.fmt_shape(shape)}",
                doc.loc(*path),
            )
        shift = {m["prev"].symbol: m["cur"].symbol for _, _, _, m in partial}
        shift.update({r.cur: r.next for r in reads})
        shift[step_symbol] = step_symbol + 1
        states.append(
            State(
                name,
                shape,
                init,
                made["prev"].symbol,
                made["cur"].symbol,
                made["next"].symbol,
                made["adjoint"].symbol,
                made["adjoint_next"].symbol,
                update,
                update.xreplace(shift),
            )
        )

    def scalar_term(key: str, what: str):
        """recurrence.<key>, a scalar in the states at t (None where absent)."""
        if key not in raw:
            return None
        term = _parse(doc, ("recurrence", key), f"the {what}", scope_with("cur"))
        if algebra.shape(term) != ():
            per = " per step" if key == "loss" else ""
            raise SpecError(
                f"the {what} must be a scalar{per}, got a {ops.fmt_shape(algebra.shape(term))}",
                doc.loc("recurrence", key),
            )
        return term

    loss = scalar_term("loss", "loss")
    final = scalar_term("final", "final loss")
    if "gradient" in head.derive and loss is None and final is None:
        raise SpecError(
            "the gradient needs recurrence.loss (the per-step term the objective adds up) "
            "or recurrence.final (a term on the states at t = T only)",
            doc.loc("recurrence"),
        )
    # what the objective reads beside the updates: both loss terms
    both = sum((e for e in (loss, final) if e is not None), sp.S.Zero)
    terms = both if (loss is not None or final is not None) else None
    wrt = () if head.derive == ("closed_form",) else _wrt(doc, head, decls, reads, states, terms)
    laws = parse_laws(doc, decls, scope)
    by_name = {r.symbol: r.cur for r in reads}
    for sym in laws:
        if sym not in by_name:
            raise SpecError(
                f"'{sym}' has a distribution but is not read at each step; a recurrence's "
                f"random symbols are sequences ([T, ...], read as {sym}[{index}])",
                doc.loc("symbols", str(sym), "distribution"),
            )
    for st in states:  # g[T - 1] of a random g: one fixed draw, which no rule averages
        fixed = sorted(str(sym) for sym in st.update.free_symbols & set(laws))
        if fixed:
            raise SpecError(
                f"'{fixed[0]}' is random and is read at the step only, as "
                f"{fixed[0]}[{index}] (a new draw at each step); an entry at a fixed step "
                "is not averaged by closed_form",
                doc.loc("recurrence", "update", st.name),
            )
    if laws and head.derive != ("closed_form",):
        raise SpecError(
            "random symbols in a recurrence are averaged by closed_form; derive only it",
            doc.loc("derive") if "derive" in doc.data else doc.loc(),
        )
    notes = _defines_in_two_scopes(raw, raw_defines, scope_with("prev"), partial, terms)
    spec = Spec(
        name=head.name,
        title=head.title,
        description=head.description,
        file=doc.file,
        symbols=tuple(decls) + tuple(synthetic),
        dims=dims,
        dim_symbols=dim_symbols,
        defines=(),
        objective=None,
        output=None,
        wrt=(),
        derive=("gradient",),
        verify=head.verify,
        algebra=algebra,
        doc=doc,
    )
    steps_laws = {by_name[sym]: law for sym, law in laws.items()}
    _index_read_by_closed_form_only(doc, head, states, terms, step_symbol)
    return Recurrence(
        head,
        index,
        horizon,
        tuple(states),
        tuple(reads),
        loss,
        wrt,
        step_symbol,
        spec,
        steps_laws,
        notes,
        final,
    )


def _index_read_by_closed_form_only(doc, head, states, loss, step_symbol) -> None:
    """t in an update or the loss: closed_form solves with it; back-propagation through
    time and the step Jacobians are derived for updates that are the same at every step."""
    if head.derive == ("closed_form",):
        return
    parts = [(("recurrence", "update", s.name), s.update) for s in states]
    parts.append((("recurrence", "loss"), loss if loss is not None else sp.S.Zero))
    for path, expr in parts:
        if step_symbol in expr.free_symbols:
            raise SpecError(
                f"the index '{step_symbol}' is read by closed_form only: the {head.derive[0]} "
                "of a recurrence is derived for steps that do not change with "
                f"{step_symbol} in this version",
                doc.loc(*path),
            )


def _delta(shape, tag: str, at: str) -> str:
    """The LaTeX of an adjoint: δ_t, or δ^{(c)}_t when several states have one."""
    base = r"\boldsymbol{\delta}" if shape else r"\delta"
    return f"{base}^{{({tag})}}_{{{at}}}" if tag else f"{base}_{{{at}}}"


def _wrt(doc, head, decls, reads, states, loss) -> tuple:
    raw = doc.data.get("wrt")
    if raw is None:
        raise SpecError("missing 'wrt': the symbols to differentiate with respect to", doc.loc())
    names = raw if isinstance(raw, list) else [raw]
    known = {d.name for d in decls}
    sequence = {r.name for r in reads}
    initial = {str(s.init) for s in states if isinstance(s.init, sp.Symbol)}
    for i, n in enumerate(names):
        loc = doc.loc("wrt", i) if isinstance(raw, list) else doc.loc("wrt")
        if not isinstance(n, str) or n not in known:
            raise SpecError(f"wrt '{n}' is not a declared symbol{did_you_mean(str(n), known)}", loc)
        if n in sequence:
            raise SpecError(
                f"wrt '{n}' is read at each step; the gradient with respect to a sequence "
                "is not derived yet (parameters and the initial state are)",
                loc,
            )
        sym = next(d.symbol for d in decls if d.name == n)
        starts = [st for st in states if sym in getattr(st.init, "free_symbols", ())]
        steps = set().union(*(st.update.free_symbols for st in states)) | (
            loss.free_symbols if loss is not None else set()
        )
        if starts and (len(starts) > 1 or starts[0].init != sym or sym in steps):
            raise SpecError(
                f"wrt '{n}' is in an initial value; the gradient is derived for an initial "
                f"state that is a symbol of its own, used nowhere else (state: {{h: {n}}})",
                loc,
            )
        if "jacobian" in head.derive and n not in initial:
            raise SpecError(
                f"the jacobian of a recurrence is that of the final state with respect to "
                f"the initial one: wrt must name the initial state's symbol, not '{n}'",
                loc,
            )
    return tuple(names)
