"""d.function(kind): one contract for every section. For every catalog spec, every value
kind it derives is callable, and its values at seeded random inputs equal an independent
numeric reference: JAX autodiff of the objective as written (calculus), SciPy's SLSQP
optimum polished by Newton steps (constrained solutions and multipliers), the infimum of
the Lagrangian by BFGS and strong duality (dual functions), SciPy's information
references (quantities), a numeric minimizer/maximizer (argmin, the optimal
discriminator), a floating-point linear solve and value iteration (MDP values), and
scipy.linalg.solve_discrete_are (LQR). Kinds that are not values are refused with a
message naming those that are."""

import functools

import numpy as np
import pytest
import sympy as sp
from conftest import CATALOG, catalog_specs

import dlsym
from dlsym.codegen._compile import lambdify
from dlsym.codegen._jax import jax_x64
from dlsym.verify import SAMPLERS

POINTS = 4  # seeded draws per spec and kind
SEED = 11
# value kinds of the output contract (shared/spec-format.md, "Output contract")
CONTRACT_VALUES = (
    "gradient jacobian hessian stationary newton_step closed_form solution dual "
    "v_pi q_pi v_star q_star riccati gain"
).split()
# derived value kinds with no closed form, so no function (a clear ValueError instead)
NO_CLOSED_FORM = {("svm_hard_margin", "solution")}


@functools.lru_cache(maxsize=None)
def derived(stem):
    return dlsym.derive(CATALOG / f"{stem}.yaml")


def close(got, expected, rtol, atol, what):
    np.testing.assert_allclose(
        np.asarray(got, dtype=float), np.asarray(expected, dtype=float), rtol, atol, err_msg=what
    )


# --- calculus: JAX autodiff of the objective (or output) as written ------------------------

AUTODIFF = {"gradient": "grad", "jacobian": "jacfwd", "hessian": "hessian"}


def reference(kind, objective, i):
    """JAX autodiff of the objective as written, in argument ``i``: the gradient,
    Jacobian or Hessian, or the Newton step -solve(H, g)."""
    import jax

    if kind in AUTODIFF:
        return getattr(jax, AUTODIFF[kind])(objective, argnums=i)

    def newton(*xs):
        g = jax.grad(objective, i)(*xs)
        h = jax.hessian(objective, i)(*xs).reshape(g.size, g.size)
        return -jax.numpy.linalg.solve(h, g.reshape(-1)).reshape(g.shape)

    return newton


def check_stationary(d, f, objective, names, samples):
    """At the stationary point of each wrt symbol (the others at their draws), jax.grad
    of the objective as written is 0, to 1e-9 of its size at the draw."""
    import jax

    for i in range(POINTS):
        point = {n: samples[n][i] for n in names}
        got = f(**point)
        for wrt in d.results["stationary"]:
            star = dict(point, **{wrt: got[wrt] if isinstance(got, dict) else got})
            grad = jax.grad(objective, names.index(wrt))
            scale = max(1.0, float(np.max(np.abs(grad(*[point[n] for n in names])))))
            residual = np.asarray(grad(*[star[n] for n in names])) / scale
            close(residual, np.zeros_like(residual), 0, 1e-9, f"{d.name} {wrt} at draw {i}")


def check_calculus(d, kind, backend="numpy"):
    import jax

    from dlsym.verify import sample_points

    jax_x64()
    spec = d.spec
    names = [s.name for s in spec.symbols]
    # the objective (or output) as written, in JAX: never the derived result
    target = lambdify(
        [s.symbol for s in spec.symbols] + [spec.dim_symbols[k] for k in spec.dims],
        [d.expanded_target()],
        "jax",
    )

    def objective(*xs):
        return target(*xs, *spec.dims.values())[0]

    f = d.function(kind, backend=backend)
    samples = sample_points(spec, POINTS, SEED)
    if kind == "stationary":  # the gradient vanishes there: a residual, not a value
        check_stationary(d, f, objective, names, samples)
        return
    if len(spec.wrt) > 1 and kind in ("hessian", "newton_step"):
        check_joint(kind, f, objective, names, [names.index(w) for w in spec.wrt], samples)
        return
    refs = {wrt: jax.jit(reference(kind, objective, names.index(wrt))) for wrt in d.results[kind]}
    for i in range(POINTS):
        point = {n: samples[n][i] for n in names}
        got = f(**point)
        for wrt, ref in refs.items():
            expected = ref(*[point[n] for n in names])
            close(
                got[wrt] if isinstance(got, dict) else got,
                expected,
                1e-10,
                1e-12,
                f"{spec.name} {kind} {wrt} at draw {i}",
            )


def check_joint(kind, f, objective, names, argnums, samples):
    """The joint Hessian of several wrt symbols, h[a][b] (the blocks below the diagonal
    too), as jax.hessian of the objective as written gives it; the joint Newton step
    as -solve(H, g) over all of them flattened."""
    import jax

    wrt = [names[i] for i in argnums]
    hessian = jax.jit(jax.hessian(objective, argnums=tuple(argnums)))
    grad = jax.jit(jax.grad(objective, argnums=tuple(argnums)))
    for i in range(POINTS):
        point = {n: samples[n][i] for n in names}
        args = [point[n] for n in names]
        got, h = f(**point), hessian(*args)
        if kind == "hessian":
            for r, a in enumerate(wrt):
                for c, b in enumerate(wrt):
                    close(got[a][b], h[r][c], 1e-10, 1e-12, f"hessian {a},{b} at draw {i}")
            continue
        g = grad(*args)
        sizes = [int(np.size(x)) for x in g]
        H = np.block(
            [
                [np.reshape(h[r][c], (sizes[r], sizes[c])) for c in range(len(wrt))]
                for r in range(len(wrt))
            ]
        )
        step = -np.linalg.solve(H, np.concatenate([np.ravel(x) for x in g]))
        for a, part in zip(wrt, np.split(step, np.cumsum(sizes)[:-1])):
            close(got[a], part.reshape(np.shape(point[a])), 1e-10, 1e-12, f"newton {a} at draw {i}")


# --- constrained: SciPy's optimum, the Lagrangian's infimum, strong duality -----------------


def optima(d):
    """(parameters, the numeric optimum) at seeded draws: SLSQP from several starts on the
    problem as written, polished by Newton steps on its KKT system (JAX derivatives)."""
    from dlsym.sections.constrained._verify import Numeric, sample_parameters

    jax_x64()
    num = Numeric(d.problem)
    rng = np.random.default_rng(SEED + 1)
    out = []
    for draw in sample_parameters(d.problem, POINTS, SEED):
        opt = num.solve(draw, rng)
        assert opt.feasible, f"{d.name}: the reference found no optimum"
        out.append((draw, opt))
    return num, out


def multipliers_on_dual_domain(d, rng):
    """Random multipliers (>= 0 for inequalities) where the dual function is finite: for a
    variable entering L linearly its coefficient must vanish (the SVM's bias:
    sum(lam1) = sum(lam2))."""
    p = d.problem
    out = {}
    for c in p.constraints:
        shape = tuple(int(s.subs(p.base.dim_values)) for s in c.shape)
        m = rng.uniform(0.1, 2.0, shape) if c.kind == "ineq" else rng.standard_normal(shape)
        out[c.multiplier.name] = m
    if d.dual.conditions:
        assert set(out) == {"lam1", "lam2"}, "a dual condition this test cannot meet"
        out["lam2"] = out["lam2"] * out["lam1"].sum() / out["lam2"].sum()
    return out


def infimum(num, d, params, mults):
    """min over the variables of L(x, lambda, nu), by SciPy's trust-region Newton method
    with JAX derivatives of the Lagrangian as written (L is convex in x here)."""
    import jax
    from scipy.optimize import minimize

    jnp = num.jnp
    fixed = {k: jnp.asarray(v, dtype=float) for k, v in {**params, **mults}.items()}

    def L(z):
        return num._lagrangian({**fixed, **num.unflatten(z, {})})

    value_and_grad, hess = jax.jit(jax.value_and_grad(L)), jax.jit(jax.hessian(L))
    res = minimize(
        lambda z: tuple(np.asarray(v, dtype=float) for v in value_and_grad(z)),
        np.zeros(sum(num.var_sizes)),
        jac=True,
        hess=lambda z: np.asarray(hess(z), dtype=float),
        method="trust-exact",
        options={"gtol": 1e-12},
    )
    assert np.linalg.norm(res.jac) < 1e-9, f"{d.name}: the minimization did not converge"
    return res.fun


def check_constrained(d, kind, backend="numpy"):
    p = d.problem
    num, found = optima(d)
    f = d.function(kind, backend=backend)
    rng = np.random.default_rng(SEED + 2)
    for i, (draw, opt) in enumerate(found):
        if kind == "solution":
            got = f(**draw)
            got = got if isinstance(got, dict) else {p.variables[0]: got}
            assert set(got) == set(p.variables)
            for v in p.variables:
                close(got[v], opt.x[v], 1e-8, 1e-9, f"{d.name} {v}* at draw {i}")
        elif kind == "multipliers":
            got = f(**draw)
            assert list(got) == [c.multiplier.name for c in p.constraints]
            assert opt.regular, "multipliers are unique only at a regular optimum"
            for m, value in got.items():
                close(value, opt.multipliers[m], 1e-8, 1e-9, f"{d.name} {m}* at draw {i}")
        else:  # dual: strong duality at the optimal multipliers, the infimum elsewhere
            primal = opt.value if p.sense == "minimize" else -opt.value
            close(f(**draw, **opt.multipliers), primal, 1e-8, 1e-9, f"{d.name} g(opt) {i}")
            mults = multipliers_on_dual_domain(d, rng)
            close(f(**draw, **mults), infimum(num, d, draw, mults), 1e-8, 1e-9, f"{d.name} g {i}")


# --- information theory: SciPy's references; numeric argmin / argmax ------------------------


def info_arguments(d, fn, pt):
    decls = {x.name: x for x in d.decls}
    return {n: pt["symbols"][decls[n].symbol] if n in decls else pt[n] for n in fn.arguments}


def check_info(d, kind, backend="numpy"):
    from scipy.optimize import minimize, minimize_scalar
    from scipy.special import softmax

    from dlsym.sections.info._values import Evaluator

    ev = Evaluator(d.ctx, d.decls, POINTS, SEED, d.sizes)
    fn = d.function(kind, backend=backend)
    got = [np.asarray(fn(**info_arguments(d, fn, pt))) for pt in ev.fixed]
    items = {i.statement.text: i for i in d.items if i.kind == "quantity"}
    minimizers = {m.text: m for m in d.minimizers}
    if kind in items:
        expected, se = ev.reference(items[kind].statement.lhs)
        assert not se.any(), "an exact reference, not a Monte Carlo one"
        close(got, expected, 1e-10, 1e-12, f"{d.name} {kind}")
    elif kind in minimizers:
        m = minimizers[kind]
        for pt, value in zip(ev.fixed, got):

            def objective(theta, pt=pt):
                return ev.ref(m.argmin.objective, {**pt, m.argmin.dist: softmax(theta)})

            k = d.ctx.dists[m.argmin.dist].k
            res = minimize(objective, np.zeros(k), method="BFGS", options={"gtol": 1e-12})
            close(value, softmax(res.x), 0, 1e-6, f"{d.name} {kind}")  # BFGS: ~1e-8
    else:  # the optimal discriminator: each outcome's term maximized numerically
        (disc,) = [x for x in d.discriminators if x.text == kind]
        a, b = disc.info.args
        for pt, value in zip(ev.fixed, got):
            expected = [
                minimize_scalar(
                    lambda t, pj=pj, gj=gj: -(pj * np.log(t) + gj * np.log1p(-t)),
                    bounds=(1e-12, 1 - 1e-12),
                    method="bounded",
                    options={"xatol": 1e-12},
                ).x
                for pj, gj in zip(ev.ref.dist(a, pt), ev.ref.dist(b, pt))
            ]
            close(value, expected, 0, 1e-6, f"{d.name} {kind}")  # a flat maximum: ~1e-8


# --- MDP: a floating-point linear solve and value iteration ---------------------------------


def mdp_arrays(mdp, at):
    """P[s, a, s'], R[s, a], the policy PI[s, a], the availability mask and gamma as
    floats at the symbol values ``at``, over the non-terminal states."""
    live, acts = mdp.live, mdp.actions

    def num(e):
        return float(sp.sympify(e).xreplace(at))

    P = np.zeros((len(live), len(acts), len(live)))
    R = np.zeros((len(live), len(acts)))
    PI = np.zeros((len(live), len(acts)))
    mask = np.zeros((len(live), len(acts)), dtype=bool)
    for i, s in enumerate(live):
        for j, a in enumerate(acts):
            if a not in mdp.available[s]:
                continue
            mask[i, j] = True
            R[i, j] = num(mdp.r[(s, a)])
            for t, pr in mdp.p[(s, a)].items():
                if t in live:
                    P[i, j, live.index(t)] = num(pr)
            if mdp.policy is not None:
                PI[i, j] = num(mdp.policy[s].get(a, 0))
    return P, R, PI, mask, num(mdp.gamma)


def mdp_reference(mdp, kind, at):
    """v over every state (terminal 0), q over (live state, action) (NaN unavailable)."""
    P, R, PI, mask, gamma = mdp_arrays(mdp, at)
    n = len(mdp.live)
    if kind.endswith("_pi"):
        P_pi, r_pi = np.einsum("sa,sat->st", PI, P), np.sum(PI * R, axis=1)
        v = np.linalg.solve(np.eye(n) - gamma * P_pi, r_pi)
    else:  # value iteration to a fixed point
        v = np.zeros(n)
        for _ in range(100_000):
            q = np.where(mask, R + gamma * P @ v, -np.inf)
            nxt = q.max(axis=1)
            done = np.max(np.abs(nxt - v)) <= 1e-14 * max(1.0, np.max(np.abs(nxt)))
            v = nxt
            if done:
                break
        else:
            raise AssertionError("value iteration did not converge")
    if kind.startswith("v"):
        full = dict(zip(mdp.live, v))
        return np.array([full.get(s, 0.0) for s in mdp.states])
    return np.where(mask, R + gamma * P @ v, np.nan)


def check_mdp(d, kind, backend="numpy"):
    mdp = d.mdp
    f = d.function(kind, backend=backend)
    rng = np.random.default_rng(SEED)
    for i in range(POINTS):
        at = {s.symbol: float(SAMPLERS[s.domain](rng, ())) for s in mdp.symbols}
        got = f(**{s.name: at[s.symbol] for s in mdp.symbols})
        close(got, mdp_reference(mdp, kind, at), 1e-10, 1e-12, f"{d.name} {kind} at {at}")
        if not mdp.symbols:
            break  # numbers only: one point is all there is


# --- LQR: scipy.linalg.solve_discrete_are ---------------------------------------------------


def lqr_systems(d):
    """The spec's own system, then random stabilizable ones, with the reference P."""
    from scipy.linalg import solve_discrete_are

    from dlsym.sections.lqr._check import random_systems

    lqr = d.lqr
    systems = random_systems(lqr.dims[lqr.n], lqr.dims[lqr.k], POINTS, SEED)
    out = [{r: np.asarray(v) for r, v in lqr.values.items()}] if lqr.values else []
    out += [{r: systems[r][i] for r in "ABQR"} for i in range(len(systems["A"]))]
    for s in out:
        s["P"] = solve_discrete_are(s["A"], s["B"], s["Q"], s["R"])
    return out


def lqr_reference(kind, s):
    if kind == "riccati":
        return s["P"]
    B, P = s["B"], s["P"]
    return np.linalg.solve(s["R"] + B.T @ P @ B, B.T @ P @ s["A"])


def check_lqr(d, kind, backend="numpy"):
    if backend == "jax":
        jax_x64()
    f = d.function(kind, backend=backend)
    names = d.lqr.names
    for i, s in enumerate(lqr_systems(d)):
        got = f(**{names[r]: s[r] for r in "ABQR"})
        close(got, lqr_reference(kind, s), 1e-9, 1e-11, f"{d.name} {kind}, system {i}")


# the catalog's moments as the textbooks write them, at the spec's dims
RANDOM_TRUTH = {
    "xavier_init": lambda v, dims: dims["n"] * v["s"] ** 2,
    "he_init": lambda v, dims: dims["n"] * v["s"] ** 2 / 2,
    "inverted_dropout": lambda v, dims: v["x"],
    "kalman_predict": lambda v, dims: v["F"] @ v["P"] @ v["F"].T + v["Q"],
}


def check_random(d, kind, backend="numpy"):
    from dlsym.verify import sample_points

    if backend == "jax":
        jax_x64()
    f = d.function(kind, backend=backend)
    fixed = [s for s in d.spec.symbols if s.symbol not in d.spec.laws]
    drawn = sample_points(d.spec, 4, seed=3)
    for i in range(4):
        values = {s.name: drawn[s.name][i] for s in fixed}
        want = RANDOM_TRUTH[d.name](values, d.spec.dims)
        close(f(**values), want, 1e-12, 1e-12, f"{d.name} {kind}, point {i}")
    # a batch of points in one call
    got = f(**{s.name: drawn[s.name] for s in fixed})
    want = [
        RANDOM_TRUTH[d.name]({s.name: drawn[s.name][i] for s in fixed}, d.spec.dims)
        for i in range(4)
    ]
    close(got, np.stack(want), 1e-12, 1e-12, f"{d.name} {kind}, a batch")


def check_recurrence(d, kind, backend="numpy"):
    """Against JAX autodiff through jax.lax.scan of the spec's own update and loss."""
    from dlsym.sections.recurrence._function import user_decls
    from dlsym.sections.recurrence._verify import _reference
    from dlsym.verify import sample_points

    jax_x64()
    if kind == "closed_form":
        return check_recurrence_closed_form(d, backend)
    reference = _reference(d.rec, kind)
    f = d.function(kind, backend=backend)
    drawn = sample_points(d.spec, 3, seed=5)
    for i in range(3):
        values = {x.name: drawn[x.name][i] for x in user_decls(d.rec)}
        got, want = f(**values), reference(values)
        if kind == "jacobian":
            close(got, want, 1e-10, 1e-12, f"{d.name} {kind}, point {i}")
            continue
        got = got if isinstance(got, dict) else {d.rec.wrt[0]: got}
        for w in d.rec.wrt:
            close(got[w], want[w], 1e-10, 1e-12, f"{d.name} {kind} {w}, point {i}")


# the catalog's solved recurrences as the textbooks write them, at t = 1..T
RECURRENCE_TRUTH = {
    "adam_bias_correction": lambda v, t: {
        "m": v["mu"] * (1 - v["beta1"] ** t),
        "v": (1 - v["beta2"] ** t) * (v["mu"] ** 2 + v["s"] ** 2),
    },
    "momentum_ema": lambda v, t: {"m": v["g"] * (1 - v["beta"] ** t)},
    # no textbook closed form to copy: the filter's variance run forward, step by step
    "kalman_variance": lambda v, t: {"p": _kalman_variances(v, len(t))},
    "heavy_ball": lambda v, t: _heavy_ball(v, len(t)),
}


def _heavy_ball(v, steps):
    w, vel, out = v["w0"], 0.0, {"w": [], "v": []}
    for _ in range(steps):
        vel = v["mu"] * vel - v["lr"] * v["a"] * w
        w = w + vel
        out["w"].append(w)
        out["v"].append(vel)
    return {k: np.array(x) for k, x in out.items()}


def _kalman_variances(v, steps):
    p, out = v["p0"], []
    for _ in range(steps):
        predicted = v["a"] ** 2 * p + v["q"]
        p = predicted * v["r"] / (predicted + v["r"])
        out.append(p)
    return np.array(out)


def check_recurrence_closed_form(d, backend):
    from dlsym.verify import sample_points

    f = d.function("closed_form", backend=backend)
    drawn = sample_points(d.spec, 3, seed=5)
    fixed = [x for x in d.spec.symbols if not x.name.startswith("_") and not x.shape]
    t = np.arange(1, d.spec.dims["T"] + 1)
    for i in range(3):
        values = {x.name: drawn[x.name][i] for x in fixed}
        got, want = f(**values), RECURRENCE_TRUTH[d.name](values, t)
        assert set(got) == set(want)
        for k in want:
            close(got[k], want[k], 1e-12, 1e-12, f"{d.name} {k}, point {i}")


CHECKS = {
    None: check_calculus,
    "recurrence": check_recurrence,
    "random": check_random,
    "constrained": check_constrained,
    "info": check_info,
    "mdp": check_mdp,
    "lqr": check_lqr,
}


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", catalog_specs(), ids=lambda p: p.stem)
def test_every_value_kind_matches_its_reference(path):
    d = derived(path.stem)
    contract = [k for k in d.results if k in CONTRACT_VALUES]
    expected = [k for k in contract if (path.stem, k) not in NO_CLOSED_FORM]
    assert set(expected) <= set(d.value_kinds)
    if not d.value_kinds:  # only identities: statements, no values
        assert d.section == "info" and not any(i.kind == "quantity" for i in d.items)
    for kind in d.value_kinds:
        assert callable(d.function(kind))
        CHECKS[d.section](d, kind)


@pytest.mark.parametrize("path", catalog_specs(), ids=lambda p: p.stem)
def test_kinds_that_are_not_values_are_refused_by_name(path):
    d = derived(path.stem)
    for kind in d.results:
        if kind in d.value_kinds:
            continue
        if (path.stem, kind) in NO_CLOSED_FORM:
            with pytest.raises(ValueError, match="no closed form found"):
                d.function(kind)
            continue
        with pytest.raises(KeyError) as err:
            d.function(kind)
        assert "has no numeric function" in str(err.value)
        assert ", ".join(d.value_kinds) in str(err.value)
    with pytest.raises(KeyError, match="no result 'nonsense'"):
        d.function("nonsense")
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        d.function(next(iter(d.value_kinds), "any"), backend="torch")


def test_not_values_say_what_they_are():
    mdp = derived("mdp_small_stochastic")
    with pytest.raises(KeyError, match="a set of optimal actions per state"):
        mdp.function("policy_star")
    with pytest.raises(KeyError, match="Bellman optimality equations"):
        mdp.function("bellman_optimality")
    qp = derived("equality_qp")
    with pytest.raises(KeyError, match="KKT conditions.*are: dual, solution, multipliers"):
        qp.function("kkt")
    info = derived("gibbs_inequality")
    with pytest.raises(KeyError, match="an identity or inequality.*no value kinds"):
        info.function("kl(p, q) >= 0")
    assert derived("lqr_double_integrator").value_kinds == ("riccati", "gain")
    assert derived("svm_hard_margin").value_kinds == ("dual",)


@pytest.mark.parametrize(
    "stem, kind",
    [
        ("equality_qp", "solution"),
        ("ridge_ball", "multipliers"),  # a parametric multiplier, rooted per call
        ("least_norm", "dual"),
        ("lqr_double_integrator", "gain"),
        ("mdp_two_state", "q_pi"),
        ("vae_kl_diagonal", "kl(q, prior)"),
    ],
)
def test_jax_backend_matches_the_reference(stem, kind):
    d = derived(stem)
    CHECKS[d.section](d, kind, backend="jax")


def test_a_wrong_solution_fails_the_reference(monkeypatch):
    """The comparison has teeth: x* scaled by 1.001, or a parametric multiplier's
    equation shifted, no longer matches SciPy's optimum."""
    d = dlsym.derive(CATALOG / "equality_qp.yaml")
    monkeypatch.setitem(d.solution.x, "x", d.solution.x["x"] * sp.Rational(1001, 1000))
    with pytest.raises(AssertionError, match="x\\* at draw 0"):
        check_constrained(d, "solution")
    ball = dlsym.derive(CATALOG / "ridge_ball.yaml")
    (lam, eq, kind) = ball.solution.free[0]
    monkeypatch.setattr(ball.solution, "free", ((lam, eq + sp.Rational(1, 100), kind),))
    with pytest.raises(AssertionError):
        check_constrained(ball, "solution")


def test_a_wrong_riccati_update_fails_the_reference(monkeypatch):
    from dlsym.sections.lqr import _function

    d = dlsym.derive(CATALOG / "lqr_double_integrator.yaml")
    check_lqr(d, "riccati")
    # the Bellman minimization's correction term halved: a different fixed point
    monkeypatch.setattr(
        _function,
        "RICCATI_FORMULA",
        "Q + A.T @ P @ A - A.T @ P @ B @ inv(R + B.T @ P @ B) @ B.T @ P @ A / 2",
    )
    with pytest.raises(AssertionError, match="riccati, system 0"):
        check_lqr(d, "riccati")


def test_constrained_calls_positional_batched_and_sized():
    """Arguments by position in the spec's order, a batch of parameters, other sizes than
    the spec's dims: the same optimum as one keyword call at a time."""
    d = derived("least_norm")
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((5, 2, 4)), rng.standard_normal((5, 2))
    x = d.function("solution")
    batch = x(A, b)
    assert batch.shape == (5, 4)
    for i in range(5):
        close(batch[i], x(A=A[i], b=b[i]), 0, 0, "batch entry")
        close(A[i] @ batch[i], b[i], 0, 1e-12, "A x = b")
        close(batch[i], np.linalg.pinv(A[i]) @ b[i], 1e-10, 1e-12, "x = A^+ b")
    wide = rng.standard_normal((3, 7)), rng.standard_normal(3)  # m = 3, n = 7
    close(x(*wide), np.linalg.pinv(wide[0]) @ wide[1], 1e-10, 1e-12, "other sizes")
    water = derived("water_filling").function("solution")
    alpha = rng.uniform(0.1, 2.0, (3, 4))
    out = water(alpha=alpha)
    close(out.sum(axis=-1), np.ones(3), 0, 1e-12, "a unit of power per row")
    with pytest.raises(TypeError, match="missing argument"):
        x(A=A[0])
    with pytest.raises(TypeError, match="unexpected argument 'c'"):
        x(A=A[0], b=b[0], c=1)
    with pytest.raises(ValueError, match="'b' has size 3 where m = 2"):
        x(A=A[0], b=np.ones(3))


def test_lqr_batches_and_refuses_unstabilizable_systems():
    d = derived("lqr_double_integrator")
    systems = lqr_systems(d)[1:]
    stacked = {r: np.stack([s[r] for s in systems]) for r in "ABQR"}
    P = d.function("riccati")(**stacked)
    close(P, np.stack([s["P"] for s in systems]), 1e-9, 1e-11, "a batch of systems")
    K = d.function("gain")(*(stacked[r] for r in "ABQR"))  # positional: A, B, Q, R
    assert K.shape == (len(systems), 1, 2)
    unstable = dict(A=2 * np.eye(2), B=np.zeros((2, 1)), Q=np.eye(2), R=np.eye(1))
    with pytest.raises(ValueError, match="diverged: \\(A, B\\) is not stabilizable"):
        d.function("riccati")(**unstable)


def test_the_catalog_is_covered():
    """Every section has specs here, and so a check above."""
    sections = {derived(p.stem).section for p in catalog_specs()}
    assert sections == set(CHECKS)


def test_minimizer_and_discriminator_are_vectors_over_the_outcomes():
    """argmin(cross_entropy(data, q), q) is the data's frequencies (Gibbs), a function of
    nothing; D* takes both distributions, with leading batch axes."""
    mle = derived("categorical_mle").function("argmin(cross_entropy(data, q), q)")
    assert mle.arguments == ()
    close(mle(), [3 / 8, 1 / 8, 1 / 2], 0, 1e-15, "q* = the frequencies")
    gan = derived("gan_jsd")
    d_star = gan.function("optimal discriminator D*(p_data, p_g)")
    p = np.random.default_rng(0).dirichlet(np.ones(4), size=3)
    g = np.full(4, 0.25)
    close(d_star(p_data=p, p_g=g), p / (p + g), 1e-14, 0, "D* = p / (p + g)")
