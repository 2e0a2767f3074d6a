"""The probabilities of a joint table as SymPy function classes: p(x, y), its marginals
p(x), p(y) and conditionals p(y | x), p(x | y), made once per table."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp


class _Prob(sp.Function):
    """A probability of a joint table: positive, so logarithms split."""

    role = "prob"
    owner = None  # the JointFunctions it belongs to

    def _eval_is_positive(self):
        return True

    def _eval_is_real(self):
        return True


@dataclass(frozen=True)
class JointFunctions:
    """p(x, y), p(x), p(y), p(y | x), p(x | y) of one table, with its index symbols."""

    joint: type
    marginal: tuple  # (p(x), p(y))
    conditional: tuple  # (p(y | x), p(x | y)): conditional[t] has target variable t
    index: tuple  # (x, y) symbols
    name: str


def joint_function(name: str, variables=("X", "Y"), latex: str = "p") -> JointFunctions:
    low = [v.lower() if v.lower() != v else v + "_" for v in variables]
    index = tuple(sp.Symbol(v, integer=True, positive=True) for v in low)

    def make(role, label, fmt_latex, fmt_text):
        def tex(self, printer):
            return fmt_latex.format(latex, *[printer._print(a) for a in self.args])

        def txt(self, printer):
            return fmt_text.format(name, *[printer._print(a) for a in self.args])

        return type(
            f"{name}_{label}", (_Prob,), {"role": role, "info_latex": tex, "info_text": txt}
        )

    fns = JointFunctions(
        make("joint", "joint", r"{}\left({}, {}\right)", "{}({}, {})"),
        (
            make("mx", "mx", r"{}\left({}\right)", "{}({})"),
            make("my", "my", r"{}\left({}\right)", "{}({})"),
        ),
        (
            make("cond", "cond_yx", r"{}\left({} \mid {}\right)", "{}({} | {})"),
            make("cond", "cond_xy", r"{}\left({} \mid {}\right)", "{}({} | {})"),
        ),
        index,
        name,
    )
    for cls in (fns.joint, *fns.marginal, *fns.conditional):
        cls.owner = fns
    return fns
