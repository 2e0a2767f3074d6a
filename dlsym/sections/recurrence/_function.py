"""The derived recurrence, evaluated: the forward pass, the adjoint recursion run
backwards and the sums over the steps, each step through the one code generator. The
verification's reference (``_verify``) is JAX autodiff through ``jax.lax.scan`` of the
spec's own update and loss, which shares none of this."""

from __future__ import annotations

from dlsym.codegen import _compile as codegen
from dlsym.sections._signature import Signature, array_module


def user_decls(rec) -> tuple:
    """The spec's own symbols: the functions' arguments (the rest are the engine's)."""
    return tuple(d for d in rec.spec.symbols if not d.name.startswith("_"))


class Unrolled:
    """Every one-step expression of a derivation as a function of all symbols (the
    spec's, and the step's h_{t-1}, h_t, h_{t+1}, x_t, x_{t+1}, δ_t, δ_{t+1})."""

    def __init__(self, rec, backend: str):
        self.rec = rec
        self.xp = array_module(backend)
        self.symbols = [d.symbol for d in rec.spec.symbols] + list(rec.spec.dim_symbols.values())
        self.backend = backend
        self._init = {s.name: self.compile(s.init) for s in rec.states}
        self._update = {s.name: self.compile(s.update) for s in rec.states}

    def compile(self, expr):
        fn = codegen.lambdify(self.symbols, [expr], self.backend)
        return lambda env: fn(*[env.get(s) for s in self.symbols])[0]

    def env(self, values: dict, sizes: dict) -> dict:
        env = {d.symbol: values[d.name] for d in user_decls(self.rec)}
        env.update(sizes)
        return env

    def forward(self, env) -> list:
        """[states at 0, states at 1, ..., at T], each {state name: value}."""
        steps = int(env[self.rec.horizon])
        xp = self.xp
        hs = [{s.name: xp.asarray(self._init[s.name](env), dtype=float) for s in self.rec.states}]
        for t in range(1, steps + 1):
            at = {**env, **self.at(hs[-1], "prev"), **self.inputs(env, t, "cur")}
            hs.append({s.name: self._update[s.name](at) for s in self.rec.states})
        return hs

    def at(self, values: dict, role: str) -> dict:
        """{the role's symbol of each state (prev, cur, next, adjoint...): its value}."""
        return {getattr(s, role): values[s.name] for s in self.rec.states}

    def inputs(self, env, t: int, which: str) -> dict:
        """x_t (which="cur") or x_{t+1} ("next") of each sequence, t counted from 1."""
        return {getattr(r, which): env[r.symbol][t - 1] for r in self.rec.reads}


def recurrence_function(rec, derived, kind: str, backend: str):
    """``f(**symbols)``: the gradient (a dict over wrt) or the final state's Jacobian."""
    run = Unrolled(rec, backend)
    decls = user_decls(rec)
    signature = Signature(decls, rec.spec.dim_values, kind, batch=False)
    xp = run.xp
    if kind == "jacobian":
        step = run.compile(derived.step)
        (s,) = rec.states

        def one(values, sizes):
            env = run.env(values, sizes)
            hs = run.forward(env)
            state = xp.asarray(hs[0][s.name])
            # a scalar state's Jacobians are numbers: their product, from 1
            total = xp.eye(state.shape[0]) if state.ndim else xp.asarray(1.0)
            for t in range(1, len(hs)):
                at = {**env, **run.at(hs[t - 1], "prev"), **run.at(hs[t], "cur")}
                jt = step({**at, **run.inputs(env, t, "cur")})
                total = jt @ total if state.ndim else jt * total
            return total

    else:
        names = [s.name for s in rec.states]
        terminal = {n: run.compile(derived.terminal[n]) for n in names}
        adjoint = {n: run.compile(derived.adjoint[n]) for n in names}
        summands = {w: run.compile(e) for w, e in derived.summands.items()}
        initial = {w: run.compile(e) for w, e in derived.initial.items()}
        at_end = {w: run.compile(e) for w, e in derived.final.items()}

        def one(values, sizes):
            env = run.env(values, sizes)
            horizon = rec.horizon
            if int(env[horizon]) < 1:  # sequences of no steps: there is no δ_T to start at
                raise ValueError(
                    f"{kind}: {horizon} must be at least 1 (the loss sums over t = 1.."
                    f"{horizon}), got {horizon} = {int(env[horizon])} from the arrays' shapes"
                )
            hs = run.forward(env)
            steps = len(hs) - 1
            deltas = [None] * (steps + 1)  # each {state name: δ at t}
            at = {**env, **run.at(hs[steps], "cur"), **run.inputs(env, steps, "cur")}

            def shaped_as_states(fns, at, t):
                # an adjoint that is 0 (a state no loss term reads, at T) is the number
                # 0 in the code: as the state's zeros, which the next step multiplies
                return {
                    n: xp.broadcast_to(xp.asarray(fns[n](at), dtype=float), xp.shape(hs[t][n]))
                    for n in names
                }

            deltas[steps] = shaped_as_states(terminal, at, steps)
            for t in range(steps - 1, 0, -1):
                at = {**env, **run.at(hs[t], "cur"), **run.at(hs[t + 1], "next")}
                at.update(run.at(deltas[t + 1], "adjoint_next"))
                at.update(run.inputs(env, t, "cur"))
                at.update(run.inputs(env, t + 1, "next"))
                deltas[t] = shaped_as_states(adjoint, at, t)
            out = {}
            for w, term in summands.items():
                parts = []
                for t in range(1, steps + 1):
                    at = {**env, **run.at(hs[t - 1], "prev"), **run.at(hs[t], "cur")}
                    at.update(run.at(deltas[t], "adjoint"))
                    at.update(run.inputs(env, t, "cur"))
                    parts.append(xp.asarray(term(at), dtype=float))
                out[w] = sum(parts[1:], parts[0])
            for w, term in at_end.items():  # the final loss's own term, at t = T
                at = {**env, **run.at(hs[steps], "cur"), **run.inputs(env, steps, "cur")}
                out[w] = out[w] + xp.asarray(term(at), dtype=float)
            for w, term in initial.items():
                at = {**env, **run.at(hs[0], "cur"), **run.at(hs[1], "next")}
                at.update(run.at(deltas[1], "adjoint_next"))
                at.update(run.inputs(env, 1, "next"))
                out[w] = xp.asarray(term(at), dtype=float)
            shaped = {}
            for w in rec.wrt:
                decl = next(d for d in decls if d.name == w)
                shaped[w] = xp.broadcast_to(out[w], Signature.shape(decl.shape, sizes))
            return shaped if len(shaped) > 1 else shaped[rec.wrt[0]]

    return signature.function(one, xp)


def closed_form_function(rec, solved, t, backend: str):
    """``f(**fixed symbols)`` -> {state: its closed form at t = 1..T} (an expectation
    where the inputs are random); T is the spec's."""
    decls = tuple(d for d in user_decls(rec) if d.symbol not in {r.symbol for r in rec.reads})
    dims = list(rec.spec.dim_symbols.values())
    fns = {
        s.state: codegen.lambdify([d.symbol for d in decls] + dims + [t], [s.value], backend)
        for s in solved
    }
    signature = Signature(decls, rec.spec.dim_values, "closed_form", batch=False)
    xp = array_module(backend)

    def one(values, sizes):
        # as floats: a closed form 2**(-t) is NumPy's error on integer steps; a vector
        # state's steps on an axis of their own, before its entries'
        steps = xp.arange(1, int(sizes[rec.horizon]) + 1, dtype=float)
        args = [values[d.name] for d in decls] + [sizes[s] for s in dims]
        out = {}
        for name, fn in fns.items():
            shape = Signature.shape(rec.state(name).shape, sizes)
            at = xp.reshape(steps, steps.shape + (1,) * len(shape))
            value = xp.asarray(fn(*args, at)[0], dtype=float)
            out[name] = xp.broadcast_to(value, steps.shape + shape)
        return out

    return signature.function(one, xp)
