"""Recurrences (shared/spec-format.md, "Recurrences (RNNs, optimizers, filters)"):
back-propagation through time with a symbolic horizon T (``dlsym.calculus._bptt``), the
Jacobian of the final state as a product of step Jacobians, both verified by JAX
autodiff through ``jax.lax.scan`` at the dims' T, or a linear recurrence solved for t
(``dlsym.calculus._linear_recurrence``), verified by running it forward (``_verify``).
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.pretty.stringpict import prettyForm

from dlsym._budget import step
from dlsym.calculus._affine import NoClosedForm
from dlsym.calculus._bptt import derive_bptt, step_jacobian
from dlsym.calculus._linear_recurrence import solve_linear, special_branches, time_symbol
from dlsym.calculus._special_values import caveat_note
from dlsym.printing._printers import unicode_name
from dlsym.sections._base import SectionDerivation, Shown, ShownStep, check_laws
from dlsym.sections._rows import (
    EQ,
    Printing,
    Step,
    latex_rows,
    law_latex,
    law_pretty,
    text_rows,
)
from dlsym.sections.recurrence._function import (
    closed_form_function,
    recurrence_function,
    user_decls,
)
from dlsym.sections.recurrence._verify import verify_closed_form, verify_recurrence
from dlsym.spec._recurrence import build_recurrence
from dlsym.spec._yamlfile import Document
from dlsym.verify import report

SUM = (r"\sum_{t=1}^{T} ", "Σ_{t=1..T} ")  # a sum over the steps, in LaTeX and text


class RecurrenceDerivation(SectionDerivation):
    def __init__(self, rec, printing, kind, derived, results, steps, notes=()):
        super().__init__(rec.head, results, [], notes=notes)
        self.rec, self.kind, self.derived = rec, kind, derived
        self.spec = rec.spec
        self.printing = printing
        self.steps = tuple(
            ShownStep(
                s.title,
                latex_rows(self.printing, s.rows),
                text_rows(self.printing, s.rows),
                s.why,
            )
            for s in steps
        )
        self.section = "recurrence"

    @property
    def value_kinds(self) -> tuple:
        return (self.kind,)

    def unavailable(self, kind: str) -> str | None:
        if kind == "closed_form" and self.derived is None:
            return self.notes[0] if self.notes else "no closed form was found"
        return None

    def _function(self, kind: str, backend: str):
        if kind == "closed_form":
            return closed_form_function(self.rec, self.derived, time_symbol(self.rec), backend)
        return recurrence_function(self.rec, self.derived, kind, backend)

    def _verify(self, points, seed, device, dtype, rtol, atol):
        if self.kind == "closed_form":
            if self.derived is None:  # nothing was claimed: the notes say why
                return report([], 0, dtype, device, rtol, atol)
            return verify_closed_form(self, points, seed, device, dtype, rtol, atol)
        return verify_recurrence(self, points, seed, device, dtype, rtol, atol)


def build(doc: Document) -> RecurrenceDerivation:
    rec = build_recurrence(doc)
    check_laws(
        doc, rec.laws, user_decls(rec), rec.spec.dim_values, {r.cur: r.name for r in rec.reads}
    )
    printing = Printing(rec.spec)
    names = printing.latex_names
    rows = []
    for s in rec.states:
        h = names[s.cur].removesuffix("_{t}")
        text_h = unicode_name(h)
        # m₀, and m₁_0 where the name ends in a subscript of its own (not m₁₀)
        zero = "_0" if text_h[-1] in "₀₁₂₃₄₅₆₇₈₉₊₋" else "₀"
        start = ((f"{h}_{{0}}", f"{text_h}{zero}"), EQ, s.init)
        # an initial value named as the state at 0 reads h₀ = h₀: nothing to say
        said = printing.latex_of(s.init) != f"{h}_{{0}}"
        rows += [start] * said + [(s.cur, EQ, s.update)]
    why = f"the state's update, for t = 1, ..., T (T = {rec.spec.dims['T']} to verify)"
    terms = [(r"\sum_{t=1}^{T} \ell_{t}", "Σ_{t=1..T} ℓₜ")] * (rec.loss is not None)
    terms += [(r"L", "L")] * (rec.final is not None)
    if terms:
        total = (" + ".join(t[0] for t in terms), " + ".join(t[1] for t in terms))
        rows.append(((r"\ell", "ℓ"), EQ, total))
    if rec.loss is not None:
        rows.append(((r"\ell_{t}", "ℓₜ"), EQ, rec.loss))
        why += "; the loss adds up a term per step"
    if rec.final is not None:
        rows.append(((r"L", "L"), EQ, rec.final.xreplace(_at_the_last_step(rec, printing))))
        why += "; the final loss L reads the states at t = T only"
    for r, law in rec.laws.items():
        rows.append((r, (r"\sim", "~"), (law_latex(printing, law), law_pretty(law))))
        why += f"; the {r.name.strip('_').removesuffix('_t')}[t] are independent draws"
    steps = [Step("Recurrence", rows, why)]
    kind = rec.head.derive[0]
    if kind == "closed_form":
        with step("closed form of the recurrence"):
            try:
                solved, moment_steps = solve_linear(rec)
            except NoClosedForm as exc:
                note = f"no closed form: {exc}"
                shown = Shown("none", r"\text{no closed form}")
                return RecurrenceDerivation(rec, printing, kind, None, {kind: shown}, steps, [note])
        results, more = _closed_form(rec, printing, solved, moment_steps)
        notes = [
            caveat_note(f"the closed form for {sol.state}_t", sol.caveats, printing.expr_of)
            for sol in solved
            if sol.caveats
        ]
        return RecurrenceDerivation(rec, printing, kind, solved, results, steps + more, notes)
    with step(f"{kind} of the recurrence"):
        if kind == "jacobian":
            (s,) = rec.states
            h = names[s.cur].removesuffix("_{t}")
            derived = step_jacobian(rec)
            results, more = _jacobian(rec, printing, derived, h, unicode_name(h))
        else:
            derived = derive_bptt(rec)
            results, more = _gradient(rec, printing, derived)
    return RecurrenceDerivation(rec, printing, kind, derived, results, steps + more, rec.notes)


def _gradient(rec, printing, derived):
    several = len(rec.states) > 1
    last, recursion = [], []
    at_end = _at_the_last_step(rec, printing)
    for s in rec.states:
        # δ_T: the adjoint's own LaTeX at t = T (δ^{(c)}_{T} when there are several)
        # (its last subscript only: a state c_t is the c_{t} of δ^{(c_{t})})
        latex_end = printing.latex_names[s.adjoint].removesuffix("_{t}") + "_{T}"
        text_end = ("δ" + (f"^({s.name})" if several else "")) + "_T"
        last.append(((latex_end, text_end), EQ, derived.terminal[s.name].xreplace(at_end)))
        recursion.append((s.adjoint, EQ, derived.adjoint[s.name]))
    names = ", ".join(s.name for s in rec.states)
    last_terms = {
        (True, False): "the last loss term's gradient (the right-hand side at t = T)",
        (False, True): "the final loss L's gradient",
        (True, True): "the gradient of the last loss term and of the final loss L",
    }[rec.loss is not None, rec.final is not None]
    # one state: its own name at t (h_t), as the textbook says it
    one = printing.latex_names[rec.states[0].cur].removesuffix("_{t}")
    at_t = "the states at t" if several else f"${one}_t$"
    steps = [
        Step(
            "Adjoint at the last step",
            last,
            f"$\\delta_t = \\partial \\ell / \\partial s_t$ for each state s ({names}) at "
            f"t = T, where no later step depends on it: {last_terms}",
        ),
        Step(
            "Adjoint recursion (back-propagation through time)",
            recursion,
            "for t = T - 1, ..., 1: $\\delta_t = \\nabla \\ell_t + J_{t+1}^\\top "
            f"\\delta_{{t+1}}$, the Jacobian of step t + 1 with respect to {at_t} "
            "applied transposed, as a vector-Jacobian product"
            + (" (every state's update at t + 1 that reads it)" if several else ""),
        ),
    ]
    parts = {}
    for w in rec.wrt:
        decl = rec.spec.symbol(w)
        grad = (rf"\nabla_{{{printing.latex_names[decl.symbol]}}} \ell", f"∇_{w} ℓ")
        if w in derived.initial:
            expr = derived.initial[w]
            why = (
                "the initial state feeds step 1 only: $J_1^\\top \\delta_1$, the "
                "recursion's right-hand side at t = 0 without a loss term (its t + 1 is 1)"
            )
            # t = 0 here: step t + 1 is step 1 (a free t in the result read as any step)
            t = rec.index
            latex = (
                printing.latex_of(expr).replace(f"_{{{t}+1}}", "_{1}").replace(f"_{{{t}}}", "_{0}")
            )
            text = printing.text_of(expr).replace(f"_{t}+1", "₁")
            lang = printing.expr_of(expr)
            rhs = (latex, _at_step_one(expr, t))
        else:
            expr = derived.summands[w]
            why = (
                f"{w} is used at every step: the sum over t of each step's vector-Jacobian "
                "product with its adjoint"
            )
            # a summand of several terms in parentheses: Σ_t a + b reads as (Σ_t a) + b
            several = isinstance(expr, sp.Add)
            latex = SUM[0] + (r"\left({}\right)" if several else "{}").format(
                printing.latex_of(expr)
            )
            text = SUM[1] + ("({})" if several else "{}").format(printing.text_of(expr))
            lang = f"sum over t = 1..T of ({printing.expr_of(expr)})"
            rhs = (latex, _summed(expr))
            if w in derived.final:
                # the final loss's own term, at t = T (an output layer under a loss at
                # the last step only: V's gradient is that term alone)
                end = derived.final[w].xreplace(at_end)
                lang_end = _readable(rec, printing.expr_of(derived.final[w]))
                lang_end = lang_end.replace(f"[{rec.index}]", f"[{rec.horizon}]")
                if expr == 0:
                    why = f"{w} is read by the final loss only, at t = T"
                    latex, text, lang = printing.latex_of(end), printing.text_of(end), lang_end
                    rhs = (latex, lambda printing, end=end: printing.pretty(end))
                else:
                    why += ", and the final loss's term at t = T"
                    latex += " + " + printing.latex_of(end)
                    text += " + " + printing.text_of(end)
                    lang += f" + ({lang_end})"
                    rhs = (latex, _plus(_summed(expr), end))
        steps.append(Step(f"Gradient with respect to {w}", [(grad, EQ, rhs)], why))
        lang = _readable(rec, lang)
        if w in derived.initial:  # at t = 0: step t + 1 is step 1, step t step 0
            lang = lang.replace(f"[{rec.index}+1]", "[1]").replace(f"[{rec.index}]", "[0]")
        parts[w] = {"expr": lang, "latex": f"{grad[0]} = {latex}", "text": text}
    if len(parts) == 1:
        (p,) = parts.values()
        shown = Shown(p["expr"], p["latex"])
    else:
        shown = Shown(
            "; ".join(f"{w}: {p['expr']}" for w, p in parts.items()),
            " \\\\ ".join(p["latex"] for p in parts.values()),
            extra={"wrt": {w: {"expr": p["expr"], "latex": p["latex"]} for w, p in parts.items()}},
        )
    return {"gradient": shown}, steps


# How each form of a solved state reads: the quantity that is linear in its past, at t
# and at t - 1, in LaTeX and text (s: the state's name), and why the step holds
FORM_ROWS = {
    "linear": (
        "{s}_{{t}}",
        "{s}_t",
        "{s}_{{t-1}}",
        "{s}_t-1",
        "the update is linear in the states",
    ),
    # two states that read each other: each row as a linear one; solved together
    "pair": (
        "{s}_{{t}}",
        "{s}_t",
        "{s}_{{t-1}}",
        "{s}_t-1",
        "the update is linear in the states, and {s} reads a state that reads it",
    ),
    "reciprocal": (
        r"\frac{{1}}{{{s}_{{t}}}}",
        "1/{s}_t",
        r"\frac{{1}}{{{s}_{{t-1}}}}",
        "1/{s}_t-1",
        "the update is a {s}/(b {s} + c): its reciprocal is linear, b/a + (c/a)/{s}",
    ),
    "mobius": (
        r"\frac{{{s}_{{t}} - {s}_{{+}}}}{{{s}_{{t}} - {s}_{{-}}}}",
        "({s}_t - {s}_+)/({s}_t - {s}_-)",
        r"\frac{{{s}_{{t-1}} - {s}_{{+}}}}{{{s}_{{t-1}} - {s}_{{-}}}}",
        "({s}_t-1 - {s}_+)/({s}_t-1 - {s}_-)",
        "the update is a Möbius map (a {s} + b)/(c {s} + d): its distances to the fixed "
        "points, in ratio, are multiplied by k each step",
    ),
}


def _named(printing, symbol: str, sol, form: str, latex: str, text: str) -> sp.Symbol:
    """A symbol printed as the form's quantity at t - 1 (E m_{t-1}, 1/p_{t-1})."""
    sym = sp.Symbol(symbol)
    rows = FORM_ROWS[form]
    mean = (r"\mathbb{E}\,", "E ") if sol.random else ("", "")
    printing.latex_names[sym] = mean[0] + rows[2].format(s=latex)
    printing.text_names[sym] = mean[1] + rows[3].format(s=text)
    return sym


def _closed_form(rec, printing, solved, moment_steps):
    steps = [Step(m.title, [(m.lhs, EQ, *m.rhs)], m.why) for m in moment_steps]
    parts = {}
    names, earlier = {}, {}
    for sol in solved:  # E[m_{t-1}] as a symbol of its own: the recursion prints as algebra
        st = rec.state(sol.state)
        name = printing.latex_names[st.cur].removesuffix("_{t}")
        names[sol.state] = (name, unicode_name(name))
        earlier[st.prev] = _named(
            printing, f"_{sol.state}_earlier", sol, "linear", *names[sol.state]
        )
    for sol in solved:
        st = rec.state(sol.state)
        name, text = names[sol.state]
        rows = FORM_ROWS[sol.form]
        mean = (r"\mathbb{E}\,", "E ") if sol.random else ("", "")
        lhs = (mean[0] + rows[0].format(s=name), mean[1] + rows[1].format(s=text))
        own = _named(printing, f"_{sol.state}_{sol.form}", sol, sol.form, name, text)
        rate, shown_value = sol.rate, None
        if sol.fixed:  # the fixed points as p₊, p₋ from here on: the rate and value read
            steps.append(_fixed_points_step(printing, sol, name, text))
            rate, shown_value = _in_fixed_points(printing, sol, rec, name, text)
        rhs = rate * own + sol.drive.xreplace(earlier)
        reads = (
            ""
            if sol.drive.free_symbols.isdisjoint({s.prev for s in rec.states})
            else ", in it and in the states solved before it"
        )
        if sol.form == "pair":  # its partner is solved with it, not before
            reads = ""
        steps.append(
            Step(
                f"Linear recurrence for {sol.state}",
                [(lhs, EQ, rhs)],
                rows[4].format(s=sol.state)
                + reads
                + (
                    ": take expectations of both sides (the inputs are independent of the state)"
                    if sol.random
                    else ""
                ),
            )
        )
        value_lhs = (f"{mean[0]}{name}_{{t}}", f"{mean[1]}{text}_t")
        how = (
            ", solved by sympy.rsolve (as a sum where it fails on x_t = x_(t-1) + f(t), and "
            "on x_t = (d(t-1)/d(t)) x_(t-1) + f(t) as the sum d(t) x_t; an update that does "
            "not read its state is its own closed form) and checked at t = 1..4"
        )
        shown_latex = printing.latex_of(sol.value)
        shown_row = sol.value if shown_value is None else shown_value
        first_order = (
            f"a first-order linear recurrence from {st.name}_0 = {printing.text_of(sol.start)}"
        )
        if sol.form == "pair":  # in its step matrix's symbols, which the result states too
            matrix, shown_row, rows = _in_the_step_matrix(printing, sol, rec)
            if matrix is not None:
                steps.append(matrix)
            shown_latex = " \\\\ ".join(
                [printing.latex_of(shown_row)]
                + [f"{printing.latex_of(x)} = {printing.latex_of(v)}" for x, v in rows]
            )
            first_order = (
                f"from {st.name}_0 = {printing.text_of(sol.start)}, with its partner: "
                "u_t = M u_(t-1) + c, so u_t = u* + M^t (u_0 - u*) (u* the fixed point), and "
                "M^t = s_t M - det(M) s_(t-1) I (Cayley-Hamilton)"
            )
            how, reads = "", ""
        elif shown_value is not None:  # in the fixed points, which the result states too
            how = f": the ratio is its value at 0 times the rate to the power t, {st.name}_t read back from it"
            fixed = _fixed_points_step(printing, sol, name, text)
            shown_latex = " \\\\ ".join(
                [printing.latex_of(shown_value)]
                + [f"{printing.latex_of(x)} = {printing.latex_of(v)}" for x, _, v in fixed.rows]
            )
        if sol.value.has(sp.harmonic):  # the sum of 1/k that SGD's 1/t steps make
            how += "; H_t = 1 + 1/2 + ... + 1/t is the t-th harmonic number"
        steps.append(
            Step(
                "Solved for t",
                [(value_lhs, EQ, shown_row)],
                first_order
                + (", the earlier states' closed forms at t - 1 in it" if reads else "")
                + how,
            )
        )
        parts[sol.state] = {
            "expr": printing.expr_of(sol.value),
            "latex": f"{value_lhs[0]} = {shown_latex}",
        }
    shown = Shown(
        "; ".join(f"{k}: {p['expr']}" for k, p in parts.items()),
        " \\\\ ".join(p["latex"] for p in parts.values()),
        extra={"states": parts},
    )
    return {"closed_form": shown}, steps


def _at_the_last_step(rec, printing) -> dict:
    """The states and sequences at step t as symbols printed at T (h_T, y_T): the last
    step's adjoint reads them there (it was shown in h_t, y_t under "at t = T")."""
    out = {}
    shapes = printing.spec.algebra.shape
    for sym in [s.cur for s in rec.states] + [r.cur for r in rec.reads]:
        latex, text = printing.latex_names.get(sym, ""), printing.text_names.get(sym, "")
        if latex.endswith("_{t}") and text.endswith("_t"):
            key = f"_{sym.name}_at_the_last_step"
            at_end, new = _named_once(printing, key, latex[:-4] + "_{T}", text[:-2] + "_T")
            if new:  # its shape, for the printers' products (a fresh symbol: declare)
                shapes.declare(at_end, shapes(sym))
            out[sym] = at_end
    return out


def _named_once(printing, key: str, latex: str, text: str) -> tuple:
    """(a symbol printed ``latex``, primed where the spec prints a name of its own so;
    whether it is new: a pair's symbols are named by its first state)."""
    sym = sp.Symbol(key)
    if sym in printing.latex_names:
        return sym, False
    if latex in set(printing.latex_names.values()):
        latex, text = f"{{{latex}}}'", f"{text}'"
    printing.latex_names[sym] = latex
    printing.text_names[sym] = text
    return sym, True


def _in_the_step_matrix(printing, sol, rec) -> tuple:
    """For a state of a coupled pair: the step that names its step matrix's trace τ,
    determinant Δ, discriminant D and s_t (for the pair's first state; None for the
    second), the state's value in those symbols, and the rows that define them."""
    tau, delta, disc, fixed, moved, start, s, group = sol.pair
    key = "_" + "_".join(group)  # both states of the pair: one τ, Δ, D
    made = [
        _named_once(printing, f"{key}_{k}", latex, text)
        for k, latex, text in (
            ("tau", r"\tau", "τ"),
            ("det", r"\Delta", "Δ"),
            ("disc", "D", "D"),
            ("s", "s_{t}", "s_t"),
            ("s1", "s_{t-1}", "s_t-1"),
        )
    ]
    (T, first), (A, _), (D, _), (S, _), (S1, _) = made
    t = time_symbol(rec)
    rows = [(T, tau), (A, delta), (D, disc), (S, s(t, T, A, D))]
    shown = fixed + S * moved - A * S1 * start
    step = None
    if first:
        step = Step(
            f"Step matrix of {', '.join(group)}",
            [(x, EQ, v) for x, v in rows],
            "the trace, determinant and discriminant of the pair's step matrix M, and "
            "s_t = (l+^t - l-^t)/(l+ - l-) of its eigenvalues l+-, written real: powers "
            "where they are real (D > 0), sines where they are complex (D < 0), and "
            "t (tau/2)^(t-1) where they are one (D = 0, critical damping: the limit of both)",
        )
    return step, shown, rows


def _mobius_symbols(printing, sol, name: str, text: str) -> tuple:
    """Symbols printed p_{+}, p_{-} for a Möbius state's fixed points and k_{p} for its
    rate, primed where the spec prints one of its own names so."""
    return tuple(
        _named_once(printing, f"_{sol.state}_mobius_{word}", latex, txt)[0]
        for word, latex, txt in (
            ("plus", f"{name}_{{+}}", f"{text}_+"),
            ("minus", f"{name}_{{-}}", f"{text}_-"),
            ("rate", f"k_{{{name}}}", f"k_{text}"),
        )
    )


def _fixed_points_step(printing, sol, name: str, text: str) -> Step:
    plus, minus, gamma, delta = sol.fixed
    shown = _mobius_symbols(printing, sol, name, text)
    s = sol.state
    rate = (gamma * shown[1] + delta) / (gamma * shown[0] + delta)
    return Step(
        f"Fixed points of the update of {s}",
        [(p, EQ, value) for p, value in zip(shown, (plus, minus, rate))],
        f"the roots of c {s}² + (d - a) {s} - b = 0 for the update (a {s} + b)/(c {s} + d), "
        "real for every value of the symbols (the discriminant (d - a)² + 4 b c is >= 0); "
        "k is the rate of the ratio of the distances to them",
    )


def _in_fixed_points(printing, sol, rec, name: str, text: str) -> tuple:
    """The Möbius state's rate k and value (p₊ (s₀ − p₋) − p₋ (s₀ − p₊) kᵗ)/((s₀ − p₋)
    − (s₀ − p₊) kᵗ), in the symbols p₊, p₋, k."""
    plus, minus, rate = _mobius_symbols(printing, sol, name, text)
    t = time_symbol(rec)
    power = rate**t
    near, away = sol.start - minus, sol.start - plus
    general = (plus * near - minus * away * power) / (near - away * power)
    return rate, special_branches(general, sol.branches, t)


def _at_step_one(expr, t: str):
    """``expr`` drawn as Unicode art at t = 0: step t + 1 named step 1 (δ₁), step t step
    0 (h₀); the columns a shorter name frees are taken out of every line of the art
    (blank there), so that its lines stay aligned."""
    renames = ((f"_{t}+1", "₁"), (f"_{t}", "₀"))

    def draw(printing):
        art = printing.pretty(expr)
        lines = list(art.picture)
        for old, new in renames:
            pattern = re.compile(re.escape(old) + r"(?![A-Za-z0-9+])")
            for row in range(len(lines)):
                while (m := pattern.search(lines[row])) is not None:
                    cut = range(m.start() + len(new), m.end())
                    lines[row] = lines[row][: m.start()] + new + lines[row][m.end() :]
                    for other in range(len(lines)):
                        if other != row and all(lines[other][c : c + 1] in (" ", "") for c in cut):
                            lines[other] = lines[other][: cut.start] + lines[other][cut.stop :]
        return prettyForm("\n".join(lines), baseline=art.baseline, binding=art.binding)

    return draw


def _plus(draw_first, expr):
    """Unicode art of a drawn part, then + and ``expr``."""

    def draw(printing):
        art = draw_first(printing)
        return prettyForm(*art.right(" + ", printing.pretty(expr)))

    return draw


def _summed(expr):
    """Σ_{t=1..T} in front of an expression drawn as Unicode art."""

    def draw(printing):
        art = printing.pretty(expr)
        if isinstance(expr, sp.Add):  # Σ_t a + b reads as (Σ_t a) + b
            art = prettyForm(*art.parens())
        return prettyForm(*prettyForm(SUM[1]).right(art))

    return draw


def _jacobian(rec, printing, derived, h, text_h):
    (s,) = rec.states
    (w,) = rec.wrt
    jt = (r"\mathbf{J}_{t}", "Jₜ")
    lhs = (rf"\frac{{\partial {h}_{{T}}}}{{\partial {h}_{{0}}}}", f"∂{text_h}_T/∂{text_h}₀")
    product = (r"\mathbf{J}_{T} \mathbf{J}_{T-1} \cdots \mathbf{J}_{1}", "J_T J_{T-1} ⋯ J₁")
    stepped = {x for st in rec.states for x in (st.prev, st.cur, st.next)}
    stepped |= {x for r in rec.reads for x in (r.cur, r.next)}
    constant = not (derived.step.free_symbols & stepped) and rec.spec.algebra.shape(derived.step)
    power = ()
    if constant:
        # the same J at every step (a linear recurrence): the product is its T-th power
        j, text = printing.latex_of(derived.step), printing.text_of(derived.step)
        if not re.fullmatch(r"\\math(bf|rm)\{\w+\}|\w", j):
            j, text = rf"\left({j}\right)", f"({text})"
        power = ((rf"{j}^{{T}}", f"{text}^T, the T-th power"),)
    steps = [
        Step(
            "Step Jacobian",
            [(jt, EQ, derived.step)],
            f"$J_t = \\partial {s.name}_t / \\partial {s.name}_{{t-1}}$, the Jacobian of one "
            "update, rule by rule",
        ),
        Step(
            f"Jacobian of the final state with respect to {w}",
            [(lhs, EQ, product, *power)],
            "the chain rule through the T steps: a product of step Jacobians, whose norm "
            "shrinks or grows geometrically with T (vanishing or exploding gradients)"
            + ("; J_t is the same at every step, so it is its T-th power" if power else ""),
        ),
    ]
    latex = f"{lhs[0]} = {product[0]}, \\quad {jt[0]} = {printing.latex_of(derived.step)}"
    expr = f"J_T @ ... @ J_1 with J_t = {printing.expr_of(derived.step)}"
    if power:
        latex = f"{lhs[0]} = {power[0][0]}"
        expr += f" (the T-th matrix power of {printing.expr_of(derived.step)})"
    return {"jacobian": Shown(_readable(rec, expr), latex)}, steps


def _readable(rec, text: str) -> str:
    """The engine's step symbols as the steps name them: _h_prev -> h[t-1], ..."""
    names = {}
    for st in rec.states:
        delta = f"delta_{st.name}" if len(rec.states) > 1 else "delta"
        names.update(
            {
                st.prev: f"{st.name}[t-1]",
                st.cur: f"{st.name}[t]",
                st.next: f"{st.name}[t+1]",
                st.adjoint: f"{delta}[t]",
                st.adjoint_next: f"{delta}[t+1]",
            }
        )
    for r in rec.reads:
        names.update({r.cur: f"{r.name}[t]", r.next: f"{r.name}[t+1]"})
    for sym, new in names.items():
        text = re.sub(rf"(?<![\w]){re.escape(str(sym))}(?![\w])", new, text)
    return text
