"""The Bellman equations of an MDP written out as steps, its values as tables, and the
results in the output contract's form."""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from dlsym.printing._printers import unicode_name
from dlsym.printing._render import latex_escape
from dlsym.sections._base import Shown, ShownStep, ValueTable
from dlsym.sections.mdp._model import MDP
from dlsym.sections.mdp._solve import TIE_RTOL, Evaluation, Optimum

# a large MDP's equations, steps and tables show its first states only: the others have
# the same form, and the results keep the values of every state (a 1000-state corridor's
# P_pi alone would print a million entries)
ALL_SHOWN_UP_TO = 20
SHOWN_STATES = 10


def shown(states: tuple) -> tuple:
    """The states to write out, of ``states``."""
    return states if len(states) <= ALL_SHOWN_UP_TO else states[:SHOWN_STATES]


def _more(mdp: MDP) -> str:
    """The sentence that says which states were left out, or ''."""
    live = mdp.live
    if len(shown(live)) == len(live):
        return ""
    return (
        f" Written out for the first {SHOWN_STATES} of the {len(live)} non-terminal states; "
        f"the other {len(live) - SHOWN_STATES} have the same form (their values are in the "
        "results)."
    )


# --- display nodes: kept apart so the equations read as written in a textbook -----------


def _is_sum(body) -> bool:
    """A sum, or a sum behind a weight of 1 (printed bare): it needs brackets when weighed."""
    if isinstance(body, Weighted) and body.args[0] == 1:
        return _is_sum(body.args[1])
    return isinstance(body, sp.Add)


class Weighted(sp.Expr):
    """``coef [body]``: a probability times what it weighs, never multiplied out."""

    def __new__(cls, coef, body):
        return sp.Expr.__new__(cls, sp.sympify(coef), body)

    def _latex(self, printer):
        coef, body = self.args
        inner = printer._print(body)
        if coef == 1:
            return inner
        if _is_sum(body):
            inner = rf"\left[{inner}\right]"
        c = printer._print(coef)
        # (1 - alpha) v(low), not 1 - alpha v(low): a sum as a coefficient keeps its brackets
        return rf"\left({c}\right) {inner}" if isinstance(coef, sp.Add) else rf"{c}\, {inner}"

    def _sympystr(self, printer):
        coef, body = self.args
        inner = printer._print(body)
        if coef == 1:
            return inner
        if _is_sum(body):
            inner = f"[{inner}]"
        c = printer._print(coef)
        return f"({c})·{inner}" if isinstance(coef, sp.Add) else f"{c}·{inner}"


class MaxOver(sp.Expr):
    """``max{e_1, ..., e_k}`` over the actions, in the spec's order, never evaluated."""

    def _latex(self, printer):
        return r"\max\left\{" + r",\ ".join(printer._print(a) for a in self.args) + r"\right\}"

    def _sympystr(self, printer):
        return "max{" + ", ".join(printer._print(a) for a in self.args) + "}"


def _plain(e):
    """The display nodes multiplied out (for checking that a display equals its value)."""
    while e.has(Weighted, MaxOver):  # nested weights: one level per pass
        e = e.replace(lambda x: isinstance(x, Weighted), lambda x: x.args[0] * x.args[1]).replace(
            lambda x: isinstance(x, MaxOver), lambda x: sp.Max(*x.args, evaluate=False)
        )
    return e


# digits past which an exact value is shown as a float: a reward of 1e300 made v* a
# 307-digit integer and q* a fraction of two such
SHOWN_DIGITS = 16


def _long(r) -> bool:
    return len(str(abs(r.p))) > SHOWN_DIGITS or len(str(r.q)) > SHOWN_DIGITS


class _Latex(LatexPrinter):
    """Terms in the order they were written (sums over actions and next states)."""

    def __init__(self, names: dict, keep_order: bool):
        super().__init__({"symbol_names": names, "order": "none" if keep_order else None})

    def _print_Rational(self, expr):
        return self._print(sp.Float(expr, 15)) if _long(expr) else super()._print_Rational(expr)

    def _print_Integer(self, expr):
        return self._print(sp.Float(expr, 15)) if _long(expr) else str(expr.p)


class _Text(StrPrinter):
    def __init__(self, names: dict, keep_order: bool):
        super().__init__({"order": "none" if keep_order else None})
        self.names = names

    def _print_Symbol(self, expr):
        return self.names.get(expr, expr.name)

    def _print_Rational(self, expr):
        return self._print(sp.Float(expr, 15)) if _long(expr) else f"{expr.p}/{expr.q}"

    def _print_Integer(self, expr):
        return self._print(sp.Float(expr, 15)) if _long(expr) else str(expr.p)


def state_tex(s: str) -> str:
    return rf"\text{{{latex_escape(s)}}}"


class Notation:
    """Symbols standing for v(s), q(s, a), v*(s) ... and how to print them."""

    def __init__(self, mdp: MDP):
        self.mdp = mdp
        self.latex = {d.symbol: d.latex for d in mdp.symbols}
        self.text = {d.symbol: unicode_name(d.latex) for d in mdp.symbols}
        self._made: dict = {}

    def value(self, kind: str, s: str, a: str | None = None) -> sp.Symbol:
        """kind: 'v' (v_pi), 'q' (q_pi), 'vs' (v*), 'qs' (q*)."""
        key = (kind, s, a)
        if key not in self._made:
            sym = sp.Symbol(f"_{kind}[{s}|{a}]")
            head = {"v": r"v_{\pi}", "q": r"q_{\pi}", "vs": "v_{*}", "qs": "q_{*}"}[kind]
            arg = state_tex(s) if a is None else f"{state_tex(s)}, {state_tex(a)}"
            self.latex[sym] = rf"{head}\left({arg}\right)"
            t = {"v": "vπ", "q": "qπ", "vs": "v*", "qs": "q*"}[kind]
            self.text[sym] = f"{t}({s})" if a is None else f"{t}({s}, {a})"
            self._made[key] = sym
        return self._made[key]

    def tex(self, e, keep_order=False) -> str:
        return _Latex(self.latex, keep_order).doprint(e)

    def txt(self, e, keep_order=False) -> str:
        return _Text(self.text, keep_order).doprint(e)


# --- the equations -------------------------------------------------------------------------


def backup(
    mdp: MDP,
    note: Notation,
    s,
    a,
    value_kind: str,
    star_q: bool = False,
    policy: dict | None = None,
):
    """r(s, a) + gamma sum_s' p(s'|s, a) v(s') written out; with rewards given per next
    state, sum_s' p(s'|s, a) [r(s, a, s') + gamma v(s')]. With ``star_q``, v*(s') is
    written max_a' q*(s', a'); with ``policy``, v_pi(s') is sum_a' pi(a'|s') q_pi(s', a')."""

    def target(n):
        if n in mdp.terminal:
            return note.value(value_kind, n)
        if star_q:
            return MaxOver(*[note.value("qs", n, b) for b in mdp.available[n]])
        if policy is not None:
            terms = [Weighted(w, note.value("q", n, b)) for b, w in policy[n].items()]
            return terms[0] if len(terms) == 1 else sp.Add(*terms, evaluate=False)
        return note.value(value_kind, n)

    def total(terms):
        return terms[0] if len(terms) == 1 else sp.Add(*terms, evaluate=False)

    per_next = mdp.r_next.get((s, a))
    if per_next:
        return total(
            [
                Weighted(pr, sp.Add(per_next[n], Weighted(mdp.gamma, target(n)), evaluate=False))
                for n, pr in mdp.p[(s, a)].items()
            ]
        )
    future = total([Weighted(pr, target(n)) for n, pr in mdp.p[(s, a)].items()])
    return sp.Add(mdp.r[(s, a)], Weighted(mdp.gamma, future), evaluate=False)


def equations(mdp: MDP, note: Notation, kind: str) -> tuple[list, list]:
    """The Bellman equations as displayed, (lhs, rhs) rows for v and for q: ``kind``
    "expectation" (v_pi, and q_pi through the policy's average at the next state) or
    "optimality" (v* with its max, q* through max_a' q*). The result, the steps and the
    check of the written equations all take them from here. A large MDP's are written
    for its first states only (``shown``)."""
    states = shown(mdp.live)
    if kind == "expectation":
        v = [(note.value("v", s), expectation_rhs(mdp, note, mdp.policy, s)) for s in states]
        q = [
            (note.value("q", s, a), backup(mdp, note, s, a, "v", policy=mdp.policy))
            for s in states
            for a in mdp.available[s]
        ]
    else:
        v = [(note.value("vs", s), optimality_rhs(mdp, note, s)) for s in states]
        q = [
            (note.value("qs", s, a), backup(mdp, note, s, a, "vs", star_q=True))
            for s in states
            for a in mdp.available[s]
        ]
    return v, q


def expectation_rhs(mdp: MDP, note: Notation, policy: dict, s: str):
    """sum_a pi(a|s) [backup of (s, a)], written out."""
    terms = [Weighted(w, backup(mdp, note, s, a, "v")) for a, w in policy[s].items()]
    return terms[0] if len(terms) == 1 else sp.Add(*terms, evaluate=False)


def optimality_rhs(mdp: MDP, note: Notation, s: str):
    """max over the actions of s of their backups, written out."""
    options = [backup(mdp, note, s, a, "vs") for a in mdp.available[s]]
    return MaxOver(*options) if len(options) > 1 else options[0]


def _step(note, title, rows, justification) -> ShownStep:
    """rows: (lhs, [rhs, ...]) -> aligned LaTeX and text. A right-hand side built for
    display (unevaluated sums, probability weights) keeps the order it was written in."""
    latex, text = [], []
    for lhs, rhss in rows:
        lt, tt = note.tex(lhs), note.txt(lhs)
        for i, r in enumerate(rhss):
            keep = r.has(Weighted, MaxOver)
            latex.append(f"{lt if i == 0 else ''} &= {note.tex(r, keep)}")
            text.append(f"{tt if i == 0 else ' ' * len(tt)} = {note.txt(r, keep)}")
    return ShownStep(title, " \\\\\n".join(latex), "\n".join(text), justification)


def _collected(mdp, note, ev, s):
    """Row s of r_pi + gamma P_pi v_pi, terminal values (0) dropped."""
    i = mdp.live.index(s)
    terms = [
        Weighted(ev.P[i, j], note.value("v", t)) for j, t in enumerate(mdp.live) if ev.P[i, j] != 0
    ]
    if not terms:
        return ev.r[i]
    future = terms[0] if len(terms) == 1 else sp.Add(*terms, evaluate=False)
    return sp.Add(ev.r[i], Weighted(mdp.gamma, future), evaluate=False)


def expectation_steps(mdp: MDP, note: Notation, ev: Evaluation, kinds) -> list:
    steps = []
    terminal = (
        f" Terminal states ({', '.join(mdp.terminal)}) are absorbing with value 0."
        if mdp.terminal
        else ""
    )
    rows = []
    for s in shown(mdp.live):
        written, collected = expectation_rhs(mdp, note, ev.policy, s), _collected(mdp, note, ev, s)
        # a deterministic policy's equation is already collected: show it once
        same = note.txt(written, True) == note.txt(collected, True)
        rows.append((note.value("v", s), [written] if same else [written, collected]))
    steps.append(
        _step(
            note,
            "Bellman expectation equation for v_pi",
            rows,
            r"$v_\pi(s) = \sum_a \pi(a|s) [r(s,a) + \gamma \sum_{s'} p(s'|s,a)\, "
            r"v_\pi(s')]$: condition on the first action and the next state (law of "
            r"total expectation, with $G_t = R_{t+1} + \gamma G_{t+1}$)." + terminal + _more(mdp),
        )
    )
    vec = sp.Matrix([note.value("v", s) for s in mdp.live])
    gamma = mdp.gamma
    g_tex = "" if gamma == 1 else note.tex(gamma) + r"\,"
    g_txt = "" if gamma == 1 else note.txt(gamma) + "·"
    sol = sp.Matrix([ev.v[s] for s in mdp.live])
    how = (
        "LU over the rationals"
        + (", as rational functions of the symbols" if mdp.parameters else "")
        if mdp.exact
        else "sparse LU in float64"
    )
    if len(shown(mdp.live)) < len(mdp.live):
        n, nnz = len(mdp.live), len(ev.P.todok())
        steps.append(
            ShownStep(
                "Matrix form",
                rf"\mathbf{{v}}_{{\pi}} &= \mathbf{{r}}_{{\pi}} + {g_tex} P_{{\pi}} "
                rf"\mathbf{{v}}_{{\pi}}, \quad P_{{\pi}} \in \mathbb{{R}}^{{{n} \times {n}}} "
                rf"\text{{ ({nnz} nonzero entries)}} \\"
                "\n"
                rf"\mathbf{{v}}_{{\pi}} &= \left(I - {g_tex} P_{{\pi}}\right)^{{-1}} "
                r"\mathbf{r}_{\pi}",
                f"v = r_π + {g_txt}P_π v,   P_π: {n} x {n}, {nnz} nonzero entries\n"
                f"v = (I - {g_txt}P_π)⁻¹ r_π   (values in the results)",
                r"Stack the equations over the non-terminal states: $r_\pi(s) = \sum_a "
                r"\pi(a|s) r(s,a)$, $P_\pi(s, s') = \sum_a \pi(a|s) p(s'|s,a)$; solved by "
                + how
                + ".",
            )
        )
        return steps + _q_pi_steps(mdp, note, ev, kinds, terminal)
    steps.append(
        ShownStep(
            "Matrix form",
            rf"\mathbf{{v}}_{{\pi}} &= \mathbf{{r}}_{{\pi}} + {g_tex} P_{{\pi}} "
            rf"\mathbf{{v}}_{{\pi}}, \quad \mathbf{{v}}_{{\pi}} = {note.tex(vec)},\ "
            rf"\mathbf{{r}}_{{\pi}} = {note.tex(ev.r)},\ P_{{\pi}} = {note.tex(ev.P)} \\"
            "\n"
            rf"\mathbf{{v}}_{{\pi}} &= \left(I - {g_tex} P_{{\pi}}\right)^{{-1}} "
            rf"\mathbf{{r}}_{{\pi}} = {note.tex(sol)}",
            f"v = r_π + {g_txt}P_π v,   r_π = {_row(note, ev.r)},   "
            f"P_π = {_rows(note, ev.P)}\nv = (I - {g_txt}P_π)⁻¹ r_π = "
            f"{_row(note, sol)}   (states {', '.join(mdp.live)})",
            r"Stack the equations over the non-terminal states: $r_\pi(s) = \sum_a \pi(a|s) r(s,a)$,"
            r" $P_\pi(s, s') = \sum_a \pi(a|s) p(s'|s,a)$; solved "
            + ("exactly (" + how + ")." if mdp.exact else "by " + how + "."),
        )
    )
    return steps + _q_pi_steps(mdp, note, ev, kinds, terminal)


def _q_pi_steps(mdp: MDP, note: Notation, ev: Evaluation, kinds, terminal: str) -> list:
    steps = []
    if "bellman_expectation" in kinds:
        steps.append(
            _step(
                note,
                "Bellman expectation equation for q_pi",
                [(lhs, [rhs]) for lhs, rhs in equations(mdp, note, "expectation")[1]],
                r"$q_\pi(s,a) = r(s,a) + \gamma \sum_{s'} p(s'|s,a) \sum_{a'} "
                r"\pi(a'|s')\, q_\pi(s',a')$: after the first action, the next state's "
                r"value is the policy's average of its action values, "
                r"$v_\pi(s') = \sum_{a'} \pi(a'|s') q_\pi(s',a')$." + terminal + _more(mdp),
            )
        )
    if "q_pi" in kinds:
        rows = []
        for s in shown(mdp.live):
            for a in mdp.available[s]:
                e = backup(mdp, note, s, a, "v")
                rows.append((note.value("q", s, a), [e, ev.q[(s, a)]]))
        steps.append(
            _step(
                note,
                "Action values q_pi",
                rows,
                r"$q_\pi(s,a) = r(s,a) + \gamma \sum_{s'} p(s'|s,a)\, v_\pi(s')$: "
                r"one step of the action, then follow $\pi$." + _more(mdp),
            )
        )
    return steps


def optimality_steps(mdp: MDP, note: Notation, opt: Optimum | None, kinds) -> list:
    if len(set(mdp.available.values())) == 1:
        order = ", ".join(next(iter(mdp.available.values())))
    else:
        order = "; ".join(f"{s}: {', '.join(mdp.available[s])}" for s in shown(mdp.live))
    v_rows, q_rows = equations(mdp, note, "optimality")
    steps = [
        _step(
            note,
            "Bellman optimality equation for v*",
            [(l, [r]) for l, r in v_rows],
            r"$v_*(s) = \max_a [r(s,a) + \gamma \sum_{s'} p(s'|s,a)\, v_*(s')]$: an "
            r"optimal policy takes the best action first, then acts optimally "
            f"(principle of optimality). Terms in the order of the actions ({order})." + _more(mdp),
        )
    ]
    steps.append(
        _step(
            note,
            "Bellman optimality equation for q*",
            [(l, [r]) for l, r in q_rows],
            r"$q_*(s,a) = r(s,a) + \gamma \sum_{s'} p(s'|s,a) \max_{a'} q_*(s',a')$, "
            r"since $v_*(s') = \max_{a'} q_*(s', a')$." + _more(mdp),
        )
    )
    if opt is None:
        return steps
    lines_tex, lines_txt = [], []
    large = len(shown(mdp.live)) < len(mdp.live)
    before = None
    for k, ev in enumerate(opt.iterations):
        pol = {s: next(iter(d)) for s, d in ev.policy.items()}
        if large:  # how many actions changed, not every state's
            changed = len(pol) if before is None else sum(pol[s] != before[s] for s in pol)
            what = "the first policy" if before is None else f"{changed} states change action"
            lines_tex.append(rf"\pi_{{{k}}} &: \text{{{what}}}")
            lines_txt.append(f"π{k}: {what}")
            before = pol
            continue
        chosen = ", ".join(rf"{state_tex(s)} \mapsto {state_tex(a)}" for s, a in pol.items())
        values = ", ".join(f"{note.tex(ev.v[s])}" for s in mdp.live)
        lines_tex.append(
            rf"\pi_{{{k}}} &= \left\{{{chosen}\right\}}, \quad "
            rf"v_{{\pi_{{{k}}}}} = \left({values}\right)"
        )
        lines_txt.append(
            f"π{k} = {{{', '.join(f'{s} -> {a}' for s, a in pol.items())}}},  "
            f"v = ({', '.join(note.txt(ev.v[s]) for s in mdp.live)})"
        )
    steps.append(
        ShownStep(
            "Policy iteration (exact)" if mdp.exact else "Policy iteration (float64)",
            " \\\\\n".join(lines_tex),
            "\n".join(lines_txt),
            ("Evaluate the policy exactly" if mdp.exact else "Evaluate the policy in float64")
            + ", then act greedily with respect to its $q_\\pi$ "
            "(keeping the current action on ties"
            + ("" if mdp.exact else f", values within {TIE_RTOL:g} relative count as tied")
            + "); a policy that is greedy with respect to its own "
            f"values is optimal. Stopped after {len(opt.iterations)} evaluation"
            + ("s." if len(opt.iterations) > 1 else "."),
        )
    )
    rows = [(note.value("vs", s), [opt.v[s]]) for s in shown(mdp.live)]
    if "q_star" in kinds:
        rows += [
            (note.value("qs", s, a), [opt.q[(s, a)]])
            for s in shown(mdp.live)
            for a in mdp.available[s]
        ]
    ties = opt.ties
    steps.append(
        _step(
            note,
            "Optimal values",
            rows,
            r"$v_* = v_{\pi_*}$ and $q_*(s,a) = r(s,a) + \gamma \sum_{s'} p(s'|s,a) "
            r"v_*(s')$; $\pi_*(s) = \arg\max_a q_*(s,a)$"
            + (f". Ties: {ties_text(ties)}." if ties else ".")
            + _more(mdp),
        )
    )
    return steps


def ties_text(ties: dict) -> str:
    """The tied states, the first SHOWN_STATES of them past ALL_SHOWN_UP_TO."""
    states = shown(tuple(ties))
    text = "; ".join(f"in {s}, {' and '.join(ties[s])} are equally good" for s in states)
    left = len(ties) - len(states)
    return text + (f"; and in {left} more states (policy_star's ties)" if left else "")


def _row(note, m) -> str:
    return "(" + ", ".join(note.txt(x) for x in m) + ")"


def _rows(note, m) -> str:
    return (
        "["
        + "; ".join(", ".join(note.txt(m[i, j]) for j in range(m.cols)) for i in range(m.rows))
        + "]"
    )


# --- tables and results -------------------------------------------------------------------


def _num(e) -> str:
    try:
        return f"{float(e):.6g}"
    except TypeError:
        return ""


def value_table(mdp, note, title, values: dict, policy: dict | None = None) -> ValueTable:
    numeric = all(values[s].is_number for s in mdp.states)
    cols = (
        ("state", "value")
        + (("decimal",) if numeric else ())
        + (("optimal action(s)",) if policy else ())
    )
    rows, tex = [], []
    for s in shown(mdp.states):
        approx = (_num(values[s]),) if numeric else ()
        extra = ((", ".join(policy[s]) or "terminal"),) if policy else ()
        rows.append((s, note.txt(values[s])) + approx + extra)
        tex.append(
            (latex_escape(s), f"${note.tex(values[s])}$")
            + tuple(latex_escape(x) for x in approx + extra)
        )
    _ellipsis(mdp.states, len(cols), rows, tex)
    return ValueTable(title, cols, tuple(rows), tuple(tex))


def _ellipsis(states, ncols: int, rows: list, tex: list) -> None:
    """A last row that says how many states the table leaves out."""
    left = len(states) - len(shown(states))
    if left:
        note = f"{left} more states (in the results)"
        rows.append(("...", note) + ("",) * (ncols - 2))
        tex.append((r"\dots", latex_escape(note)) + ("",) * (ncols - 2))


def q_table(mdp, note, title, q: dict) -> ValueTable:
    rows, tex = [], []
    for s in shown(mdp.live):
        cells = [note.txt(q[(s, a)]) if (s, a) in q else "" for a in mdp.actions]
        rows.append((s, *cells))
        tex.append(
            (
                latex_escape(s),
                *[f"${note.tex(q[(s, a)])}$" if (s, a) in q else "" for a in mdp.actions],
            )
        )
    _ellipsis(mdp.live, 1 + len(mdp.actions), rows, tex)
    return ValueTable(title, ("state", *mdp.actions), tuple(rows), tuple(tex))


def grid_table(mdp, title, values: dict, policy: dict | None = None) -> ValueTable:
    """Values where the cells are: rows and columns of the grid the state names give."""
    rows_n = 1 + max(r for r, _ in mdp.grid.values())
    cols_n = 1 + max(c for _, c in mdp.grid.values())
    at = {cell: s for s, cell in mdp.grid.items()}
    out = []
    for i in range(rows_n):
        row = [str(i)]
        for j in range(cols_n):
            s = at.get((i, j))
            if s is None:
                row.append("")
            elif s in mdp.terminal:
                row.append("T")
            else:
                cell = _num(values[s])
                if policy:
                    cell += " " + "/".join(policy[s])
                row.append(cell)
        out.append(tuple(row))
    return ValueTable(title, ("row \\ col", *[str(j) for j in range(cols_n)]), tuple(out))


def values_shown(mdp, note, kind, values: dict, symbol) -> Shown:
    vec = sp.Matrix([values[s] for s in mdp.states])
    expr = "[" + ", ".join(sp.sstr(values[s]) for s in mdp.states) + "]"
    return Shown(
        expr,
        rf"{symbol} = {note.tex(vec)}",
        values,
        {"states": list(mdp.states), "values": {s: sp.sstr(values[s]) for s in mdp.states}},
    )


def q_shown(mdp, note, kind, q: dict, symbol) -> Shown:
    rows = (
        sp.Matrix([[q.get((s, a), sp.nan) for a in mdp.actions] for s in mdp.live])
        if mdp.live
        else sp.Matrix()
    )
    expr = (
        "["
        + ", ".join(
            "["
            + ", ".join(sp.sstr(q[(s, a)]) if (s, a) in q else "None" for a in mdp.actions)
            + "]"
            for s in mdp.live
        )
        + "]"
    )
    latex = rf"{symbol} = {note.tex(rows)}".replace(r"\text{NaN}", "-")
    return Shown(
        expr,
        latex,
        q,
        {
            "states": list(mdp.live),
            "actions": list(mdp.actions),
            "values": {s: {a: sp.sstr(q[(s, a)]) for a in mdp.available[s]} for s in mdp.live},
        },
    )
