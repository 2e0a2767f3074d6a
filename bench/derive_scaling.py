"""Derivation time against the size of the spec: the depth of a tanh MLP, the length
of a chain of scalar defines and of matrix products, the number of a constrained
problem's constraints and of an MDP's states, each derived in this process (no
verification, no printing; a nonlinear chain derived and verified), with the slope: the time ratio per doubling of the size,
2 for linear cost, 4 for quadratic. Issue 18's targets: MLP depth 32 under 5 s with depth 32 / depth 8
under 5; 3000 defines under 10 s; 50 constraints under 10 s; 1000 states under 10 s.

    python bench/derive_scaling.py            # depths 2-32, chains 100-3000 and
                                              # 25-199, 5-50 constraints, 50-1000 states
    python bench/derive_scaling.py --smoke    # small sizes only (CI): it runs, no timing

Prints a rich table and writes bench/results/derive_scaling.json (not with --smoke).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def mlp(depth: int) -> dict:
    """h_i = tanh(W_i h_{i-1}), loss sum(h_L^2), gradients w.r.t. the first weight and x."""
    symbols = {"x": {"shape": ["n"]}, **{f"W{i}": {"shape": ["n", "n"]} for i in range(depth)}}
    define, prev = {}, "x"
    for i in range(depth):
        define[f"h{i}"] = f"tanh(W{i} @ {prev})"
        prev = f"h{i}"
    return {
        "name": f"mlp_depth_{depth}",
        "symbols": symbols,
        "dims": {"n": 3},
        "define": define,
        "objective": f"sum({prev}**2)",
        "wrt": ["W0", "x"],
    }


def chain(length: int) -> dict:
    """a_0 = 2 x + 1, a_i = a_{i-1} / 2 + x: each define uses the one before and x."""
    define = {"a0": "2*x + 1", **{f"a{i}": f"a{i - 1}/2 + x" for i in range(1, length)}}
    return {
        "name": f"chain_{length}",
        "symbols": {"x": {}},
        "define": define,
        "objective": f"a{length - 1}**2",
        "wrt": "x",
    }


def tanh_chain(length: int) -> dict:
    """a_0 = tanh(x) w + x, a_i = tanh(a_{i-1}) w + x: a nonlinear chain, derived and
    verified (its written-out objective is a tree exponentially larger than its DAG:
    verification rebuilt and walked it as a tree, 30 defines past 200 s in round 33)."""
    define = {"a0": "tanh(x) * w + x"}
    define.update({f"a{i}": f"tanh(a{i - 1}) * w + x" for i in range(1, length)})
    return {
        "name": f"tanh_chain_{length}",
        "symbols": {"x": {}, "w": {}},
        "define": define,
        "objective": f"a{length - 1}**2",
        "wrt": "w",
        "verify": {"points": 4},
    }


def matrix_chain(length: int) -> dict:
    """a_0 = A x + b, a_i = A a_{i-1} + b: each define a matrix product with the one
    before (at most 199: written out, 200 products in a row are refused)."""
    define = {"a0": "A @ x + b", **{f"a{i}": f"A @ a{i - 1} + b" for i in range(1, length)}}
    return {
        "name": f"matrix_chain_{length}",
        "symbols": {"x": {"shape": ["n"]}, "A": {"shape": ["n", "n"]}, "b": {"shape": ["n"]}},
        "dims": {"n": 3},
        "define": define,
        "objective": f"sum(a{length - 1}**2)",
        "wrt": ["x", "A"],
    }


def kkt(constraints: int) -> dict:
    """A projection onto a box written one constraint per line (x[i] <= i + 1): one
    multiplier each, so the Lagrangian's gradient has 2 x constraints generators."""
    return {
        "name": f"kkt_{constraints}",
        "symbols": {"x": {"shape": ["n"]}, "c": {"shape": ["n"]}},
        "dims": {"n": constraints},
        "minimize": "sum((x - c)**2)/2",
        "subject_to": [f"x[{i}] <= {i + 1}" for i in range(constraints)],
        "wrt": "x",
        "derive": ["lagrangian", "kkt", "dual", "solution"],
    }


def mdp(states: int) -> dict:
    """A corridor: 'right' moves right with probability 4/5 (else left), 'left' the other
    way, every move costs 1, the last state is terminal; the uniform policy's values and
    the optimal ones. Past 200 non-terminal states it is solved in float64."""
    names = [f"s{i}" for i in range(states)]
    moves = {}
    for i, s in enumerate(names[:-1]):
        lo, hi = names[max(i - 1, 0)], names[i + 1]
        moves[s] = (
            {"left": {s: "4/5", hi: "1/5"}, "right": {hi: "4/5", s: "1/5"}}
            if lo == s
            else {"left": {lo: "4/5", hi: "1/5"}, "right": {hi: "4/5", lo: "1/5"}}
        )
    return {
        "name": f"corridor_{states}",
        "mdp": {
            "states": names,
            "actions": ["left", "right"],
            "terminal": [names[-1]],
            "transitions": moves,
            "rewards": {s: {"left": -1, "right": -1} for s in names[:-1]},
            "gamma": 0.9,
            "policy": "uniform",
        },
    }


def seconds(spec: dict) -> float:
    """Derivation only, unless the spec asks for verification (``verify:``), which must
    pass."""
    import dlsym

    t = time.perf_counter()
    d = dlsym.derive(spec, verify="verify" in spec)
    if "verify" in spec:
        assert d.verification.passed, d.verification
    return time.perf_counter() - t


def slope(sizes: list, times: list) -> float:
    """The time ratio per doubling, fitted from the two largest sizes."""
    (n1, n2), (t1, t2) = sizes[-2:], times[-2:]
    return (t2 / t1) ** (1 / math.log2(n2 / n1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, nothing written")
    args = parser.parse_args()
    cases = {
        "MLP depth": (mlp, [2, 4] if args.smoke else [2, 4, 8, 16, 32]),
        "define chain": (chain, [10, 20] if args.smoke else [100, 300, 1000, 3000]),
        "matrix chain": (matrix_chain, [5, 10] if args.smoke else [25, 50, 100, 199]),
        "tanh chain, verified": (tanh_chain, [5, 10] if args.smoke else [10, 20, 40, 80]),
        "KKT constraints": (kkt, [5, 10] if args.smoke else [5, 10, 25, 50]),
        "MDP states": (mdp, [10, 20] if args.smoke else [50, 100, 200, 500, 1000]),
    }
    seconds(mlp(1))  # imports and SymPy's first-call caches, outside the timings
    table = Table(title="derivation time against the size of the spec")
    for col in ("family", "size", "seconds", "ratio per doubling"):
        table.add_column(col, justify="right" if col != "family" else "left")
    out = {}
    for family, (make, sizes) in cases.items():
        times = [seconds(make(n)) for n in sizes]
        per_doubling = slope(sizes, times)
        out[family] = {"sizes": sizes, "seconds": times, "ratio_per_doubling": per_doubling}
        for i, (n, t) in enumerate(zip(sizes, times)):
            last = i == len(sizes) - 1
            table.add_row(
                family if i == 0 else "", str(n), f"{t:.2f}", f"{per_doubling:.2f}" if last else ""
            )
    Console().print(table)
    if not args.smoke:
        depth = out["MLP depth"]
        ratio = depth["seconds"][-1] / depth["seconds"][depth["sizes"].index(8)]
        Console().print(f"MLP depth 32 / depth 8: {ratio:.2f}")
        out["machine"] = platform.platform()
        path = ROOT / "bench" / "results" / "derive_scaling.json"
        path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
