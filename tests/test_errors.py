"""Bad input: every malformed spec is a located error, and no expression is ever run.

Each case is a small YAML spec written to ``tmp_path`` and derived through the CLI
in-process (``--no-verify``, so JAX is never imported). A bad spec must exit with
code 2 and print ``error: FILE:LINE:COL: message`` on stderr, without a traceback.
"""

import json
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

import dlsym
from dlsym._cli import main

# Lines 1-6 of most specs below; what a case adds starts on line 7.
HEADER = """\
name: t
symbols:
  X: {shape: [m, n]}
  w: {shape: [n]}
  b: {shape: [m]}
dims: {m: 3, n: 2}
"""


def spec(*lines: str) -> str:
    """HEADER (lines 1-6) followed by ``lines`` (line 7 onwards)."""
    return HEADER + "".join(line + "\n" for line in lines)


def derive_cli(tmp_path, text: str, *extra: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    # click >= 8.2 always captures stderr separately (result.stderr); result.output
    # interleaves stdout and stderr.
    result = CliRunner().invoke(main, ["derive", str(path), "--no-verify", *extra])
    return path, result


def assert_located_error(path, result, line: int, col: int, message: str):
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    err = result.stderr
    assert err.startswith("error: "), err
    assert f"{path}:{line}:{col}:" in err, err
    assert message in err, err


# --- malformed specs -------------------------------------------------------------------

DEEP_NEG = "-(" * 60 + "sum(w)" + ")" * 60
DEEP_SUM = "sum(" * 60 + "w" + ")" * 60
LONG = " + ".join(["sum(X @ w)"] * 200)  # 2600 characters
ALIAS_BOMB = "".join(
    f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi")
)

MALFORMED = [
    # -- expressions ----------------------------------------------------------------
    pytest.param(
        spec("objective: sum(sigmod(X @ w))", "wrt: w"),
        7,
        16,
        "unknown function 'sigmod' (did you mean 'sigmoid'?); the language's functions: "
        "abs atan avg_pool2d",
        id="unknown-function-did-you-mean",
    ),
    pytest.param(
        spec("objective: sum(X @ ww)", "wrt: w"),
        7,
        20,
        "unknown name 'ww' (did you mean 'w'?)",
        id="unknown-symbol-typo",
    ),
    pytest.param(
        spec("objective: sum(X @ b)", "wrt: w"),
        7,
        16,
        "cannot multiply a matrix [m, n] by a vector [m]: inner sizes n and m",
        id="matmul-inner-sizes",
    ),
    pytest.param(
        spec("objective: sum(X + b)", "wrt: w"),
        7,
        16,
        "cannot add a matrix [m, n] and a vector [m]",
        id="vector-plus-matrix",
    ),
    pytest.param(
        spec("objective: X @ w", "wrt: w"),
        7,
        12,
        "objective must be a scalar, got a vector [m]",
        id="objective-not-scalar",
    ),
    pytest.param(
        "name: s\nsymbols:\n  x: {shape: [n]}\n  y: {shape: [3]}\ndims: {n: 3}\n"
        "objective: sum(x * y)\nwrt: x\n",
        6,
        16,
        "sizes n and 3 of their last axes differ (NumPy broadcasting aligns the last axes)"
        "; they are equal at the spec's dims (3) but not at every size, and a shape holds "
        "at every size: write both with the same dims in objective",
        id="sizes-equal-only-at-the-dims",
    ),
    pytest.param(
        "name: s\nsymbols:\n  X: {shape: [B, C, H, W]}\n  K: {shape: [O, C, 3, 3]}\n"
        "  G: {shape: [B, O, 3, 3]}\ndims: {B: 1, C: 1, O: 1, H: 6, W: 6}\n"
        "objective: sum(conv2d(X, K, stride=2, padding=1) * G)\nwrt: K\n",
        7,
        16,
        "written as a multiple of the stride: H = 2*Hp gives Hp at stride 2)",
        id="strided-output-size-against-a-number",
    ),
    pytest.param(
        spec("objective: sum(X @ w) + * 2", "wrt: w"),
        7,
        25,
        "syntax error in objective",
        id="syntax-error",
    ),
    pytest.param(
        spec("objective: 'sum(X @ w) + * 2'", "wrt: w"),
        7,
        26,
        "syntax error in objective",
        id="syntax-error-quoted",
    ),
    pytest.param(
        spec("objective: sum(w) +", "wrt: w"),
        7,
        20,
        "syntax error in objective",
        id="syntax-error-at-end",
    ),
    # YAML's | keeps the line breaks, and a break ends the expression: "invalid syntax"
    # alone did not say so (c46h F4)
    pytest.param(
        spec("objective: |\n  sum(w)\n  + sum(w)", "wrt: w"),
        9,
        3,
        "it spans several lines, and a line break ends an expression outside brackets "
        "(write it with YAML's > instead of |, or inside parentheses)",
        id="syntax-error-over-lines",
    ),
    pytest.param(
        spec("objective: sum(w) >= 0", "wrt: w"),
        7,
        12,
        "comparisons are only allowed in constraints",
        id="comparison",
    ),
    pytest.param(
        spec(f"objective: {LONG}", "wrt: w"),
        7,
        12,
        "objective is longer than 2000 characters",
        id="overlong-expression",
    ),
    pytest.param(
        spec(f"objective: {DEEP_NEG}", "wrt: w"),
        7,
        12 + 2 * 48,
        "nested deeper than 48 levels",
        id="deep-negations",
    ),
    pytest.param(
        spec(f"objective: {DEEP_SUM}", "wrt: w"),
        7,
        12 + 4 * 48,
        "nested deeper than 48 levels",
        id="deep-sums",
    ),
    pytest.param(
        spec("objective: 10**10**10", "wrt: w"), 7, 12, "number too large", id="huge-power"
    ),
    pytest.param(
        spec("objective: sum(w, axis=0, axis=0)", "wrt: w"),
        7,
        32,
        "sum() got the keyword 'axis' twice",
        id="repeated-keyword",
    ),
    pytest.param(
        spec("define:", "  z: X @ b", "objective: sum(z)", "wrt: w"),
        8,
        6,
        "inner sizes n and m differ in define 'z'",
        id="error-in-define",
    ),
    pytest.param(
        spec("output: sum(X)", "wrt: w"),
        7,
        9,
        "output must be a vector, matrix or tensor, got a scalar",
        id="output-scalar",
    ),
    # errors inside multi-line and quoted expressions point into the file's text
    pytest.param(
        spec("objective: >-", "  sum(X @ w)", "  + sigmod(1)", "wrt: w"),
        9,
        5,
        "unknown function 'sigmod'",
        id="folded-block-expression",
    ),
    pytest.param(
        spec("objective: |", "  (sum(X @ w)", "   + sigmod(1))", "wrt: w"),
        9,
        6,
        "unknown function 'sigmod'",
        id="literal-block-expression",
    ),
    pytest.param(
        spec("objective: sum(X @ w)", "  + sigmod(1)", "wrt: w"),
        8,
        5,
        "unknown function 'sigmod'",
        id="plain-multiline-expression",
    ),
    pytest.param(
        spec("objective: '  sigmod(1)'", "wrt: w"),
        7,
        15,
        "unknown function 'sigmod'",
        id="quoted-leading-blanks",
    ),
    # -- keys -------------------------------------------------------------------------
    pytest.param(
        spec("objectiv: sum(X @ w)", "wrt: w"),
        7,
        1,
        "unknown key 'objectiv' in the spec (did you mean 'objective'?)",
        id="unknown-top-level-key",
    ),
    pytest.param(
        "name: t\n"
        "symbols:\n"
        "  w: {shape: [n], domian: positive}\n"
        "dims: {n: 2}\n"
        "objective: sum(w)\n"
        "wrt: w\n",
        3,
        19,
        "unknown key 'domian' in symbol 'w' (did you mean 'domain'?)",
        id="unknown-symbol-key",
    ),
    pytest.param(
        "name: t\nsymbols:\n  u: {distribution: uniform(0, 1)}\nobjective: expect(u)\n",
        3,
        32,
        "unknown key '1)' in symbol 'u': inside { } a comma ends a value, so "
        "'distribution: uniform(0, 1)' was read as two keys; quote the value: "
        'distribution: "uniform(0, 1)"',
        id="comma-in-a-flow-mapping",
    ),
    pytest.param(
        spec("objective: sum(X @ w)", "wrt: w", "verify: {points: 4, sede: 1}"),
        9,
        21,
        "unknown key 'sede' in verify (did you mean 'seed'?)",
        id="unknown-verify-key",
    ),
    pytest.param(
        "symbols:\n  w: {shape: [n]}\ndims: {n: 2}\nobjective: sum(w)\nwrt: w\n",
        1,
        1,
        "missing required key 'name'",
        id="missing-name",
    ),
    pytest.param(
        spec("wrt: w"),
        1,
        1,
        "missing 'objective' (a scalar to differentiate) or 'output'",
        id="missing-objective",
    ),
    pytest.param(
        spec("objective: sum(w)", "output: w", "wrt: w"),
        8,
        1,
        "give either 'objective' (scalar) or 'output' (vector), not both",
        id="objective-and-output",
    ),
    pytest.param(
        spec("objective: sum(w)", "wrt: w", "minimize: sum(w)"),
        7,
        1,
        "unknown key 'objective' in a constrained optimization spec",
        id="objective-in-a-constrained-spec",
    ),
    pytest.param(
        spec("mdp: {states: [a]}", "minimize: sum(w)"),
        8,
        1,
        "'minimize' (constrained optimization) cannot be combined with 'mdp' "
        "(Markov decision process) in one spec",
        id="two-sections",
    ),
    # -- symbols, domains, dims -------------------------------------------------------
    pytest.param(
        "name: t\n"
        "symbols:\n"
        "  w: {shape: [n], domain: postive}\n"
        "dims: {n: 2}\n"
        "objective: sum(w)\n"
        "wrt: w\n",
        3,
        27,
        "unknown domain 'postive' for 'w' (did you mean 'positive'?)",
        id="bad-domain",
    ),
    pytest.param(
        "name: t\n"
        "symbols:\n"
        "  A: {shape: [n, n, n], domain: simplex}\n"
        "dims: {n: 2}\n"
        "objective: sum(A)\n"
        "wrt: A\n",
        3,
        33,
        "domain 'simplex' needs a vector or a matrix, but 'A' is a tensor [n, n, n]",
        id="simplex-tensor",
    ),
    pytest.param(
        "name: t\nsymbols:\n  a: {domain: onehot}\nobjective: a\nwrt: a\n",
        3,
        15,
        "domain 'onehot' needs a vector or a matrix or a tensor of 3 axes, but 'a' is a scalar",
        id="onehot-scalar",
    ),
    *[
        pytest.param(
            "name: t\n"
            "symbols:\n"
            "  w: {shape: [n]}\n"
            f"dims: {{n: {raw}}}\n"
            "objective: sum(w)\n"
            "wrt: w\n",
            4,
            11,
            f"dimension 'n' must be a positive integer, got {shown}",
            id=f"dim-{name}",
        )
        for raw, shown, name in [
            ("0", "0", "zero"),
            ("-1", "-1", "negative"),
            ("2.5", "2.5", "float"),
            ("three", "'three'", "word"),
            ('"3"', "'3'", "quoted-number"),
        ]
    ],
    pytest.param(
        "name: t\nsymbols:\n  w: {shape: [n, k]}\ndims: {n: 2}\nobjective: sum(w)\nwrt: w\n",
        3,
        18,
        "dimension 'k' in the shape of 'w' is not in dims",
        id="dim-missing",
    ),
    pytest.param(
        "name: t\nsymbols:\n  w: {shape: [2, 2, 2, 2, 2, 2, 2, 2, 2]}\nobjective: sum(w)\nwrt: w\n",
        3,
        14,
        "shape of 'w' has 9 axes; at most 8",
        id="nine-axes",
    ),
    pytest.param(
        "name: t\nsymbols:\n  sum: {}\n  w: {shape: [2]}\nobjective: sum(w)\nwrt: w\n",
        3,
        3,
        "symbol 'sum' has the name of a function",
        id="symbol-named-sum",
    ),
    pytest.param(
        spec("define:", "  a: c + 1", "  c: a * 2", "objective: sum(w) + a", "wrt: w"),
        8,
        3,
        "cycle in define: a -> c -> a",
        id="define-cycle",
    ),
    pytest.param(
        spec("define:", "  w: X @ w", "objective: sum(w)", "wrt: w"),
        8,
        3,
        "define 'w' has the name of a declared symbol",
        id="define-shadows-symbol",
    ),
    # -- wrt, derive, verify ----------------------------------------------------------
    pytest.param(
        spec("objective: sum(X @ w)", "wrt: ww"),
        8,
        6,
        "wrt 'ww' is not a declared symbol (did you mean 'w'?)",
        id="wrt-undeclared",
    ),
    pytest.param(
        spec("define:", "  z: X @ w", "objective: sum(z)", "wrt: z"),
        10,
        6,
        "wrt 'z' is an intermediate (define)",
        id="wrt-define",
    ),
    pytest.param(
        spec("objective: sum(X @ w)", "wrt: [w, b, w]"),
        8,
        13,
        "wrt names 'w' twice",
        id="wrt-twice",
    ),
    pytest.param(
        spec("objective: sum(X @ w)", "wrt: w", "derive: [gradient, hesian]"),
        9,
        20,
        "unknown derive kind 'hesian' (did you mean 'hessian'?)",
        id="derive-kind-unknown",
    ),
    pytest.param(
        spec("output: X @ w", "wrt: w", "derive: gradient"),
        9,
        9,
        "'gradient' needs a scalar 'objective'",
        id="gradient-of-output",
    ),
    pytest.param(
        spec("objective: sum(X @ w)", "wrt: w", "verify:", "  points: 0"),
        10,
        11,
        "verify.points must be an integer from 1 to 100000, got 0",
        id="verify-points-zero",
    ),
    pytest.param(
        spec("objective: sum(X @ w)", "wrt: w", "verify: {rtol: -1}"),
        9,
        16,
        "verify.rtol must be a number in [0, 1)",
        id="verify-rtol-negative",
    ),
    # -- YAML itself ------------------------------------------------------------------
    pytest.param(
        "name: t\nsymbols:\n  w: {shape: [n]\ndims: {n: 2}\nobjective: sum(w)\nwrt: w\n",
        4,
        1,
        "invalid YAML: expected ',' or '}'",
        id="yaml-unclosed-flow-mapping",
    ),
    pytest.param(
        "name: t\nobjective: 'sum(w)\n",
        3,
        1,
        "invalid YAML: found unexpected end of stream",
        id="yaml-unclosed-quote",
    ),
    pytest.param(
        "name: t\n"
        "symbols:\n"
        "  w: {shape: [n]}\n"
        "  w: {shape: [n]}\n"
        "dims: {n: 2}\n"
        "objective: sum(w)\n"
        "wrt: w\n",
        4,
        3,
        "duplicate key 'w'",
        id="duplicate-symbol",
    ),
    pytest.param(
        spec("objective: sum(X @ w)", "wrt: w", "wrt: b"),
        9,
        1,
        "duplicate key 'wrt'",
        id="duplicate-top-level-key",
    ),
    pytest.param("", 1, 1, "the spec is empty", id="empty-file"),
    pytest.param("- name: t\n", 1, 1, "a spec must be a YAML mapping", id="not-a-mapping"),
    pytest.param(
        "name: !!python/object:os.system t\n",
        1,
        7,
        "could not determine a constructor",
        id="yaml-python-tag",
    ),
    pytest.param(
        "name: !!python/object/apply:os.system ['touch PWNED']\n",
        1,
        7,
        "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'",
        id="yaml-python-tag-on-sequence",
    ),
    pytest.param(
        "name: t\nsymbols: !!set {w}\n",
        2,
        10,
        "unsupported YAML tag 'tag:yaml.org,2002:set'",
        id="yaml-set-tag",
    ),
    pytest.param("name: &a [*a]\n", 1, 7, "recursive YAML alias", id="yaml-recursive-alias"),
    pytest.param(
        "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + ALIAS_BOMB + "name: t\n",
        1,
        29,
        "YAML aliases expand to more than",
        id="yaml-alias-bomb",
    ),
    pytest.param(
        "name: t\nx: " + "[" * 5000 + "\n",
        1,
        1,
        "invalid YAML: nested too deeply",
        id="yaml-too-deep",
    ),
    # constants that are not finite real numbers: each was an internal error (exit 3)
    # when the generated code met SymPy's zoo or I
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 3}\nobjective: sum(x)/0\nwrt: x\n",
        4,
        12,
        "objective has a constant that is not a finite real number",
        id="division-by-zero",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {}}\nobjective: log(0) + x\nwrt: x\n",
        3,
        12,
        "not a finite real number (a division by zero, log(0)",
        id="log-of-zero",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {}}\nobjective: sqrt(-1) * x\nwrt: x\n",
        3,
        12,
        "or the square root of a negative number",
        id="sqrt-of-negative",
    ),
    # atan(1/0) is SymPy's AccumBounds(-pi/2, pi/2), a range: it was "the gradient is
    # infinite at the spec's dims", misleading
    pytest.param(
        "name: t\nsymbols: {w: {shape: [n]}}\ndims: {n: 3}\nobjective: sum(w**2) * atan(1/0)\nwrt: w\n",
        4,
        12,
        "objective has a constant that is not a finite real number (a division by zero",
        id="atan-of-a-division-by-zero",
    ),
    # a define that is a constant, read where it is not finite: each expression passed
    # alone, and the code named zoo or I (exit 3, NameError; round 32)
    pytest.param(
        "name: t\nsymbols: {w: {}}\ndefine: {p: -0.0}\nobjective: w**2 + log(p)\nwrt: w\n",
        4,
        12,
        "objective has a constant that is not a finite real number once the constant value "
        "of p is put in",
        id="log-of-a-define-that-is-zero",
    ),
    pytest.param(
        "name: t\nsymbols: {w: {}}\ndefine: {p: 16, q: log(1 - p)}\nobjective: w**2 + q\nwrt: w\n",
        3,
        20,
        "define 'q' has a constant that is not a finite real number once the constant value "
        "of p is put in (a division by zero, log(0), the log or square root of a negative",
        id="log-of-a-negative-define",
    ),
    # NumPy's dot past two axes sums over a's last and b's second-to-last axis: no
    # batched product, refused (dot of matrices and vectors is '@')
    pytest.param(
        "name: t\nsymbols: {X: {shape: [b, n, n]}, w: {shape: [n]}}\ndims: {b: 2, n: 3}\n"
        "objective: sum(dot(X, w))\nwrt: w\n",
        4,
        16,
        "write it with einsum",
        id="dot-past-two-axes",
    ),
    # NumPy's '...' in einsum: one per operand, and no more letters than axes
    pytest.param(
        "name: t\nsymbols: {X: {shape: [n, n]}}\ndims: {n: 2}\n"
        "objective: sum(einsum('...i...', X))\nwrt: X\n",
        4,
        16,
        "einsum '...i...': an operand has one '...' at most",
        id="einsum-two-ellipses",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 2}\n"
        "objective: sum(einsum('...ij->...', x))\nwrt: x\n",
        4,
        16,
        "'...ij' has more letters than a vector [n]",
        id="einsum-ellipsis-too-many-letters",
    ),
    # an information quantity's constant: math.log's domain error (exit 3; round 32)
    pytest.param(
        "name: t\ndistributions:\n  p: {categorical: 3}\nquantities:\n  - entropy(p) + log(-1)\n",
        5,
        5,
        "the expression has a constant that is not a finite real number",
        id="information-quantity-log-of-negative",
    ),
    pytest.param(
        "name: t\ndistributions:\n  p: {categorical: 2}\nidentities:\n  - entropy(p) >= 1/0\n",
        5,
        5,
        "the expression has a constant that is not a finite real number",
        id="information-identity-division-by-zero",
    ),
    # negative for every value: SymPy writes its derivative with i (exit 3 before)
    pytest.param(
        "name: t\nsymbols: {x: {}}\nobjective: sqrt(-1 - x**2)\nwrt: x\n",
        3,
        12,
        "the objective is not real for any value of its symbols: its gradient",
        id="negative-everywhere-under-a-root",
    ),
    # NumPy's norm(X, 1) is a matrix 1-norm (ord), not the 2-norms along axis 1
    pytest.param(
        "name: t\nsymbols: {X: {shape: [n, n]}}\ndims: {n: 2}\nobjective: sum(norm(X, 1))\nwrt: X\n",
        4,
        16,
        "norm's second argument is NumPy's ord (here 1), not an axis",
        id="norm-ord-is-not-an-axis",
    ),
    # 0**w: its derivative 0**w log(0) holds SymPy's zoo (exit 3 before: NameError zoo)
    pytest.param(
        "name: t\nsymbols: {w: {}}\nobjective: 0**w\nwrt: w\n",
        3,
        12,
        "the objective has no finite gradient with respect to w: it holds an infinity",
        id="infinite-derivative-of-a-constant-zero",
    ),
    # 0 * eye(n) is the number 0 to SymPy: no shape, and singular
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 2}\n"
        "objective: sum(inv(0 * eye(n)) @ x)\nwrt: x\n",
        4,
        16,
        "inv of a matrix that simplifies to 0 (such as 0 * eye(n) or A - A), which is singular",
        id="inverse-of-zero",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {}}\nobjective: x**2\nwrt: x\nderive: [[gradient]]\n",
        5,
        10,
        "derive lists kinds by name (gradient, hessian, ...), got ['gradient']",
        id="derive-nested-list",
    ),
    # past an axis at the spec's own sizes: JAX clamps such an index, so verification
    # passed a meaningless spec
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 3}\nobjective: x[5]**2\nwrt: x\n",
        4,
        14,
        "index 5 is out of range for size n = 3 (the spec's dims)",
        id="index-past-the-dims",
    ),
    # said as written: it read "index n - 4" (c46h F6)
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 3}\nobjective: x[-4]**2\nwrt: x\n",
        4,
        14,
        "index -4 (n - 4) is out of range for size n = 3 (the spec's dims)",
        id="negative-index-past-the-dims",
    ),
    # more integer indices than axes: the entry took all three (TypeError, exit 3)
    pytest.param(
        spec("objective: X[0, 0, 0]", "wrt: X"),
        7,
        14,
        "too many indices (3)",
        id="three-indices-into-a-matrix",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 3}\nobjective: sum(x[1:5])\nwrt: x\n",
        4,
        18,
        "the slice 1:5 is out of range for size n = 3",
        id="slice-past-the-dims",
    ),
    # what Python's parser reads past: a comment dropped the rest of the objective, and a
    # Kelvin sign was read as K (round 33)
    pytest.param(
        "name: t\nsymbols: {x: {}}\nobjective: 'x**2 # + sin(x)'\nwrt: x\n",
        3,
        18,
        "a comment ('#'): the language has none",
        id="python-comment",
    ),
    pytest.param(
        "name: t\nsymbols: {K: {}}\nobjective: 2 * \u212a\nwrt: K\n",
        3,
        16,
        "the name '\u212a' is not ASCII (KELVIN SIGN would be read as 'K'): names are ASCII",
        id="confusable-name",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 3}\nobjective: sum(x[::0])\nwrt: x\n",
        4,
        18,
        "a slice step cannot be zero",
        id="slice-step-zero",
    ),
    # the axis of norm or std out of range: the message names the function written, not
    # the sum or var it is built from; softmax along an axis a vector lacks was accepted
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 3}\nobjective: norm(x, 2, 1)\nwrt: x\n",
        4,
        12,
        "axis 1 is out of range for a vector [n] in norm",
        id="norm-axis-out-of-range",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 3}\nobjective: std(x, axis=-2)\nwrt: x\n",
        4,
        12,
        "axis -2 is out of range for a vector [n] in std",
        id="std-axis-out-of-range",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 3}\n"
        "objective: sum(softmax(x, axis=1) * x)\nwrt: x\n",
        4,
        16,
        "axis 1 is out of range for a vector [n] in softmax",
        id="softmax-axis-of-a-vector",
    ),
    # labels declared over more classes than the axis they index: onehot(y, k) of a label
    # y >= k is a row of zeros (the true gradient 0), but the derivation used "each
    # one-hot row sums to 1" and gave (softmax(z) - onehot(y, k))/B, which verification
    # passed unless it drew such a label (1 in 1001 here); NumPy raised IndexError on a
    # gather past the table and JAX clamped it
    pytest.param(
        "name: t\nsymbols: {z: {shape: [B, k]}, y: {shape: [B], domain: {index: K}}}\n"
        "dims: {B: 1, k: 1000, K: 1001}\n"
        "objective: -mean(sum(onehot(y, k) * log_softmax(z, axis=1), axis=1))\nwrt: z\n",
        4,
        22,
        "onehot(y, k): y's labels range over K = 1001 classes (domain {index: K}), onehot "
        "has k = 1000",
        id="onehot-fewer-classes-than-the-labels",
    ),
    pytest.param(
        "name: t\nsymbols: {z: {shape: [k]}, y: {domain: {index: 5}}}\ndims: {k: 3}\n"
        "objective: -sum(onehot(num_classes=k, ids=y) * log_softmax(z))\nwrt: z\n",
        4,
        17,
        "onehot(num_classes=k, ids=y): y's labels range over 5 classes (domain {index: 5}), "
        "onehot has k = 3",
        id="onehot-by-keyword-fewer-classes",
    ),
    pytest.param(
        "name: t\nsymbols: {z: {shape: [k]}, y: {domain: {index: 2}}}\ndims: {k: 3}\n"
        "objective: -sum(onehot(y, 3) * log_softmax(z))\nwrt: z\n",
        4,
        17,
        "onehot(y, 3): y's labels range over 2 classes (domain {index: 2}), onehot has 3",
        id="onehot-more-classes-than-the-labels",
    ),
    pytest.param(
        "name: t\nsymbols: {E: {shape: [V, d]}, ids: {shape: [B], domain: {index: 7}}, "
        "w: {shape: [d]}}\ndims: {B: 2, V: 5, d: 3}\nobjective: sum((E[ids] @ w)**2)\n"
        "wrt: E\n",
        4,
        17,
        "E[ids]: ids's labels range over 7 classes (domain {index: 7}), E has V = 5 rows",
        id="gather-past-the-table",
    ),
    pytest.param(
        "name: t\nsymbols: {z: {shape: [B, k]}, y: {shape: [B], domain: {index: n}}}\n"
        "dims: {B: 2, k: 3, n: 4}\n"
        "objective: -mean(take_along_axis(log_softmax(z, axis=1), y[:, None], axis=1))\n"
        "wrt: z\n",
        4,
        18,
        "y's labels range over n = 4 classes (domain {index: n}), axis 1 has k = 3",
        id="take-along-axis-past-the-axis",
    ),
    pytest.param(
        "name: t\nsymbols:\n  O: {shape: [V, d]}\n  h0: {shape: [d]}\n"
        "  tgt: {shape: [T], domain: {index: 6}}\ndims: {T: 2, d: 3, V: 5}\nrecurrence:\n"
        "  index: t\n  state: {h: h0}\n  update: {h: tanh(h)}\n"
        "  loss: '-log_softmax(O @ h)[tgt[t]]'\nwrt: [h0]\n",
        11,
        11,
        "log_softmax(O @ h)[tgt[t]]: tgt[t]'s labels range over 6 classes (domain "
        "{index: 6}), log_softmax(O @ h) has V = 5 entries",
        id="recurrence-label-past-the-vocabulary",
    ),
    # a recurrence reads its input at the current step only (was "unknown name 't'")
    pytest.param(
        "name: t\nsymbols: {x: {shape: [T]}, w: {}}\ndims: {T: 4}\nrecurrence:\n"
        "  index: t\n  state: {h: 0}\n  update: {h: 'tanh(w * h + x[t - 1])'}\n"
        "  loss: h**2\nwrt: [w]\nderive: [gradient]\n",
        7,
        31,
        "a recurrence reads x at step t only, as x[t]: t runs from 1 to T and x[t] is the "
        "t-th step (a NumPy array's x[t - 1]: write x[t])",
        id="recurrence-reads-an-earlier-step",
    ),
    # batch-first X[:, t] (was "a size must be a whole number")
    pytest.param(
        "name: t\nsymbols: {X: {shape: [B, T, k]}, U: {shape: [k, d]}, h0: {shape: [B, d]}}\n"
        "dims: {B: 2, T: 3, k: 2, d: 3}\nrecurrence:\n"
        "  index: t\n  state: {h: h0}\n  update: {h: 'tanh(h + X[:, t] @ U)'}\n"
        "  loss: sum(h**2)\nwrt: [U]\nderive: [gradient]\n",
        7,
        27,
        "X[:, t] reads its axis 1: declare X time-major, with T first",
        id="recurrence-reads-a-batch-first-sequence",
    ),
    # an expression's step (was "... a symbol with domain {index: k}", k not the dim)
    pytest.param(
        "name: t\nsymbols: {V: {shape: [d, o]}, h0: {shape: [d]}, y: {shape: [T], domain: "
        "{index: o}}}\ndims: {T: 3, d: 3, o: 4}\nrecurrence:\n"
        "  index: t\n  state: {h: h0}\n  update: {h: tanh(h)}\n"
        "  loss: -sum(onehot(y, o)[t] * log_softmax(h @ V))\nwrt: [V]\nderive: [gradient]\n",
        8,
        27,
        "onehot(y, o) is an expression: index the sequences inside it at t instead",
        id="recurrence-reads-an-expression-at-the-step",
    ),
    # from the second probing round: each was a traceback or exit 3
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 3, m: 2}\nobjective: sum(x)/(m - 2)\n"
        "wrt: x\n",
        4,
        12,
        "is infinite, 0/0 or not real at the spec's dims (n = 3, m = 2)",
        id="division-by-a-dim-expression-that-is-0",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 3}\nobjective: (-8)**(1/3) * sum(x)\n"
        "wrt: x\n",
        4,
        12,
        "or a root of a negative number, such as (-8)**(1/3)",
        id="root-of-a-negative-number",
    ),
    pytest.param(
        "name: t\nsymbols:\n  g: {shape: [T], distribution: 'normal(0, 1)'}\n  a: {}\n"
        "dims: {T: 4}\nrecurrence:\n  index: t\n  state: {h: 0}\n  update:\n"
        "    h: a*h + g[T-1]\nderive: [closed_form]\n",
        10,
        8,
        "'g' is random and is read at the step only, as g[t]",
        id="recurrence-reads-a-random-sequence-at-a-fixed-step",
    ),
    pytest.param(
        "name: t\nsymbols:\n  S: {shape: [n, n]}\n  x:\n    shape: [n]\n"
        "    distribution: {normal: {mean: 0, cov: S}}\ndims: {n: 2}\n"
        "output: covariance(x, x)\nderive: [closed_form]\n",
        6,
        19,
        "the cov of 'x' must be a covariance matrix for every value of its symbols",
        id="covariance-not-spd",
    ),
    pytest.param(  # an spd S negated: Cholesky failed in the Monte Carlo check, exit 3
        "name: t\nsymbols:\n  S: {shape: [n, n], domain: spd}\n  x:\n    shape: [n]\n"
        "    distribution: {normal: {mean: 0, cov: -S}}\ndims: {n: 3}\n"
        "objective: expect(sum(x**2))\nderive: [closed_form]\n",
        6,
        19,
        "the scale of the cov of 'x' is -1, not positive",
        id="covariance-an-spd-matrix-negated",
    ),
    pytest.param(
        "name: t\nbase: &b {shape: [n]}\nsymbols:\n  x:\n    <<: *b\ndims: {n: 2}\n"
        "objective: sum(x**2)\nwrt: x\n",
        5,
        5,
        "YAML merge keys (<<: *anchor) are not supported",
        id="yaml-merge-key",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 2}\nobjective: sum(zeros(-1)) + sum(x)\n"
        "wrt: x\n",
        4,
        16,
        "zeros needs positive sizes, got -1",
        id="zeros-of-a-negative-size",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 2}\nobjective: sum(eye(0)) + sum(x)\n"
        "wrt: x\n",
        4,
        16,
        "eye needs positive sizes, got 0",
        id="eye-of-size-0",
    ),
    pytest.param(
        "name: t\ndistributions:\n  d: {categorical: 3}\n  q: {categorical: 3}\n"
        "quantities:\n  - argmin(focal_loss(d, q, 2), q)\n",
        6,
        5,
        "sympy.solve finds no single root of the stationarity condition",
        id="argmin-sympy-cannot-solve",
    ),
    # a lone surrogate escape: no output can encode it (text output was exit 3, LaTeX a
    # UnicodeEncodeError traceback)
    pytest.param(
        'name: t\ntitle: "a \\ud800 b"\nsymbols: {x: {}}\nobjective: x**2\nwrt: x\n',
        2,
        8,
        "the text holds a lone surrogate",
        id="lone-surrogate",
    ),
    pytest.param(
        "name: t\x00\nsymbols: {x: {}}\nobjective: x**2\nwrt: x\n",
        1,
        8,
        "invalid YAML: unacceptable character #x0000: special characters are not allowed",
        id="nul-byte",
    ),
    # a character the YAML reader refuses is located where it is (it was 1:1 with the
    # reader's offset, 'position 49', in the message)
    pytest.param(
        'name: t\nsymbols:\n  x: {}\nobjective: "x**2\x07"\nwrt: x\n',
        4,
        17,
        "invalid YAML: unacceptable character #x0007: special characters are not allowed",
        id="bel-in-a-quoted-string",
    ),
    # a power of dims past any number at the spec's dims: SymPy computed 3**(3**27) and
    # 9**(9**9) exactly until the 50 s budget stopped it, with no location
    pytest.param(
        "name: t\nsymbols: {s: {}}\ndims: {n: 3}\nobjective: n**n**n**n * s\nwrt: s\n",
        4,
        12,
        "number too large: about 2**1.21e+13 at the spec's dims",
        id="dim-tower-in-objective",
    ),
    pytest.param(
        "name: t\nsymbols: {x: {shape: ['n**n**n']}}\ndims: {n: 9}\nobjective: sum(x**2)\nwrt: x\n",
        2,
        24,
        "number too large: about 2**1.23e+09 at the spec's dims in the shape of 'x'",
        id="dim-tower-in-a-shape",
    ),
    # an information spec's Gaussian whose variance the domains let be negative:
    # verification drew it there (exit 1, 'the reference is not finite')
    pytest.param(
        "name: t\nsymbols:\n  s: {}\ndistributions:\n  g: {gaussian: {mean: 0, var: s}}\n"
        "quantities: [entropy(g)]\n",
        5,
        32,
        "the variance of 'g', s, may be negative: give its symbols a domain",
        id="info-gaussian-variance-of-a-real-symbol",
    ),
    # the entropy of a mixture holding a Gaussian (an IndexError summing over its
    # outcomes, exit 3): the Gaussian rules refuse it, as kl's already did
    pytest.param(
        "name: t\ndistributions:\n  g: {gaussian: {mean: 0, var: 1}}\n"
        "  h: {gaussian: {mean: 1, var: 1}}\nquantities:\n  - entropy(0.5 * g + 0.5 * h)\n",
        6,
        5,
        "entropy() of a Gaussian needs Gaussians for every argument (mixtures of Gaussians",
        id="entropy-of-a-gaussian-mixture",
    ),
    # a constraint a simplex variable's domain already holds: it said the constraint
    # did not involve the variables (sum(p) folded to 1 first)
    pytest.param(
        "name: t\nsymbols: {p: {shape: [n], domain: simplex}, c: {shape: [n]}}\ndims: {n: 3}\n"
        'minimize: c @ p\nsubject_to: ["sum(p) == 1"]\nwrt: p\n',
        5,
        15,
        "constraint 1 always holds on the variables' domains (a simplex sums to 1)",
        id="constraint-the-domain-holds",
    ),
    # softmax along a tuple of axes (a TypeError in sympy.Integer, exit 3)
    pytest.param(
        spec("objective: sum(softmax(X, axis=(0, 1)))", "wrt: X"),
        7,
        16,
        "softmax takes one axis (an integer), got axis=(0, 1)",
        id="softmax-tuple-axis",
    ),
    # a pooling window larger than the input at the spec's sizes (exit 3 in JAX)
    pytest.param(
        "name: t\nsymbols: {A: {shape: [n, n]}}\ndims: {n: 3}\n"
        "objective: sum(max_pool2d(reshape(A, (1, 1, n, n)), 5))\nwrt: A\n",
        4,
        16,
        "max_pool2d: the window (5) is larger than the input (3)",
        id="pool-window-past-the-input",
    ),
    # inv(X.T @ X) with X 2×3: its derivatives "passed" on round-off of size 1e16
    pytest.param(
        "name: t\nsymbols:\n  X: {shape: [m, n]}\n  x: {shape: [n]}\ndims: {m: 2, n: 3}\n"
        "objective: x @ inv(X.T @ X) @ x\nwrt: x\n",
        6,
        12,
        "the objective inverts a 3×3 matrix of rank at most 2 at the spec's dims",
        id="inverse-singular-at-the-dims",
    ),
    # det(outer(x, a)) is 0 everywhere: its gradient through the inverse was nan (exit 1)
    pytest.param(
        "name: t\nsymbols:\n  x: {shape: [n]}\n  a: {shape: [n]}\ndims: {n: 3}\n"
        "objective: det(outer(x, a))\nwrt: x\n",
        6,
        12,
        "the objective takes the determinant of a 3×3 matrix of rank at most 1",
        id="determinant-singular-at-the-dims",
    ),
]


ATTENTION_POOLING_LABELS = (
    "name: t\nsymbols:\n  H: {shape: [B, T, n]}\n  a: {shape: [n]}\n  W: {shape: [n, k]}\n"
    "  y: {shape: [B], domain: {index: k}}\ndims: {B: 3, T: 4, n: 2, k: 3}\n"
    "define:\n  c: sum(softmax(H @ a, axis=1)[:, :, None] * H, axis=1)\n"
    "objective: -mean(take_along_axis(log_softmax(c @ W, axis=1), y[:, None], 1))\n"
    "wrt: a\nderive: [hessian]\n"
)


def test_explicit_entries_picked_by_symbolic_labels_are_a_located_error(tmp_path, monkeypatch):
    """A Hessian through attention pooling into cross-entropy with integer labels is an
    action in matrix form now (it was explicit entries: int() of a symbol, exit 3, then
    this located error); with log_softmax's rule taken away the entries are needed
    again, and labels that are symbols have none."""
    from dlsym.calculus import _rules
    from dlsym.expr import _ops as ops

    monkeypatch.chdir(tmp_path)
    path, result = derive_cli(tmp_path, ATTENTION_POOLING_LABELS)
    assert result.exit_code == 0, result.output
    assert dlsym.derive(path, verify=True).verification.passed  # against jax.hessian
    monkeypatch.delitem(_rules.VJP_RULES, ops.log_softmax)
    path, result = derive_cli(tmp_path, ATTENTION_POOLING_LABELS)
    assert_located_error(
        path, result, 12, 9, "entries picked by symbolic labels have no explicit form"
    )


@pytest.mark.parametrize("text, line, col, message", MALFORMED)
def test_malformed_spec_is_a_located_error(tmp_path, monkeypatch, text, line, col, message):
    monkeypatch.chdir(tmp_path)
    path, result = derive_cli(tmp_path, text)
    assert_located_error(path, result, line, col, message)
    assert not (tmp_path / "PWNED").exists()


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(main, ["derive", str(missing), "--no-verify"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ")
    assert f"{missing}: no such file" in result.stderr


def test_debug_lets_the_exception_propagate(tmp_path):
    path, result = derive_cli(tmp_path, spec("objective: sum(sigmod(X @ w))", "wrt: w"), "--debug")
    assert isinstance(result.exception, dlsym.SpecError)
    assert result.exit_code != 2
    assert (result.exception.location.line, result.exception.location.col) == (7, 16)
    text = "".join(traceback.format_exception(*result.exc_info))
    assert text.startswith("Traceback") and "SpecError" in text and "sigmod" in text


def test_library_error_carries_the_location(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(spec("objective: sum(X @ ww)", "wrt: w"), encoding="utf-8")
    with pytest.raises(dlsym.SpecError) as info:
        dlsym.derive(path)
    err = info.value
    assert "unknown name 'ww'" in err.message
    assert (err.location.file, err.location.line, err.location.col) == (str(path), 7, 20)
    assert str(err) == f"{path}:7:20: {err.message}"


def test_several_specs_report_each_error(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(spec("objective: sum(X @ w)", "wrt: w"), encoding="utf-8")
    bad.write_text(spec("objective: sum(X @ b)", "wrt: w"), encoding="utf-8")
    result = CliRunner().invoke(main, ["derive", str(good), str(bad), "--no-verify"])
    assert result.exit_code == 2
    assert f"error: {bad}:7:16: cannot multiply" in result.stderr
    assert "Traceback" not in result.output


# --- injection: nothing in a spec is ever evaluated ------------------------------------

# (expression, column of the error in `objective: "<expression>"`, message)
INJECTIONS = [
    ("__import__('os').system('touch PWNED')", 13, "only the language's functions can be called"),
    ("().__class__.__bases__", 13, "attribute '.__bases__' is not allowed"),
    ("w.__class__", 13, "attribute '.__class__' is not allowed"),
    ("(lambda: 1)()", 13, "only the language's functions can be called"),
    ("(lambda: __import__('os').system('touch PWNED'))", 14, "lambdas are not allowed"),
    ("[x for x in w]", 13, "comprehensions are not allowed"),
    ('"abc"', 13, "strings are not allowed"),
    ("open('f')", 13, "unknown function 'open'"),
    ("eval('1')", 13, "unknown function 'eval'"),
    ("exec('import os')", 13, "unknown function 'exec'"),
    ("getattr(w, 'T')", 13, "unknown function 'getattr'"),
    ("w.real", 13, "attribute access '.real' is not allowed (only '.T')"),
    ("sum(w, axis=__import__('os'))", 25, "axis must be an integer"),
    ("sum(w, **{'axis': 0})", 22, "'**' arguments are not allowed"),
    ("sum(*w)", 17, "starred arguments are not allowed"),
    ("f'{w}'", 13, "strings are not allowed"),
    ("f\"{__import__('os').system('touch PWNED')}\"", 13, "strings are not allowed"),
    ("(a := 1)", 14, "assignments are not allowed"),
    ("__builtins__", 13, "names starting with '__' are not allowed"),
    ("w[__import__('os')]", 15, "names starting with '__' are not allowed"),
    ("sum(w) if 1 else 0", 13, "conditional expressions are not allowed"),
    ("sum(w); __import__('os')", 19, "syntax error in objective"),
    ("1 and __import__('os')", 13, "'and' / 'or' are not allowed"),
    ("b'x'", 13, "constant b'x' is not allowed"),
]


@pytest.mark.parametrize("expr, col, message", INJECTIONS, ids=[e for e, _, _ in INJECTIONS])
def test_injection_is_rejected_before_anything_runs(tmp_path, monkeypatch, expr, col, message):
    monkeypatch.chdir(tmp_path)
    # A YAML double-quoted scalar (JSON string syntax): the expression reaches the parser
    # as written. Escapes (\") only come after the error column in these cases.
    path, result = derive_cli(tmp_path, spec(f"objective: {json.dumps(expr)}", "wrt: w"))
    assert_located_error(path, result, 7, col, message)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "where, text, line, col",
    [
        ("define", spec("define:", "  z: w.__class__", "objective: sum(w)", "wrt: w"), 8, 6),
        ("output", spec("output: __import__('os').system('touch PWNED')", "wrt: w"), 7, 9),
        ("wrt", spec("objective: sum(w)", "wrt: __import__('os')"), 8, 6),
        ("dims", "name: t\ndims: {'__import__(\"os\")': 2}\n", 2, 8),
    ],
)
def test_injection_elsewhere_is_rejected(tmp_path, monkeypatch, where, text, line, col):
    monkeypatch.chdir(tmp_path)
    path, result = derive_cli(tmp_path, text)
    assert result.exit_code == 2
    assert f"{path}:{line}:{col}:" in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "expr, message",
    [
        ("__import__('os').system('touch PWNED')", "only the language's functions can be called"),
        ("().__class__.__bases__", "attribute '.__bases__' is not allowed"),
        (
            "(lambda: __import__('os').system('touch PWNED'))()",
            "only the language's functions can be called",
        ),
        ("[x for x in w]", "comprehensions are not allowed"),
        ("eval('1')", "unknown function 'eval'"),
        ("(a := 1)", "assignments are not allowed"),
    ],
)
def test_library_rejects_injection(tmp_path, monkeypatch, expr, message):
    monkeypatch.chdir(tmp_path)
    mapping = {"name": "t", "symbols": {"w": {"shape": [2]}}, "objective": expr, "wrt": "w"}
    with pytest.raises(dlsym.SpecError) as info:
        dlsym.derive(mapping)
    assert message in info.value.message
    assert info.value.location is not None and info.value.location.file == "<mapping>"
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("name", ["a b", "__x", "_x", "1x", "x-y", "x.y", "é", "a;b", ""])
def test_symbol_names_must_be_identifiers(name):
    mapping = {"name": "t", "symbols": {name: {}}, "objective": "1", "wrt": name}
    with pytest.raises(dlsym.SpecError, match="is not a plain identifier"):
        dlsym.derive(mapping)


@pytest.mark.parametrize(
    "name, instead", [("lambda", "lam (shown as λ)"), ("import", "import_"), ("None", "None_")]
)
def test_a_keyword_name_says_it_is_a_keyword_and_what_to_call_it(name, instead):
    """'lambda' (a ridge penalty's usual name) was "not a plain identifier (letters,
    digits and '_', ...)", which a name of letters alone is not."""
    mapping = {"name": "t", "symbols": {name: {}}, "objective": "1", "wrt": name}
    with pytest.raises(dlsym.SpecError, match="is a Python keyword") as info:
        dlsym.derive(mapping)
    assert f"call it {instead}" in str(info.value)


@pytest.mark.parametrize(
    "section, text, line, col",
    [
        ("symbols", "name: t\nsymbols:\n  'a b': {}\nobjective: '1'\nwrt: 'a b'\n", 3, 3),
        ("symbols", "name: t\nsymbols:\n  __x: {}\nobjective: __x\nwrt: __x\n", 3, 3),
        ("symbols", "name: t\nsymbols:\n  1x: {}\nobjective: '1'\nwrt: 1x\n", 3, 3),
        ("dims", "name: t\ndims: {n m: 2}\nobjective: '1'\nwrt: x\n", 2, 8),
        ("define", "name: t\nsymbols: {x: {}}\ndefine:\n  1z: x\nobjective: x\nwrt: x\n", 4, 3),
    ],
)
def test_non_identifier_names_are_located(tmp_path, section, text, line, col):
    path, result = derive_cli(tmp_path, text)
    assert_located_error(path, result, line, col, "is not a plain identifier")


@pytest.mark.parametrize(
    "yaml_text,line_col,message",
    [
        (
            "name: r\nsymbols:\n  ones: {shape: [n]}\ndims: {n: 2}\nobjective: sum(ones)\nwrt: ones\n",
            "3:3",
            "symbol 'ones' has the name of a function of the expression language",
        ),
        (
            "name: r\nsymbols:\n  x: {shape: [eye]}\ndims: {eye: 2}\nobjective: sum(x)\nwrt: x\n",
            "4:8",
            "dimension 'eye' has the name of a function of the expression language",
        ),
        (
            "name: r\nsymbols:\n  x: {}\ndefine:\n  relu: x + 1\nobjective: relu\nwrt: x\n",
            "5:3",
            "define 'relu' has the name of a function of the expression language",
        ),
        (
            "name: r\nsymbols:\n  x: {}\nobjective: 1.0e+999\nwrt: x\n",
            "4:12",
            "numbers must be finite",
        ),
    ],
)
def test_function_names_and_non_finite_numbers(tmp_path, yaml_text, line_col, message):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml_text)
    result = CliRunner().invoke(main, ["derive", str(path), "--no-verify"])
    assert result.exit_code == 2
    assert f"{path}:{line_col}: " in result.stderr and message in result.stderr, result.stderr


def test_an_endless_or_huge_input_is_refused_after_a_megabyte(tmp_path):
    import os
    import threading

    from dlsym.spec._yamlfile import MAX_SPEC_BYTES

    fifo = tmp_path / "endless.yaml"
    os.mkfifo(fifo)
    stop = threading.Event()

    def feed():  # a writer that never ends (until the reader has closed)
        try:
            with open(fifo, "w") as f:
                while not stop.is_set():
                    f.write("a: 1\n" * 1000)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = CliRunner().invoke(main, ["derive", str(fifo)])
    stop.set()
    assert result.exit_code == 2
    assert f"{fifo}:1:1: spec is larger than {MAX_SPEC_BYTES} bytes" in result.output
    result = CliRunner().invoke(main, ["derive", "/dev/zero"])
    assert result.exit_code == 2 and "larger than" in result.output
    result = CliRunner().invoke(main, ["derive", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder, not a spec file" in result.output


def test_windows_line_endings_read_as_unix_ones(tmp_path):
    path = tmp_path / "crlf.yaml"
    path.write_bytes(b"name: crlf\r\nsymbols:\r\n  x: {}\r\nobjective: x**2\r\nwrt: x\r\n")
    d = dlsym.derive(path)
    assert d.result_display("gradient")["expr"] == "2*x"


@pytest.mark.parametrize("spec", ["mlp_2layer", "gan_jsd", "mdp_recycling_robot"])
def test_libyaml_and_the_python_composer_locate_every_node_alike(monkeypatch, spec):
    """Specs are composed by libyaml where PyYAML has it (ten times faster on a long
    chain); every location must be the one the pure-Python composer gives."""
    import yaml

    from dlsym.spec import _yamlfile

    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml")
    text = (Path(__file__).parent.parent / "derivations" / f"{spec}.yaml").read_text()
    # characters of several bytes before the expressions: marks count characters
    text = f"# σ, ∇ and ℓ: 𝔼 is four bytes\n{text}\nnote: 'σ² — 𝔼[x]'\n"
    fast = _yamlfile.load_text(text, "s.yaml")
    monkeypatch.setattr(_yamlfile, "_FAST", False)
    slow = _yamlfile.load_text(text, "s.yaml")
    assert fast.data == slow.data
    assert fast.locations == slow.locations and len(fast.locations) > 10


def test_too_deep_yaml_is_refused_by_either_composer(monkeypatch, tmp_path):
    from dlsym.spec import _yamlfile

    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 150 + "]" * 150 + "\n")
    for fast in (True, False):
        monkeypatch.setattr(_yamlfile, "_FAST", fast and _yamlfile.yaml.__with_libyaml__)
        result = CliRunner().invoke(main, ["derive", str(path)])
        assert result.exit_code == 2
        assert "nested too deeply (more than 100 levels)" in result.stderr


@pytest.mark.parametrize(
    "shape, message",
    [
        ("[99999999999999999999999]", "'x' has 1e+23 entries even at the smallest sizes"),
        ("['n*100000000']", "'x' has 1e+08 entries even at the smallest sizes"),
        # a dim read off no axis by itself (n**n**n, n*m, 2**n) is not capped: the code
        # takes it from the spec (capped, 625² drawn entries met code broadcasting to
        # 10⁸: 'Incompatible types for broadcasting'); at n = 3 the dim read back from a
        # size of 3**27 entries made XLA's allocator refuse 976 TB (exit 3)
        ("['n**n**n']", "'x' has 1.34e+154 entries even at the smallest sizes"),
        pytest.param(
            "['n**n**n']", "'x' has 7.63e+12 entries even at the smallest sizes", id="tower-n3"
        ),
        ("['2**(n + 22)']", "'x' has 6.71e+07 entries even at the smallest sizes"),
    ],
)
def test_a_symbol_too_large_to_draw_is_a_located_error(tmp_path, monkeypatch, shape, message):
    """Verification draws every symbol's entries at each point: past its budget even at
    the smallest sizes it may use, a located error (max() of nothing, 'Maximum allowed
    dimension exceeded', or 24 GB and the OOM killer before)."""
    monkeypatch.chdir(tmp_path)
    n = 3 if "7.63e+12" in message else 4
    text = f"name: t\nsymbols: {{x: {{shape: {shape}}}}}\ndims: {{n: {n}}}\nobjective: sum(x**2)\nwrt: x\n"
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert f"{path}:" in result.stderr


def test_an_intermediate_too_large_to_compute_is_a_located_error(tmp_path):
    """pad(x, 10**9) of a 2-vector holds 2e9 entries that no symbol or result shows:
    verification took 15 GB and 55 s before; now a located error, at once."""
    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 2}\n"
        "objective: sum(pad(x, 1000000000) ** 2)\nwrt: x\n"
    )
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:4:12: verification cannot run: pad(x, ((1000000000, 1000000000),)) in " in (
        result.stderr
    )
    assert "has 2e+09 entries" in result.stderr and "Traceback" not in result.output
    # below the budget it runs: 2·10⁴ entries
    path.write_text(path.read_text().replace("1000000000", "10000"))
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 0, result.output


def test_a_broadcast_product_counts_as_an_intermediate(tmp_path):
    """x[:, None, None, None] * ... * x[None, None, None, :] at n = 400 is 2.6e10 entries
    that no tensor operation shows: the dims were not capped, and XLA ran the fused
    product past 150 s, where the budget's alarm cannot stop it (c46h F1). It is counted
    as an intermediate: verification runs at smaller n."""
    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: t\nsymbols: {x: {shape: [n]}}\ndims: {n: 400}\nobjective: sum(tanh("
        "x[:, None, None, None] * x[None, :, None, None] * x[None, None, :, None] * "
        "x[None, None, None, :]))\nwrt: x\n"
    )
    result = CliRunner().invoke(main, ["derive", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    checks = json.loads(result.stdout)["verification"]["checks"]
    assert any(c["reference"] == "jax.grad at n=25" and c["passed"] for c in checks), checks


def test_a_fifo_with_no_writer_is_refused_in_bounded_time(tmp_path, monkeypatch):
    """open() of a FIFO with no writer blocked for ever (dlsym check and codegen have no
    other time limit); it is read without blocking, and a FIFO that delivers nothing is
    a located error within PIPE_SECONDS."""
    import os
    import time

    from dlsym.spec import _yamlfile

    monkeypatch.setattr(_yamlfile, "PIPE_SECONDS", 1.0)
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    start = time.monotonic()
    result = CliRunner().invoke(main, ["codegen", str(fifo)])
    assert result.exit_code == 2 and time.monotonic() - start < 10
    assert "a pipe or FIFO" in result.output or "empty" in result.output
    assert "Traceback" not in result.output


def test_a_spec_not_in_utf8_is_located_and_utf16_with_a_bom_is_read(tmp_path):
    """Latin-1's é is one byte that is not UTF-8: a located error (it had no line); a
    UTF-16 file with its byte order mark, which YAML allows, is read."""
    spec = "name: t\ntitle: caf\u00e9\nsymbols: {x: {}}\nobjective: x**2\nwrt: x\n"
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(spec.encode("latin-1"))
    result = CliRunner().invoke(main, ["derive", str(latin), "--no-verify"])
    assert result.exit_code == 2
    assert f"{latin}:2:11: the spec is not UTF-8 text: byte 0xe9" in result.stderr
    wide = tmp_path / "wide.yaml"
    wide.write_bytes(spec.encode("utf-16"))
    result = CliRunner().invoke(main, ["derive", str(wide), "--no-verify"])
    assert result.exit_code == 0, result.output


def test_a_number_in_exponent_form_without_a_dot_is_a_number():
    """YAML 1.1 (PyYAML) reads 1e-3 as text ("got '1e-3'" where a number was due); YAML
    1.2 and users read a number. A quoted one stays text."""
    from dlsym.spec._yamlfile import load_text

    assert load_text("a: 1e-300\nb: '1e-3'\nc: 2E5\n", "f").data == {
        "a": 1e-300,
        "b": "1e-3",
        "c": 200000.0,
    }


def test_a_constant_too_large_for_verification_is_a_located_error(tmp_path, monkeypatch):
    """sum(eye(100000)) s: the symbols are small, the constant is 80 GB; XLA's
    RESOURCE_EXHAUSTED was exit 3, now located at the objective, and named before any
    allocation."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "spec.yaml"
    path.write_text("name: t\nsymbols: {s: {}}\nobjective: sum(eye(100000)) * s\nwrt: s\n")
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:3:12: verification cannot run: eye(100000) in the objective has 1e+10" in (
        result.stderr
    )
    assert "Traceback" not in result.output


def test_a_spec_asking_for_a_gpu_it_lacks_names_its_line(tmp_path, monkeypatch):
    """verify: {device: gpu} where JAX sees none: located at the key (it named only
    '--device gpu', which the user never typed); --device on the command line says so."""
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "spec.yaml"
    path.write_text("name: t\nsymbols: {x: {}}\nobjective: x**2\nwrt: x\nverify: {device: gpu}\n")
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:5:18: verify.device: gpu: JAX sees no GPU" in result.stderr
    result = CliRunner().invoke(main, ["derive", str(path), "--device", "gpu"])
    assert result.exit_code == 2 and "--device gpu: JAX sees no GPU" in result.stderr


def test_a_long_flat_sum_is_not_nested_too_deep():
    """s0**2 + s1**2 + ... + s199**2 nests 200 levels to the left in Python's grammar,
    and was refused as "nested deeper than 48 levels"; SymPy flattens it to one Add."""
    n = 150
    d = dlsym.derive(
        {
            "name": "flat",
            "symbols": {f"s{i}": {} for i in range(n)},
            "objective": " + ".join(f"s{i}**2" for i in range(n)) + " - s0 * s1 / 2",
            "wrt": "s0",
        }
    )
    assert d.result_display("gradient")["expr"] == "2*s0 - s1/2"
    assert d.verify(points=4).passed


def test_an_objective_nowhere_real_is_a_located_error_even_where_its_results_are(tmp_path):
    # the gradient w.r.t. x (0 from the first term) is real; the objective is complex
    path, result = derive_cli(
        tmp_path,
        "name: cube_root\nsymbols: {u: {shape: [n], domain: positive}, x: {}}\n"
        "dims: {n: 3}\nobjective: sum((-u)**(1/3)) + x**2\nwrt: x\n",
    )
    assert_located_error(path, result, 4, 12, "the objective is not real for any value")


def test_integers_are_read_as_yaml_1_2_reads_them(tmp_path):
    """YAML 1.1 (PyYAML) read dims: {n: 010} as 8 (octal) and 1:30 as 90 (base 60), in
    silence. YAML 1.2's core schema: decimal (010 is 10), 0o octal, 0x hex; the other
    forms 1.1 read as numbers stay text, which the key reading them refuses, located."""
    from dlsym.spec._yamlfile import load_text

    text = "a: 010\nb: 0o17\nc: 0x1F\nd: -010\ne: 1:30\nf: 0b101\ng: 1_000\nh: 1.5e3\n"
    assert load_text(text, "f").data == {
        "a": 10,
        "b": 15,
        "c": 31,
        "d": -10,
        "e": "1:30",
        "f": "0b101",
        "g": "1_000",
        "h": 1500.0,
    }
    assert load_text("a: '010'\nb: 1_000.5\n", "f").data == {"a": "010", "b": "1_000.5"}
    # no dates in YAML 1.2: a seed written 2001-12-14 was reported as datetime.date(...)
    assert load_text("a: 2001-12-14\nb: 2001-12-14t21:59:43.10-05:00\n", "f").data == {
        "a": "2001-12-14",
        "b": "2001-12-14t21:59:43.10-05:00",
    }
    spec = "name: t\nsymbols:\n  x: {shape: [n]}\ndims: {n: %s}\nobjective: sum(x**2)\nwrt: x\n"
    path, result = derive_cli(tmp_path, spec % "1:30")
    assert_located_error(
        path, result, 4, 11, "dimension 'n' must be a positive integer, got '1:30'"
    )
    path.write_text(spec % "010")
    assert dlsym.derive(str(path)).spec.dims == {"n": 10}


def test_std_over_one_entry_is_a_located_error(tmp_path):
    # 0 for every value, with a 0/0 derivative (the gradient was nan: exit 1)
    path, result = derive_cli(
        tmp_path, "name: sd\nsymbols: {x: {shape: [n]}}\ndims: {n: 1}\nobjective: std(x)\nwrt: x\n"
    )
    assert_located_error(path, result, 4, 12, "std over one entry (at the spec's dims) is 0")
    path.write_text(path.read_text().replace("{n: 1}", "{n: 2}"))
    assert dlsym.derive(str(path)).verify(points=4).passed


# specs that derive, and whose verification cannot run: a located error, not exit 1 or 3
CANNOT_VERIFY = [
    # 100 000 Monte Carlo paths of 200 000 steps asked for 149 GiB (MemoryError, exit 3)
    pytest.param(
        "name: t\nsymbols:\n  g: {shape: [T], distribution: 'normal(mu, 1)'}\n"
        "  beta1: {domain: unit_interval}\n  mu: {}\ndims: {T: 200000}\n"
        "recurrence:\n  index: t\n  state: {m: 0}\n"
        "  update: {m: 'beta1 * m + (1 - beta1) * g[t]'}\nderive: [closed_form]\n",
        6,
        7,
        "verification cannot run: 1,000 Monte Carlo paths at these dims",
        id="monte-carlo-paths-past-memory",
    ),
    # normal(1e30, 1) draws 1e30 every time: its variance 1 failed against rounding
    pytest.param(
        "name: t\nsymbols:\n  x: {distribution: 'normal(1e30, 1)'}\nobjective: variance(x)\n",
        4,
        12,
        "the samples' spread is below float64's resolution at their size",
        id="monte-carlo-samples-unresolved",
    ),
    # KL of N(1e200, 1) from N(0, 1) is 5e399: quad's interval m ± 40σ was one float
    # (reference 0, exit 1), or (x − m)**2 raised OverflowError (exit 3)
    pytest.param(
        "name: t\ndistributions:\n  g: {gaussian: {mean: 0, var: 1}}\n"
        "  h: {gaussian: {mean: 1e200, var: 1}}\nquantities:\n  - kl(g, h)\n",
        6,
        3,
        "its exact value, 5.00000E+399, is past float64",
        id="kl-past-float64",
    ),
    # 1000 samples of a million Bernoulli entries: 21 GB, killed (exit 137); a covariance
    # of n = 3000 asked for 447 GiB (MemoryError, exit 3). A size given as a number has
    # no smaller dims to be checked at (a dim's is capped: test_random)
    pytest.param(
        "name: t\nsymbols:\n  m: {shape: [1000000], distribution: 'bernoulli(p)'}\n"
        "  p: {domain: unit_interval}\nobjective: variance(sum(m))\n",
        1,
        1,
        "verification cannot run: 1,000 Monte Carlo samples at these dims (the random inputs, "
        "the moment's arguments and their products) hold 1e+09",
        id="monte-carlo-samples-past-memory",
    ),
]


@pytest.mark.parametrize("text, line, col, message", CANNOT_VERIFY)
def test_a_verification_that_cannot_run_is_a_located_error(tmp_path, text, line, col, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert_located_error(path, result, line, col, message)


# round 35's hostile corpus: each ended in exit 3, an internal error, or a wrong result
ROUND_35 = [
    # onehot(y, k) * 1 is onehot(y, k): its labels' check read the product's node as a call
    (
        {
            "symbols": {"x": {"shape": ["n"]}, "y": {"shape": ["n"], "domain": {"index": "k"}}},
            "dims": {"n": 3, "k": 5},
            "objective": "sum(onehot(y, k) * 1) + sum(x)",
            "wrt": "x",
            "derive": ["gradient"],
        },
        "gradient",
        "ones(n)",
    ),
    # x[::2] has ceiling(n/2) entries: the code had no ceiling
    (
        {
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 5},
            "objective": "sum(x[::2])",
            "wrt": "x",
            "derive": ["gradient"],
        },
        "gradient",
        None,
    ),
    # |w|^w: the Hessian's entries held SymPy's zoo at w = 0 (NameError in the code) and
    # |w^(w − 1)|, nan in NumPy for a negative w
    (
        {
            "symbols": {"w": {"shape": ["n"]}},
            "dims": {"n": 3},
            "objective": "sum(abs(w) ** w)",
            "wrt": "w",
            "derive": ["gradient", "hessian"],
        },
        "hessian",
        None,
    ),
]


@pytest.mark.parametrize("spec, kind, shown", ROUND_35)
def test_round_35_inputs_end_in_a_verified_result(spec, kind, shown):
    d = dlsym.derive({"name": "r35", **spec}, verify=True)
    assert d.verification.passed, d.verification
    if shown is not None:
        assert d.result_display(kind)["expr"] == shown


def test_an_expectation_that_is_infinite_is_no_closed_form():
    """E log(b) of a Bernoulli b is (1 − p) log 0 = −∞: the closed form was SymPy's zoo,
    written into code as a NameError (exit 3); now it is said to be not finite, with no
    step that shows zoo."""
    d = dlsym.derive(
        {
            "name": "elog",
            "symbols": {"b": {"distribution": "bernoulli(0.3)"}},
            "objective": "expect(log(b))",
            "derive": ["closed_form"],
        }
    )
    assert "closed_form" in d.results
    assert any("is not finite" in n for n in d.notes), d.notes
    assert not any("zoo" in s.latex for s in d.steps)


def test_a_gradient_with_a_max_has_no_stationary_closed_form():
    """max(x) + sum(x²): its gradient maxmask(x) + 2x looked affine (maxmask is flat
    almost everywhere), and x* = −maxmask(0)/2 failed verification (exit 1); the max is
    a kink, so there is no closed form, said."""
    d = dlsym.derive(
        {
            "name": "maxq",
            "symbols": {"x": {"shape": ["n"]}},
            "dims": {"n": 3},
            "objective": "max(x) + sum(x**2)",
            "wrt": "x",
            "derive": ["stationary"],
        }
    )
    assert any("kinks in x" in n for n in d.notes), d.notes


def test_a_convexity_search_prints_no_numpy_warning(capfd):
    """−exp(800 x): the eigenvalue search divided inf by inf and NumPy's RuntimeWarning
    reached stderr; the verdict stands."""
    d = dlsym.derive(
        {
            "name": "cx",
            "symbols": {"x": {}},
            "objective": "-exp(800*x)",
            "wrt": "x",
            "derive": ["convexity"],
        }
    )
    assert d.result_display("convexity")["expr"] == "not convex"
    assert "RuntimeWarning" not in capfd.readouterr().err


def test_a_hessian_of_ones_is_singular(tmp_path):
    """sum(x)²: its Hessian 2 𝟏𝟏ᵀ has rank 1, and the stationary point was x* = 0 (one of
    a plane of them) with a Newton step through inv(ones((n, n))), whose verification
    could not run ("check the symbols' domains", exit 2). The rank bound knows ones now:
    no unique stationary point, said; the Newton step is not defined, said the same way."""
    spec = {
        "name": "ones_hessian",
        "symbols": {"x": {"shape": ["n"]}},
        "dims": {"n": 3},
        "objective": "sum(x)**2",
        "wrt": "x",
        "derive": ["stationary"],
    }
    d = dlsym.derive(spec)
    assert any("rank at most 1" in n for n in d.notes), d.notes
    d = dlsym.derive({**spec, "derive": ["newton_step"]})
    (note,) = d.notes
    assert note.startswith("the Newton step in x: not defined: the Hessian is singular"), note
    assert "rank at most 1" in note


def test_an_integer_too_long_to_read_is_a_located_error(tmp_path):
    """dims: {n: 4301 nines}: Python refuses to convert an integer of over 4300 digits
    (ValueError, exit 3); it is a located error naming the limit."""
    text = "name: t\nsymbols:\n  x: {shape: [n]}\ndims: {n: " + "9" * 4301 + "}\n"
    path, result = derive_cli(tmp_path, text + "objective: sum(x)\nwrt: x\n")
    assert_located_error(path, result, 4, 11, "at most 4300 digits")


def test_points_past_the_memory_budget_are_a_located_error(tmp_path):
    """verify: {points: 100000} of a 1000-vector grew past 4 GB (unbounded): the drawn
    points' entries are bounded like Monte Carlo draws, a located error that says how
    many points fit."""
    path, result = derive_cli(
        tmp_path,
        "name: m\nsymbols:\n  x: {shape: [n]}\ndims: {n: 1000}\nobjective: sum(tanh(x))\n"
        "wrt: x\nderive: [gradient]\nverify: {points: 100000}\n",
    )
    # derive_cli passes --no-verify: run it verified
    result = CliRunner().invoke(main, ["derive", str(path)])
    assert_located_error(path, result, 8, 18, "give at most 20,000 points")
    # one point past the budget: fewer points cannot help ("give at most 1 points")
    path, result = derive_cli(
        tmp_path,
        "name: m\nsymbols:\n  a: {domain: {index: k}, distribution: uniform}\n"
        "  r: {shape: [k]}\ndims: {k: 100000000}\nobjective: variance(r[a])\n",
    )
    result = CliRunner().invoke(main, ["derive", str(path), "--points", "1"])
    assert_located_error(path, result, 5, 7, "past its 20,000,000: smaller dims, or derive")
    assert "give at most" not in result.stderr
