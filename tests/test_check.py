"""dlsym check and dlsym.testing.assert_gradient: NumPy, JAX and PyTorch functions,
float32 and float64, diagnoses of the common mistakes, and bad input."""

import functools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CATALOG, ROOT
from scipy.special import expit

import dlsym
from dlsym._cli import main
from dlsym._errors import UserFunctionError
from dlsym.check._gradient import check_gradient
from dlsym.testing import assert_gradient

LOGISTIC = CATALOG / "logistic_regression.yaml"
SOFTMAX_CE = CATALOG / "softmax_cross_entropy.yaml"
DTYPES = ["float32", "float64"]


def logistic_grad(X, y, w, lam):
    p = expit(X @ w)
    return X.T @ (p - y) / len(y) + lam * w


def softmax_ce_grad(z, y):
    e = np.exp(z - z.max())
    return e / e.sum() - y


# --- correct functions pass in both dtypes, in every framework -----------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_correct_passes(dtype):
    report = assert_gradient(LOGISTIC, logistic_grad, wrt="w", dtype=dtype)
    assert report.passed and report.dtype == dtype and report.framework == "numpy"
    assert report.max_rel_error < (1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_positional_signature(dtype):
    assert_gradient(SOFTMAX_CE, lambda logits, labels: softmax_ce_grad(logits, labels), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_jax_function(dtype):
    import jax
    import jax.numpy as jnp

    def grad(z, y):
        return jax.nn.softmax(z) - y

    assert jnp  # the framework is detected from the function's globals
    report = assert_gradient(SOFTMAX_CE, grad, dtype=dtype)
    assert report.framework == "jax"


@pytest.mark.parametrize("dtype", DTYPES)
def test_jax_custom_vjp_is_differentiated(dtype):
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def loss(z, y):
        return -jnp.sum(y * jax.nn.log_softmax(z))

    def fwd(z, y):
        return loss(z, y), (z, y)

    def bwd(res, g):
        z, y = res
        return g * (jax.nn.softmax(z) - y), jnp.zeros_like(y)

    loss.defvjp(fwd, bwd)
    report = assert_gradient(SOFTMAX_CE, loss, dtype=dtype)
    assert report.framework == "jax.custom_vjp"
    # through what wraps it (__wrapped__): its jit (it was called, and its scalar
    # compared with the gradient), a def as codegen's objective_custom_vjp
    report = assert_gradient(SOFTMAX_CE, jax.jit(loss), dtype=dtype)
    assert report.framework == "jax.custom_vjp"

    def bad_bwd(res, g):  # forgets the label term
        z, y = res
        return g * jax.nn.softmax(z), jnp.zeros_like(y)

    loss.defvjp(fwd, bad_bwd)
    report = check_gradient(SOFTMAX_CE, loss, dtype=dtype)
    assert not report.passed
    assert report.parts[0].diagnosis == "a missing term: -y"


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_function_and_autograd_function(dtype):
    torch = pytest.importorskip("torch")

    def grad(X, y, w, lam):
        p = torch.sigmoid(X @ w)
        return X.T @ (p - y) / y.shape[0] + lam * w

    assert assert_gradient(LOGISTIC, grad, dtype=dtype).framework == "torch"

    class SoftmaxCE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, y):
            ctx.save_for_backward(z, y)
            return -(y * torch.log_softmax(z, 0)).sum()

        @staticmethod
        def backward(ctx, g):
            z, y = ctx.saved_tensors
            return g * (torch.softmax(z, 0) + y), None  # sign of y flipped

    report = check_gradient(SOFTMAX_CE, SoftmaxCE, dtype=dtype)
    assert report.framework == "torch.autograd.Function" and not report.passed
    assert report.parts[0].diagnosis == "the term -y has the wrong sign"


# --- the diagnoses ------------------------------------------------------------------


MISTAKES = {
    "sign flipped": (
        lambda X, y, w, lam: -logistic_grad(X, y, w, lam),
        "sign flipped: your gradient is the negative of the expected one",
    ),
    "factor 2": (
        lambda X, y, w, lam: 2 * logistic_grad(X, y, w, lam),
        "off by a constant factor 2 (a dropped 1/2?)",
    ),
    "small relative error": (
        lambda X, y, w, lam: logistic_grad(X, y, w, lam) * (1 + 1e-3),
        "off by a constant factor 1.001 (relative error +1.00e-03)",
    ),
    "missing term": (
        lambda X, y, w, lam: X.T @ (expit(X @ w) - y) / len(y),
        "a missing term: lam*w",
    ),
    "sum for mean": (
        lambda X, y, w, lam: X.T @ (expit(X @ w) - y) + lam * w,
        "the term (X.T @ (sigmoid(X @ w) - y))/m is off by a factor 6 = m: a sum "
        "where the mean over m is meant?",
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_diagnosis(mistake, dtype):
    fn, expected = MISTAKES[mistake]
    report = check_gradient(LOGISTIC, fn, dtype=dtype)
    assert not report.passed
    assert report.parts[0].diagnosis == expected
    with pytest.raises(AssertionError) as info:
        assert_gradient(LOGISTIC, fn, dtype=dtype)
    assert f"diagnosis (w): {expected}" in str(info.value)
    assert "worst entries" in str(info.value) and "tolerance: per entry" in str(info.value)


def one_nan(z, y):
    g = softmax_ce_grad(z, y)
    g[2] = np.nan
    return g


NON_FINITE = {
    # inf * (+) + inf * (-) in the hypotheses' sums: NumPy warned on stderr
    "all-inf": (lambda z, y: np.full(z.shape, np.inf), "(inf) in 80 of 80 entries", np.inf),
    "all-nan": (lambda z, y: np.full(z.shape, np.nan), "(nan) in 80 of 80 entries", np.nan),
    # the other entries match: the nan ones are the worst shown (argsort put them last)
    "one-nan": (one_nan, "(nan) in 16 of 80 entries", np.nan),
}


@pytest.mark.parametrize("case", sorted(NON_FINITE))
def test_a_non_finite_return_is_diagnosed_without_numpy_warnings(case):
    import warnings

    fn, count, value = NON_FINITE[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check_gradient(SOFTMAX_CE, fn)
    assert not report.passed
    assert report.parts[0].diagnosis == (
        f"your gradient is not finite {count} where the expected one is finite: an "
        "overflow, a division by zero or a 0/0?"
    )
    worst = report.parts[0].worst
    assert worst and all(np.isfinite(e.expected) for e in worst)
    assert all(np.array_equal(e.got, value, equal_nan=True) for e in worst)
    if case == "one-nan":
        assert {e.index for e in worst} == {(2,)}


def test_cli_a_function_returning_inf_prints_no_numpy_warnings(tmp_path):
    path = tmp_path / "inf.py"
    path.write_text("import numpy as np\ndef g(z, y):\n    return np.full(z.shape, np.inf)\n")
    # a real process: the child's warnings go to the file descriptor, not to click's stderr
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "check", str(SOFTMAX_CE), "--grad", f"{path}:g"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""
    assert "DOES NOT MATCH" in done.stdout
    assert "diagnosis (z): your gradient is not finite (inf) in 80 of 80 entries" in done.stdout


TRANSPOSE_SPEC = {
    "name": "linear_wrt_W",
    "symbols": {"G": {"shape": ["k"]}, "W": {"shape": ["k", "d"]}, "x": {"shape": ["d"]}},
    "dims": {"k": 3, "d": 4},
    "objective": "sum(G * (W @ x))",
    "wrt": "W",
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_outer_product(dtype):
    assert_gradient(TRANSPOSE_SPEC, lambda G, W, x: np.outer(G, x), dtype=dtype)
    report = check_gradient(TRANSPOSE_SPEC, lambda G, W, x: np.outer(x, G), dtype=dtype)
    assert not report.passed
    assert report.parts[0].diagnosis == (
        "returned shape (4, 3), expected (3, 4) (the gradient with respect to W): "
        "transposed: you return the transpose of the gradient"
    )


def test_several_wrt_dict_or_tuple():
    spec = CATALOG / "mlp_2layer.yaml"

    def grads(x, y, W1, b1, W2, b2):
        h = np.tanh(W1 @ x + b1)
        delta = W2 @ h + b2 - y
        da = (W2.T @ delta) * (1 - h**2)
        return {"W1": np.outer(da, x), "b1": da, "W2": np.outer(delta, h), "b2": delta}

    assert assert_gradient(spec, grads).passed
    assert assert_gradient(spec, lambda **kw: tuple(grads(**kw).values())).passed
    report = check_gradient(
        spec, lambda **kw: {**grads(**kw), "b1": grads(**kw)["b1"] * 0}, dtype="float32"
    )
    assert [p.passed for p in report.parts] == [True, False, True, True]


def test_a_dict_key_that_is_a_symbols_name_is_that_symbols_derivative():
    """With symbols W and dW, the key 'dW' is dW's derivative and 'grad_W' W's: 'dW' was
    read as W's (the first spelling found), and a right gradient failed the check."""
    spec = {"name": "k_dw", "symbols": {"W": {"shape": ["n"]}, "dW": {"shape": ["n"]}},
            "dims": {"n": 3}, "objective": "sum(W**2) + sum(3*dW)", "wrt": ["W", "dW"]}  # fmt: skip
    assert assert_gradient(spec, lambda W, dW: {"dW": 3 * np.ones_like(dW), "grad_W": 2 * W}).passed
    report = check_gradient(spec, lambda W, dW: {"dW": 3 * np.ones_like(dW), "grad_W": 3 * W})
    assert [p.passed for p in report.parts] == [False, True]
    with pytest.raises(UserFunctionError, match="lacks W .keyed 'W' or 'grad_W' or 'd_W'."):
        assert_gradient(spec, lambda W, dW: {"dW": 3 * np.ones_like(dW)})


def test_a_plain_list_of_numbers_is_one_gradient():
    """[2 a x_i for each i] as a list of floats, which NumPy reads as one array: it was
    refused as "a list of 4" (a tuple in wrt order); a wrong one still fails."""
    assert assert_gradient(SPEC_X4, lambda x, a: [float(v) for v in 2 * a * x]).passed
    report = check_gradient(SPEC_X4, lambda x, a: [float(v) for v in 3 * a * x])
    assert not report.passed


def test_backward_function_through_the_vjp_pattern():
    spec = {
        "name": "tanh_vjp",
        "symbols": {"g": {"shape": ["n"]}, "x": {"shape": ["n"]}},
        "dims": {"n": 5},
        "objective": "sum(g * tanh(x))",
        "wrt": "x",
    }
    assert_gradient(spec, lambda g, x: g * (1 - np.tanh(x) ** 2), dtype="float32")
    report = check_gradient(spec, lambda g, x: g * (1 - x**2))  # derivative of the wrong thing
    assert not report.passed


# --- bad input ----------------------------------------------------------------------


def test_wrong_shape_is_a_failure_naming_both_shapes():
    report = check_gradient(LOGISTIC, lambda X, y, w, lam: X @ w)
    assert not report.passed
    part = report.parts[0]
    assert part.got_shape == (6,) and part.shape == (3,) and part.worst == ()
    assert part.diagnosis == "returned shape (6,), expected (3,) (the gradient with respect to w)"
    assert "diagnosis (w): returned shape (6,), expected (3,)" in report.format()


def test_not_an_array_is_bad_input():
    with pytest.raises(dlsym.UserFunctionError) as info:
        check_gradient(LOGISTIC, lambda X, y, w, lam: None)
    assert str(info.value).endswith(
        ": <lambda> returned None; the gradient with respect to w should be an array of shape (3,)"
    )


SPEC_X4 = {
    "name": "chk",
    "symbols": {"x": {"shape": ["n"]}, "a": {"shape": ["n"]}},
    "dims": {"n": 4},
    "objective": "sum(a * x**2)",
    "wrt": "x",
}
# a bad return is located at the user's def (its return line is gone once it returned),
# named, and says what was expected
BAD_RETURNS = {
    "none": ("    return None\n", "mod.py:2: g returned None; {expected}"),
    "str": ("    return 'abc'\n", "mod.py:2: g returned a str; {expected}"),
    "generator": ("    return (v for v in x)\n", "mod.py:2: g returned a generator; {expected}"),
    # a ragged list: why, in NumPy's words
    "ragged": (
        "    return {'x': [[1, 2], [3]]}\n",
        "mod.py:2: g returned a list (setting an array element with a sequence{numpy}); {expected}",
    ),
    "complex": (
        "    return 2 * a * x + 1j\n",
        "mod.py:2: g returned a complex gradient with respect to x (complex128, largest "
        "imaginary part 1): the derivative of a real objective is real; return .real only "
        "where the imaginary part is rounding noise (an FFT's)",
    ),
    "tuple": (
        "    return x, a, x\n",
        "mod.py:2: g returned a tuple of 3; expected the gradient with respect to x (one "
        "array, a dict, or a tuple of 1 in wrt order or of 2 in the spec's order)",
    ),
    "dict": (
        "    return {'grad': x}\n",
        "mod.py:2: g returned a dict that lacks x (keyed 'x' or 'dx' or 'grad_x' or 'd_x')",
    ),
    # NumPy turns "2" into 2.0 and durations into numbers: both passed the check (round 33)
    "strings": (
        "    return np.array(['2'] * len(x))\n",
        "mod.py:2: g returned a ndarray (its entries are strings, not numbers); {expected}",
    ),
    "durations": (
        "    return np.full(x.shape, 2, dtype='timedelta64[s]')\n",
        "mod.py:2: g returned a ndarray (its entries are durations, not numbers); {expected}",
    ),
    "object-strings": (
        "    return np.array(['2', 2.0, 2, 2], dtype=object)\n",
        "mod.py:2: g returned a ndarray (its entries are strings, not numbers); {expected}",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RETURNS))
def test_a_bad_return_names_the_function_and_its_line(tmp_path, monkeypatch, case):
    from dlsym.check._caller import load_function

    body, text = BAD_RETURNS[case]
    (tmp_path / "mod.py").write_text("import numpy as np\ndef g(x, a):\n" + body)
    monkeypatch.chdir(tmp_path)
    fn, _ = load_function("mod.py:g")
    with pytest.raises(dlsym.UserFunctionError) as info:
        check_gradient(SPEC_X4, fn)
    expected = "the gradient with respect to x should be an array of shape (4,)"
    head, _, tail = text.format(expected=expected, numpy="{numpy}").partition("{numpy}")
    message = str(info.value)
    assert message.startswith(head) and message.endswith(tail), message


def test_a_return_that_cannot_be_read_as_an_array_is_located_where_it_raised(tmp_path, monkeypatch):
    from dlsym.check._caller import load_function

    (tmp_path / "mod.py").write_text(
        "class Bad:\n"
        "    shape = (4,)\n"
        "    def __array__(self, *a, **k):\n"
        "        raise RuntimeError('no array for you')\n"
        "def g(x, a):\n"
        "    return Bad()\n"
    )
    monkeypatch.chdir(tmp_path)
    fn, _ = load_function("mod.py:g")
    with pytest.raises(dlsym.UserFunctionError) as info:
        check_gradient(SPEC_X4, fn)
    assert str(info.value) == (
        "mod.py:4: g returned a Bad, which cannot be read as an array: RuntimeError: no "
        "array for you"
    )
    assert "in __array__" in info.value.user_traceback


def test_an_exception_or_exit_whose_text_raises_is_named_by_its_type():
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("str fails")

    class Unrepresentable:
        def __repr__(self):
            raise RuntimeError("repr fails")

    def raises(x, a):
        raise Unprintable()

    def exits(x, a):
        sys.exit(Unrepresentable())

    with pytest.raises(dlsym.UserFunctionError) as info:
        check_gradient(SPEC_X4, raises)
    assert str(info.value).endswith(
        ": your function raised Unprintable (whose str() raised RuntimeError)"
    )
    with pytest.raises(dlsym.UserFunctionError) as info:
        check_gradient(SPEC_X4, exits)
    assert str(info.value).endswith(
        ": your function called sys.exit(<Unrepresentable object>) instead of returning"
    )


def test_a_huge_return_of_the_wrong_shape_is_a_mismatch_never_stacked():
    from dlsym.check._gradient import _kept
    from dlsym.check._shapes import Layout

    # stacked over 16 points, it would take 47.7 GiB (a MemoryError, exit 3); np.zeros
    # maps its pages lazily, so the test itself takes no memory
    report = check_gradient(SPEC_X4, lambda x, a: np.zeros((20000, 20000)))
    assert not report.passed
    part = report.parts[0]
    assert part.got_shape == (20000, 20000) and part.worst == ()
    assert part.diagnosis == (
        "returned shape (20000, 20000), expected (4,) (the gradient with respect to x)"
    )
    # what is kept of such a return holds its shape and dtype, no entries
    layout = Layout("x", (4,), (), 1, "gradient", ("n",))
    kept = _kept(np.ones((3, 5), dtype=np.float32), layout)
    assert kept.shape == (3, 5) and kept.dtype == np.float32 and kept.strides == (0, 0)
    # a shape a rule reads (one axis too many: the batch not summed) is kept whole
    batch = np.ones((7, 4))
    assert _kept(batch, layout) is batch


def test_exception_in_user_code_is_marked_as_theirs():
    def grad(z, y):
        raise KeyError("boom")

    with pytest.raises(dlsym.UserFunctionError) as info:
        check_gradient(SOFTMAX_CE, grad)
    text = info.value.format()
    assert "your function raised KeyError" in text and "traceback from your code" in text
    assert "test_check.py" in text and "dlsym/_check.py" not in text


def test_a_huge_exception_message_is_clipped():
    """An exception's text of 5 MB was printed whole, twice (round 33: 50 MB gave 100 MB
    on stderr): the first 2000 characters, and how many more."""

    def grad(z, y):
        raise ValueError("A" * 5_000_000)

    with pytest.raises(dlsym.UserFunctionError) as info:
        check_gradient(SOFTMAX_CE, grad)
    text = info.value.format()
    assert len(text) < 10_000
    # in the message and in the traceback's last line
    assert len(re.findall(r"A\.\.\. \(4,998,0\d\d characters more\)", text)) == 2


def test_unmatched_signature():
    with pytest.raises(dlsym.UserFunctionError) as info:
        check_gradient(SOFTMAX_CE, lambda a, b, c: a)
    assert str(info.value).endswith(
        ": <lambda> takes (a, b, c): neither the spec's symbols by name nor 2 positional "
        "ones (z, y)"
    )


def test_parameters_with_defaults_are_left_to_them():
    """A scale=1.0 of the user's, or a keyword functools.partial binds, was 'neither the
    spec's symbols by name nor 2 positional ones': the symbols are passed, the rest keep
    their defaults; a partial bound to the wrong scale is diagnosed as that factor."""

    def softmax_grad(z, y, scale=1.0):
        e = np.exp(z - z.max())
        return scale * (e / e.sum() - y)

    assert check_gradient(SOFTMAX_CE, softmax_grad).passed
    assert check_gradient(SOFTMAX_CE, functools.partial(softmax_grad, scale=1.0)).passed
    assert check_gradient(SOFTMAX_CE, lambda a, b, scale=1.0: softmax_grad(a, b)).passed
    report = check_gradient(SOFTMAX_CE, functools.partial(softmax_grad, scale=2.0))
    assert not report.passed
    assert "off by a constant factor 2" in report.format()
    with pytest.raises(dlsym.UserFunctionError, match=r"takes \(z, y, scale\)"):
        check_gradient(SOFTMAX_CE, lambda z, y, *, scale: z)  # a keyword with no default


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "mygrads.py"
    path.write_text(
        "import numpy as np\n"
        "def good(z, y):\n    e = np.exp(z - z.max())\n    return e / e.sum() - y\n"
        "def flipped(z, y):\n    return -good(z, y)\n"
        "def crash(z, y):\n    return undefined_name\n"
    )
    return path


@pytest.mark.parametrize(
    "func,code,text",
    [
        ("good", 0, "matches the derivative of softmax_cross_entropy"),
        ("flipped", 1, "diagnosis (z): sign flipped"),
    ],
)
def test_cli_exit_codes(user_file, func, code, text):
    result = CliRunner().invoke(
        main,
        [
            "check",
            str(SOFTMAX_CE),
            "--grad",
            f"{user_file}:{func}",
            "--dtype",
            "float32",
            "--points",
            "8",
        ],
        env={"COLUMNS": "120"},
    )
    assert result.exit_code == code, result.output
    assert text in result.output


@pytest.mark.parametrize(
    "grad,text",
    [
        ("{file}:crash", "mygrads.py:8: your function raised NameError"),
        ("{file}:missing", "has no function 'missing' (it has: crash, flipped, good)"),
        ("{dir}/nope.py:good", "no such file"),
        # a FIFO or a folder exists: 'no such file' said otherwise (round 33)
        ("{dir}/pipe.py:good", "pipe.py: not a regular file (a FIFO or a device)"),
        ("{dir}:good", ": a directory, not a file"),
        (":good", "no file or module before ':'"),  # was read as '.', a directory
        ("no_such_module_xyz:good", "no module named 'no_such_module_xyz'"),
        ("{file}", "expected FILE.py:FUNCTION"),
        # no import machinery reads the suffix: it used to say "importing ... raised
        # AttributeError: 'NoneType' object has no attribute 'loader'", as the user's
        (
            "{dir}/notes.txt:g",
            "notes.txt is not a Python module: expected a .py file (or module.sub:FUNCTION)",
        ),
    ],
)
def test_cli_bad_input(user_file, grad, text):
    (user_file.parent / "notes.txt").write_text("not python\n")
    os.mkfifo(user_file.parent / "pipe.py")
    grad = grad.format(file=user_file, dir=user_file.parent)
    result = CliRunner().invoke(main, ["check", "softmax_cross_entropy", "--grad", grad])
    assert result.exit_code == 2
    assert text in result.stderr and "Traceback (most recent call last)" not in result.stderr


def test_cli_module_path(user_file, monkeypatch):
    monkeypatch.chdir(user_file.parent)
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", "mygrads:good"])
    assert result.exit_code == 0, result.output


def test_cli_a_scalar_gradient_is_not_said_to_have_shape_1(tmp_path):
    """The child process sent a 0-d return through np.ascontiguousarray, which made it
    (1,): the report said a right scalar gradient 'returned with shape (1,)'."""
    (tmp_path / "sc.yaml").write_text(
        "name: sc\nsymbols: {x: {}, a: {}}\nobjective: a * x**2\nwrt: x\n"
    )
    (tmp_path / "g.py").write_text(
        "import numpy as np\ndef g(x, a):\n    return 2 * a * x\n"
        "def g1(x, a):\n    return np.array([2 * a * x])\n"
    )
    scalar = CliRunner().invoke(
        main, ["check", str(tmp_path / "sc.yaml"), "--grad", f"{tmp_path / 'g.py'}:g"]
    )
    assert scalar.exit_code == 0 and "shape (1,)" not in scalar.output, scalar.output
    one = CliRunner().invoke(
        main, ["check", str(tmp_path / "sc.yaml"), "--grad", f"{tmp_path / 'g.py'}:g1"]
    )
    assert one.exit_code == 0 and "returned with shape (1,)" in one.output


def test_gpu_request_without_gpu_is_a_clear_error(user_file):
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present")

    def jax_grad(z, y):
        return jax.nn.softmax(z) - y

    with pytest.raises(dlsym.DeviceError, match="JAX sees no GPU"):
        check_gradient(SOFTMAX_CE, jax_grad, device="gpu")
    result = CliRunner().invoke(
        main, ["check", str(SOFTMAX_CE), "--grad", f"{user_file}:good", "--device", "gpu"]
    )
    assert result.exit_code == 2
    assert "a NumPy function runs on the CPU only" in result.stderr


@pytest.mark.parametrize(
    "body, text",
    [
        # exit 0 and no report would read as a pass
        ("import sys\ndef g(logits, y):\n    sys.exit(0)\n", "your function called sys.exit(0)"),
        ("def g(logits, y):\n    raise SystemExit(3)\n", "your function called sys.exit(3)"),
        (
            "import sys\nsys.exit(0)\ndef g(logits, y):\n    return logits\n",
            "called sys.exit(0): move the script's code under if __name__ == '__main__'",
        ),
    ],
    ids=["function-exit-0", "function-exit-3", "module-exit"],
)
def test_a_user_function_that_exits_is_bad_input_not_a_pass(tmp_path, body, text):
    path = tmp_path / "exits.py"
    path.write_text(body)
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", f"{path}:g"])
    assert result.exit_code == 2, result.output
    assert text in result.stderr and "traceback from your code" in result.stderr


@pytest.mark.parametrize(
    "body",
    [
        # a dataclass under postponed annotations looks its module up in sys.modules
        "from __future__ import annotations\nfrom dataclasses import dataclass\n"
        "@dataclass\nclass Cfg:\n    scale: float = 1.0\n",
        "import sys\nME = sys.modules[__name__]\n",
        # a module that changes the working folder as it is imported
        "import os\nos.chdir('/')\n",
    ],
    ids=["dataclass", "sys-modules-name", "chdir"],
)
def test_an_ordinary_module_is_imported_as_an_import_would(tmp_path, monkeypatch, body):
    """Each was a false exit 2 blamed on the user's code: the module ran before it was
    in sys.modules (KeyError), or dlsym's own sys.path cleanup failed after a chdir."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ordinary.py"
    path.write_text(
        body + "import numpy as np\n"
        "def g(z, y):\n    e = np.exp(z - z.max())\n    return e / e.sum() - y\n"
    )
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", f"{path}:g"])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_a_module_attribute_that_raises_is_the_users_error(tmp_path):
    """The function's lookup runs the module's code too (a property on its class): its
    exception was dlsym's "internal error" (exit 3)."""
    path = tmp_path / "prop.py"
    path.write_text(
        "import sys, types\nclass M(types.ModuleType):\n    @property\n    def g(self):\n"
        "        raise RuntimeError('boom')\nsys.modules[__name__].__class__ = M\n"
    )
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", f"{path}:g"])
    assert result.exit_code == 2, result.output
    assert "boom" in result.stderr and "internal error" not in result.stderr


def test_an_exceptions_control_characters_do_not_reach_the_terminal(tmp_path):
    """The checked code's exception text is echoed in the error: its ESC sequences (a
    cleared screen, a fake "ok"), a CR and U+202E reached a terminal as they were (click
    strips ESC only where stderr is no terminal; CR and U+202E it never did)."""
    path = tmp_path / "spoof.py"
    path.write_text(
        "class E(Exception):\n    def __str__(self):\n"
        "        return '\\x1b[2J\\x1b[32mdlsym check: ok\\x1b[0m\\r\\u202e'\n"
        "def g(logits, y):\n    raise E()\n"
    )
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", f"{path}:g"], color=True)
    assert result.exit_code == 2, result.output
    assert "your function raised E:" in result.stderr
    assert not {"\x1b", "\r", "\u202e"} & set(result.stderr), repr(result.stderr)


# --- a complex return ---------------------------------------------------------------


def test_a_complex_return_is_bad_input_not_its_real_part():
    # NumPy's cast to float would drop the imaginary part with a warning, and pass
    with pytest.raises(dlsym.UserFunctionError) as info:
        check_gradient(SOFTMAX_CE, lambda z, y: softmax_ce_grad(z, y) + 5j)
    assert str(info.value).endswith(
        ": <lambda> returned a complex gradient with respect to z (complex128, largest "
        "imaginary part 5): "
        "the derivative of a real objective is real; return .real only where the imaginary "
        "part is rounding noise (an FFT's)"
    )


def test_cli_a_complex_return_exits_2(tmp_path):
    path = tmp_path / "cgrad.py"
    path.write_text(
        "import numpy as np\n"
        "def g(z, y):\n    e = np.exp(z - z.max())\n    return e / e.sum() - y + 5j\n"
    )
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", f"{path}:g"])
    assert result.exit_code == 2, result.output
    assert "cgrad.py:2: g returned a complex gradient with respect to z (complex128" in (
        result.stderr
    )
    assert "matches" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "body",
    [
        # one output buffer reused across calls: the kept values were rewritten (a right
        # gradient failed, "no simple explanation found")
        "import numpy as np\n_out = None\ndef g(z, y):\n    global _out\n"
        "    if _out is None: _out = np.empty_like(z)\n"
        "    e = np.exp(z - z.max())\n    np.subtract(e / e.sum(), y, out=_out)\n    return _out\n",
        # a class: called like a function, its instance read as an array (it was read for
        # a torch.autograd.Function's forward: AttributeError, exit 3)
        "import numpy as np\nclass g:\n    def __init__(self, z, y):\n"
        "        e = np.exp(z - z.max())\n        self.v = e / e.sum() - y\n"
        "    def __array__(self, dtype=None, copy=None):\n        return self.v\n",
    ],
    ids=["reused-output-buffer", "a-class"],
)
def test_cli_a_right_gradient_in_an_unusual_form_matches(tmp_path, body):
    path = tmp_path / "unusual.py"
    path.write_text(body)
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", f"{path}:g"])
    assert result.exit_code == 0, result.output
    assert "matches" in result.output


# --- the precision the function computes in -----------------------------------------


def test_a_jitted_jax_function_is_read_as_jax_and_called_with_x64():
    import jax

    # read as NumPy (its compiled wrapper has no code to read), it ran without x64:
    # float32 values, a float64 mismatch of 3e-7
    report = assert_gradient(SOFTMAX_CE, jax.jit(lambda z, y: jax.nn.softmax(z) - y))
    assert report.framework == "jax" and report.returned is None
    assert report.max_rel_error < 1e-12


def test_a_jitted_function_of_operators_alone_is_jax():
    """@jax.jit of X.T @ (X @ w - y): its body refers to no module, so it was read as
    NumPy, ran without x64 and was held to float32's tolerance; a gradient wrong by
    1e-6 matched (exit 0)."""
    import jax

    def right(X, y, w, lam):
        return X.T @ (jax.nn.sigmoid(X @ w) - y) / X.shape[0] + lam * w

    report = check_gradient(LOGISTIC, jax.jit(lambda X, y, w, lam: right(X, y, w, lam)))
    assert report.passed and report.framework == "jax" and report.returned is None
    wrong = jax.jit(lambda X, y, w: (X.T @ (X @ w - y)) * (1 + 1e-6))
    spec = {"name": "lr", "symbols": {"X": {"shape": ["m", "n"]}, "y": {"shape": ["m"]},
            "w": {"shape": ["n"]}}, "dims": {"m": 5, "n": 3},
            "objective": "0.5 * sum((X @ w - y)**2)", "wrt": "w"}  # fmt: skip
    report = check_gradient(spec, wrong)
    assert report.framework == "jax" and not report.passed


def test_a_namedtuple_is_read_by_its_field_names_and_two_spellings_are_refused():
    """Grads(lam=..., w=...) was read by position, in wrt order, and its right
    gradients failed; {"w": right, "dw": wrong} read "w" and matched, dw unread."""
    from collections import namedtuple

    Grads = namedtuple("Grads", "lam w")

    def named(X, y, w, lam):
        return Grads(lam=0.5 * w @ w, w=logistic_grad(X, y, w, lam))

    report = check_gradient(LOGISTIC, named, wrt=["w", "lam"])
    assert report.passed, report

    def both(X, y, w, lam):
        g = logistic_grad(X, y, w, lam)
        return {"w": g, "dw": g + 1}

    with pytest.raises(UserFunctionError, match="with 'w' and 'dw', each a spelling"):
        check_gradient(LOGISTIC, both, wrt="w")


def f32_grad(z, y):
    z = z.astype(np.float32)
    return softmax_ce_grad(z, y.astype(np.float32))


@pytest.mark.parametrize("seed", [2, 3, 5])
def test_jax_grad_of_attention_in_float32_is_not_a_false_alarm(seed):
    """jax.grad of the very attention forward pass, in float32: its softmax backward
    cancels A ⊙ (dA − Σ dA ⊙ A) and rounds to 280 eps max|g| where the derived formula
    rounded to 1 (seeds 2 to 6 of 8 were "DOES NOT MATCH", with a diagnosis "only rows
    0, 2 differ" naming a bug that is not there). The tolerance takes the rounding of
    reverse-mode autodiff of the spec's text too; a wrong backward still fails."""
    import jax
    import jax.numpy as jnp

    def f(Wq, Wk, Wv, X, G):
        d = Wq.shape[1]
        A = jax.nn.softmax((X @ Wq) @ jnp.swapaxes(X @ Wk, -1, -2) / jnp.sqrt(d), axis=-1)
        return jnp.sum(G * (A @ (X @ Wv)))

    def right(X, Wq, Wk, Wv, G):
        return dict(
            zip(["Wq", "Wk", "Wv", "X"], jax.grad(f, argnums=(0, 1, 2, 3))(Wq, Wk, Wv, X, G))
        )

    def swapped(X, Wq, Wk, Wv, G):
        g = right(X, Wq, Wk, Wv, G)
        return {**g, "Wq": g["Wk"], "Wk": g["Wq"]}

    spec = CATALOG / "attention.yaml"
    report = check_gradient(spec, right, dtype="float32", seed=seed)
    assert report.passed, report
    assert "reverse-mode autodiff" in report.tolerance_why
    assert not check_gradient(spec, swapped, dtype="float32", seed=seed).passed


def test_a_float32_return_for_float64_inputs_is_checked_at_float32_and_said():
    report = assert_gradient(SOFTMAX_CE, f32_grad)
    assert report.returned == "float32" and report.dtype == "float64"
    text = report.format(width=400)
    assert "f32_grad (numpy, float64 in, float32 out) matches" in text
    assert (
        "note: the function returned float32 arrays for float64 inputs, so it was checked "
        "at float32's tolerance" in text
    )
    assert "pass --dtype float32 (dtype='float32') to check it in float32 on purpose" in text
    assert "eps = 1.19e-07 (float32)" in text
    # still a check: a wrong float32 gradient fails, with its diagnosis
    report = check_gradient(SOFTMAX_CE, lambda z, y: 1.001 * f32_grad(z, y))
    assert not report.passed and report.returned == "float32"
    assert report.parts[0].diagnosis == "off by a constant factor 1.001 (relative error +1.00e-03)"


def test_cli_a_jitted_jax_gradient_matches_in_float64(tmp_path):
    path = tmp_path / "jgrad.py"
    path.write_text("import jax\n\n@jax.jit\ndef g(z, y):\n    return jax.nn.softmax(z) - y\n")
    result = CliRunner().invoke(
        main, ["check", str(SOFTMAX_CE), "--grad", f"{path}:g"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "jgrad.py:g (jax, float64) matches" in result.output


# --- the user's code runs in a child process: whatever it does, a verdict ------------

GOOD = "    e = np.exp(z - z.max())\n    return e / e.sum() - y\n"
ENDINGS = {
    "function-loops": (
        "def g(z, y):\n    while True: pass\n",  # one line: the stack is there
        "ends.py:2: the function ends.py:g ran past the time budget of 3 s, and was "
        "stopped (an endless loop?): raise it with --budget SECONDS, 0 for none",
    ),
    "module-loops": (
        "while True: pass\n",
        "ends.py:1: importing ends.py ran past the time budget of 3 s, and was stopped (an "
        "endless loop at import?): raise it with --budget SECONDS, 0 for none",
    ),
    "function-os-exit-0": (
        "import os\ndef g(z, y):\n    os._exit(0)\n",
        "the function ends.py:g ended the process (exit status 0) before the check "
        "finished: a function to check must return its result, not exit (os._exit ends "
        "the process: no report can follow)",
    ),
    "module-os-exit-0": (
        "import os\nos._exit(0)\n",
        "importing ends.py ended the process (exit status 0) before the check finished: a "
        "module to check must define its functions, not exit",
    ),
    # dlsym's pipes and files closed under it: no result can come back, and the message
    # says that as well as an exit
    "function-closes-fds": (
        "import os\ndef g(z, y):\n    os.closerange(3, 64)\n    return y\n",
        "the function ends.py:g ended the process (exit status 1) before the check "
        "finished: a function to check must return its result, not exit (os._exit ends "
        "the process: no report can follow) or close the process's files",
    ),
    "function-aborts": (
        "import os\ndef g(z, y):\n    os.abort()\n",
        "ends.py:3: the function ends.py:g was ended by signal SIGABRT before the check finished",
    ),
    "base-exception": (
        "def g(z, y):\n    raise BaseException('stop')\n",
        "ends.py:2: your function raised BaseException: stop",
    ),
    "keyboard-interrupt": (
        "def g(z, y):\n    raise KeyboardInterrupt\n",
        "ends.py:2: your function raised KeyboardInterrupt",
    ),
    "module-keyboard-interrupt": (
        "raise KeyboardInterrupt\n",
        "ends.py:1: importing {path} raised KeyboardInterrupt",
    ),
}


@pytest.mark.parametrize("case", sorted(ENDINGS))
def test_cli_user_code_that_hangs_exits_or_interrupts_is_exit_2_located(tmp_path, case):
    body, text = ENDINGS[case]
    path = tmp_path / "ends.py"
    path.write_text(body)
    args = ["check", str(SOFTMAX_CE), "--grad", f"{path}:g", "--budget", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert text.format(path=path) in " ".join(result.stderr.split())
    assert "Traceback (most recent call last)" not in result.output + result.stderr
    assert "Aborted!" not in result.output + result.stderr


def test_the_budget_of_the_users_code_starts_with_their_code(tmp_path):
    """The child's start-up (a spawned interpreter importing dlsym and NumPy, about a
    second, several on a loaded machine) is dlsym's, not the user's: with the budget
    counted from the check's start, a 3 s budget on a loaded CI machine read "importing
    ends.py ran past the time budget (an endless loop at import?)" for a module that
    defines one function. A budget shorter than the start-up shows it."""
    from dlsym.check._gradient import Returns, plan_check
    from dlsym.check._isolated import Job, _called

    path = tmp_path / "quick.py"
    path.write_text("import numpy as np\ndef g(z, y):\n" + GOOD)
    job = Job(str(SOFTMAX_CE), f"{path}:g", None, "float64", 2, 0, "cpu", 1)
    plan = plan_check(str(SOFTMAX_CE), None, "float64", 2, 0, "cpu", 1)
    returns = _called(job, plan.calls, 0.3)
    assert isinstance(returns, Returns), returns
    path.write_text("def g(z, y):\n    while True: pass\n")  # and a loop is still stopped
    ended = _called(job, plan.calls, 0.3)
    assert "quick.py:2: the function quick.py:g ran past the time budget of 0.3 s" in ended.text


HOSTILE = {
    # the user's code misbehaving inside dlsym's own handling of it: each was exit 3
    "exception-str-raises": (
        "class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
        "def g(z, y):\n    raise E()\n",
        "hostile.py:5: your function raised E (whose str() raised RuntimeError)",
    ),
    "exit-repr-raises": (
        "import sys\nclass O:\n    def __repr__(self):\n        raise RuntimeError('no')\n"
        "def g(z, y):\n    sys.exit(O())\n",
        "hostile.py:6: your function called sys.exit(<O object>) instead of returning",
    ),
    "array-raises": (
        "class Bad:\n    def __array__(self, *a, **k):\n        raise RuntimeError('no')\n"
        "def g(z, y):\n    return Bad()\n",
        "hostile.py:3: g returned a Bad, which cannot be read as an array: RuntimeError: no",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_cli_hostile_user_code_is_exit_2_located(tmp_path, monkeypatch, case):
    body, text = HOSTILE[case]
    (tmp_path / "hostile.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", "hostile.py:g"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[0] == f"error: {text}"
    assert "--- traceback from your code ---" in result.stderr
    assert "internal error" not in result.stderr


SYNTAX = {
    # the message starts at the file and line that do not parse, as other located errors
    "module": (
        {"syn.py": "import numpy as np\n\ndef g(z, y)\n    return z\n"},
        "mods/syn.py:3: importing mods/syn.py raised SyntaxError: expected ':'",
    ),
    "indentation": (
        {"syn.py": "def g(z, y):\nreturn z\n"},
        "mods/syn.py:2: importing mods/syn.py raised IndentationError: expected an "
        "indented block after function definition on line 1",
    ),
    # a module it imports: that module's line
    "imported": (
        {"syn.py": "import helper\ndef g(z, y):\n    return z\n", "helper.py": "x = 1\nif x\n"},
        "mods/helper.py:2: importing mods/syn.py raised SyntaxError: expected ':'",
    ),
    # a compile() of a string at run time: the function's line, the text's own place kept
    "eval": (
        {"syn.py": "def g(z, y):\n    return eval('1 +')\n"},
        "mods/syn.py:2: your function raised SyntaxError: invalid syntax (<string>, line 1)",
    ),
}


@pytest.mark.parametrize("case", sorted(SYNTAX))
def test_cli_a_syntax_error_in_the_users_code_is_located_at_its_line(tmp_path, monkeypatch, case):
    files, text = SYNTAX[case]
    (tmp_path / "mods").mkdir()
    for name, body in files.items():
        (tmp_path / "mods" / name).write_text(body)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", "mods/syn.py:g"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[0] == f"error: {text}"
    assert "--- traceback from your code ---" in result.stderr
    assert "Traceback (most recent call last)" not in result.output + result.stderr


def test_cli_a_function_that_closes_stdout_is_still_reported(tmp_path):
    path = tmp_path / "closes.py"
    path.write_text(f"import sys\nimport numpy as np\ndef g(z, y):\n    sys.stdout.close()\n{GOOD}")
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", f"{path}:g"])
    assert result.exit_code == 0, result.output
    assert "closes.py:g (numpy, float64) matches" in result.output


FORKS = {
    # the check ends with its report: the forked process is still asleep
    "returns": (f"    fork()\n{GOOD}", 0, "forks.py:g (numpy, float64) matches"),
    # the budget ends the check
    "loops": ("    fork()\n    while True: pass\n", 2, "ran past the time budget of 15 s"),
}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("case", sorted(FORKS))
def test_cli_processes_the_users_code_forks_do_not_hold_the_output_open(tmp_path, case):
    """What the user's code forks ends with the check: a sleeping grandchild holds
    dlsym's stdout and stderr, and a reader through a pipe (CI) would wait for it."""
    body, code, text = FORKS[case]
    path = tmp_path / "forks.py"
    pids = tmp_path / "pids.txt"
    path.write_text(
        "import os, time\nimport numpy as np\n"
        "def fork():\n"
        "    if os.fork() == 0:\n"
        f"        with open({str(pids)!r}, 'a') as f: f.write(f'{{os.getpid()}}\\n')\n"
        "        time.sleep(120)\n"
        "        os._exit(0)\n"
        f"def g(z, y):\n{body}"
    )
    # 15 s: deriving the reference took past 5 s on a machine running four jobs on two
    # cores (a budget stop, exit 2, in a fresh-clone CI run); the 30 s bound below holds
    args = ["check", str(SOFTMAX_CE), "--grad", f"{path}:g", "--budget", "15"]
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            timeout=60,
        )
    finally:
        forked = [int(pid) for pid in pids.read_text().split()] if pids.exists() else []
        alive = _alive(forked)
        for pid in alive:  # not left behind for two minutes when the test fails
            os.kill(pid, 9)
    assert time.monotonic() - start < 30
    assert done.returncode == code, done.stderr
    assert text in done.stdout + done.stderr
    assert forked and not alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cli_the_users_processes_end_with_a_killed_dlsym(tmp_path):
    """Out of dlsym's process group, the child would outlive a dlsym that was killed (a
    terminal's hang-up, SIGKILL): it watches its parent and ends its group with it."""
    path = tmp_path / "forks.py"
    pids = tmp_path / "pids.txt"
    path.write_text(
        "import os, time\n"
        "def g(z, y):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(120)\n"
        "        os._exit(0)\n"
        f"    with open({str(pids)!r}, 'w') as f: f.write(f'{{os.getpid()}}\\n')\n"
        "    while True: pass\n"
    )
    args = ["check", str(SOFTMAX_CE), "--grad", f"{path}:g", "--budget", "0"]
    temp = tmp_path / "temp"  # the killed dlsym's temp folder: it must be left empty
    temp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    child = None
    try:
        end = time.monotonic() + 60
        while child is None and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.1)
            text = pids.read_text() if pids.exists() else ""
            child = int(text) if text.endswith("\n") else None
        assert child is not None, "the function never ran"
        group = os.getpgid(child)
        assert group == child  # its own group: a session's leader
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            members = [p for p in Path("/proc").glob("[0-9]*") if _in_group(p, group)]
            if not members:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the user's processes outlived dlsym")
        assert list(temp.iterdir()) == []  # no stack file left behind by the kill
    finally:
        proc.kill()
        if child is not None:
            try:
                os.killpg(child, 9)
            except ProcessLookupError:
                pass


def test_cli_the_users_prints_cannot_draw_over_the_report(tmp_path):
    """A module that printed a screen clear (ESC[2J), a carriage return and a fake
    "matches" before a wrong gradient's report: its control characters reach dlsym's
    stdout in caret notation, not as a terminal would act on them."""
    path = tmp_path / "spoof.py"
    path.write_text(
        "import numpy as np\n"
        "def g(z, y):\n"
        "    print('\\x1b[2J\\rdlsym: matches\\tok')\n"
        "    return np.zeros_like(z)\n"
    )
    done = _check_in_a_process(path)
    assert done.returncode == 1, done.stderr
    assert "\x1b" not in done.stdout and "\r" not in done.stdout
    assert done.stdout.startswith("^[[2J^Mdlsym: matches\tok\n")


def _check_in_a_process(path):
    """``dlsym check`` of softmax cross-entropy with ``path``'s g, in a process of its
    own (its stdout and stderr as a terminal or a pipe gets them)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "check", str(SOFTMAX_CE), "--grad", f"{path}:g"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_bfloat16_tensor_is_said_to_be_too_coarse(tmp_path):
    """A PyTorch function returning bfloat16 (mixed precision) was "returned a Tensor;
    ... should be an array of shape (5,)": NumPy cannot read bfloat16. Its machine
    epsilon says why it is refused, as NumPy's bfloat16 does."""
    pytest.importorskip("torch")
    path = tmp_path / "half.py"
    path.write_text(
        "import torch\ndef g(z, y):\n    return (torch.softmax(z, 0) - y).to(torch.bfloat16)\n"
    )
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", f"{path}:g"])
    assert result.exit_code == 2, result.output
    assert "g returned torch.bfloat16 (machine epsilon 0.00781)" in result.stderr
    assert ".float()" in result.stderr


def test_cli_an_async_function_is_a_located_error_and_nothing_else(tmp_path):
    """An async def returns a coroutine: a located exit 2, without Python's "coroutine
    ... was never awaited" RuntimeWarning naming dlsym's own file on stderr."""
    path = tmp_path / "coro.py"
    path.write_text("async def g(z, y):\n    return z\n")
    done = _check_in_a_process(path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: {path}:1: g returned a coroutine; the gradient with respect to z should be "
        "an array of shape (5,)\n"
    )


@pytest.mark.skipif(not hasattr(os, "setsid"), reason="a POSIX session")
def test_cli_a_daemon_of_the_users_does_not_hold_dlsyms_output_open(tmp_path):
    """A double fork and setsid leaves the child's process group, out of reach of its
    end: it held dlsym's stdout open, so a reader through a pipe (CI, | cat) waited for
    it long after the report (120 s in round 32). The child's output goes through
    pipes the parent copies; the daemon keeps only those, closed with dlsym."""
    path = tmp_path / "daemon.py"
    pid_file = tmp_path / "daemon.pid"
    path.write_text(
        "import os, sys, time\n"
        "def g(z, y):\n"
        "    print('from the user')\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        f"            open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        os._exit(0)\n"
        "    e = __import__('numpy').exp(z - z.max())\n"
        "    return e / e.sum() - y\n"
    )
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "check", str(SOFTMAX_CE), "--grad", f"{path}:g"],
        capture_output=True,
        text=True,
        timeout=50,  # the daemon sleeps 60 s: a pipe it held would time this out
    )
    try:
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - start < 45
        assert done.stdout.startswith("from the user\n") and "matches" in done.stdout
    finally:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), 9)
            except (ProcessLookupError, ValueError):
                pass


def _in_group(proc: Path, group: int) -> bool:
    """A running process (not a zombie) of the process group ``group``."""
    try:
        fields = (proc / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[2]) == group


def _alive(pids, wait=5.0):
    """Those of ``pids`` still running after up to ``wait`` seconds (a SIGKILL takes a
    moment; a zombie waiting for init to reap it is not running)."""
    end = time.monotonic() + wait
    while True:
        alive = [pid for pid in pids if _running(pid)]
        if not alive or time.monotonic() > end:
            return alive
        time.sleep(0.1)


def _running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self").exists():
        try:
            return stat.read_text().rpartition(")")[2].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    "body, code, text",
    [
        # a wrong gradient that zeroes numpy's abs passed (exit 0): the comparison reads it
        (
            "def g(z, y):\n    np.abs = lambda v, *a, **k: np.zeros_like(v)\n"
            "    return 3 * good(z, y)\n",
            2,
            "mygrads.py:9: g (your function) replaced numpy.abs",
        ),
        # exit 3 before: the reference's max and Python's builtins
        (
            "def g(z, y):\n    import builtins\n    builtins.max = lambda *a, **k: 0\n"
            "    return good(z, y)\n",
            2,
            "replaced builtins.max",
        ),
        ("def g(z, y):\n    np.max = None\n    return good(z, y)\n", 2, "replaced numpy.max"),
        # at import: the module's body patches numpy
        (
            "np.isclose = lambda *a, **k: True\ndef g(z, y):\n    return good(z, y)\n",
            2,
            "importing",
        ),
        # NumPy's error handling is the function's own business: put back, no refusal
        (
            "def g(z, y):\n    np.seterr(all='raise')\n    return good(z, y)\n",
            0,
            "matches the derivative",
        ),
        # and so is Python's recursion limit (20 ended the comparison after it: exit 3)
        (
            "import sys\ndef g(z, y):\n    sys.setrecursionlimit(20)\n    return good(z, y)\n",
            0,
            "matches the derivative",
        ),
        # dlsym's own comparison replaced at import made a zero gradient pass
        (
            "import dataclasses\nimport dlsym.check._gradient as G\n_orig = G._part\n"
            "G._part = lambda *a, **k: dataclasses.replace(_orig(*a, **k), passed=True)\n"
            "def g(z, y):\n    return 0 * good(z, y)\n",
            2,
            "replaced dlsym.check._gradient._part",
        ),
        # a class of dlsym's patched: its report's verdict (exit 3 before: the property
        # had no setter; with one, a zero gradient would have passed)
        (
            "from dlsym.check import _report\ndef g(z, y):\n"
            "    _report.CheckReport.passed = property(lambda self: True)\n"
            "    return 0 * good(z, y)\n",
            2,
            "replaced dlsym.check._report.CheckReport.passed",
        ),
        # the reference found in the caller's frames and zeroed, with a zero gradient:
        # "matches" before; the reference is computed again after the user's code ran
        (
            "import sys\ndef g(z, y):\n    f = sys._getframe(1)\n    while f is not None:\n"
            "        e = f.f_locals.get('expected')\n        if isinstance(e, dict):\n"
            "            for arrays in e.values():\n                for a in arrays:\n"
            "                    a[...] = 0\n        f = f.f_back\n"
            "    return 0 * good(z, y)\n",
            1,
            "DOES NOT MATCH",
        ),
    ],
)
def test_cli_user_code_that_patches_the_checkers_modules_is_refused(user_file, body, code, text):
    """The user's code runs in the process that computes the reference and compares:
    what it replaces there (np.abs, np.max, builtins.max, sys.modules['numpy']) is put
    back and the check refused, located (exit 2), never a verdict computed with it."""
    user_file.write_text(user_file.read_text() + body)
    result = CliRunner().invoke(
        main,
        ["check", str(SOFTMAX_CE), "--grad", f"{user_file}:g", "--points", "4"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == code, result.output
    assert text in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize("body, code", [("0.5 / np.sqrt(x)", 0), ("1 / np.sqrt(x)", 1)])
def test_check_draws_again_where_the_reference_is_not_defined(tmp_path, body, code):
    """sum(sqrt(x)) with x real: at the negative draws the reference was nan, and a right
    gradient, nan there too, was a MISMATCH (exit 1). Those points are drawn again where
    the reference is finite, as derive's verification does; a wrong one still fails."""
    spec = tmp_path / "root.yaml"
    spec.write_text(
        "name: root\nsymbols:\n  x: {shape: [n]}\ndims: {n: 4}\nobjective: sum(sqrt(x))\nwrt: x\n"
    )
    grad = tmp_path / "g.py"
    grad.write_text(f"import numpy as np\ndef g(x):\n    return {body}\n")
    result = CliRunner().invoke(main, ["check", str(spec), "--grad", f"{grad}:g"])
    assert result.exit_code == code, result.output
    assert "RuntimeWarning" not in result.output and "nan" not in result.output
    if code:
        assert "off by a constant factor 2" in result.output


@pytest.mark.parametrize("factor, code", [(2, 0), (3, 1)])
def test_a_float16_return_is_checked_at_float16s_tolerance(tmp_path, factor, code):
    """A function that returns float16 was held to float32's tolerance: a right one
    failed (and the note's --dtype float32 did not help). It is checked at float16's,
    said so; a wrong one still fails."""
    spec = tmp_path / "q.yaml"
    spec.write_text(
        "name: q\nsymbols:\n  x: {shape: [n]}\n  a: {shape: [n]}\ndims: {n: 4}\n"
        "objective: sum(a * x**2)\nwrt: x\n"
    )
    grad = tmp_path / "g.py"
    grad.write_text(
        f"import numpy as np\ndef g(x, a):\n    return ({factor} * a * x).astype(np.float16)\n"
    )
    result = CliRunner().invoke(main, ["check", str(spec), "--grad", f"{grad}:g"])
    out = " ".join(result.output.split())
    assert result.exit_code == code, result.output
    assert "float64 in, float16 out" in out
    assert "float64 inputs, so it was checked at float16's tolerance: an error below about" in out
    assert "0.031 of an entry (more where the formula is ill-conditioned) cannot be told" in out
    assert "eps = 0.000977 (float16)" in out


@pytest.mark.parametrize("dtype", ["float8_e5m2", "bfloat16"])
def test_a_return_coarser_than_float16_is_refused(tmp_path, dtype):
    """A float8 return was checked at float8's tolerance (eps 0.25, 16 times that):
    zeros and the negated gradient both "matched" (exit 0); bfloat16 was refused as
    "raw records". Both are refused, located, with their epsilon."""
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "name: c\nsymbols:\n  x: {shape: [n]}\n  a: {}\ndims: {n: 4}\n"
        "objective: a * sum(x**3)\nwrt: x\n"
    )
    grad = tmp_path / "g8.py"
    grad.write_text(
        "import numpy as np, ml_dtypes\n"
        f"def g(x, a):\n    return np.zeros(x.shape, dtype=ml_dtypes.{dtype})\n"
    )
    result = CliRunner().invoke(main, ["check", str(spec), "--grad", f"{grad}:g"])
    assert result.exit_code == 2, result.output
    assert f"returned {dtype} (machine epsilon" in " ".join(result.output.split())
    assert "Traceback" not in result.output


FORGED_PASS = """import gc, os
def g(x, a):
    from multiprocessing.connection import Connection
    from dlsym.check._isolated import Outcome
    from dlsym.check._report import CheckReport, PartReport
    part = PartReport("x", (4,), 0.0, 0.0, 1e-9, True, (), None)
    rep = CheckReport("c", "forge.py:g", "numpy", "float64", 16, 0, (part,), "forged")
    for o in gc.get_objects():
        if isinstance(o, Connection) and o.writable:
            o.send(("outcome", Outcome(rep)))
    os._exit(0)
"""

# a pickle that runs code where it is read: the parent must never unpickle the pipe
PICKLE_PAYLOAD = """import gc, os, pickle
class Boom:
    def __reduce__(self):
        return (open, ({marker!r}, "w"))
def g(x, a):
    from multiprocessing.connection import Connection
    for o in gc.get_objects():
        if isinstance(o, Connection) and o.writable:
            o.send_bytes(pickle.dumps(("outcome", Boom())))
    os._exit(0)
"""


@pytest.mark.parametrize("module", ["forged pass", "pickle payload"])
def test_a_verdict_cannot_be_forged_by_the_checked_code(tmp_path, module):
    """The user's code runs in a child that holds no reference, comparison or report:
    a hand-built passing report sent down the result pipe (found through gc) was printed
    as "matches", exit 0. The parent reads the pipe as data (no pickle), so neither a
    forged report nor a pickle that runs code when read gets anywhere: exit 2."""
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "name: c\nsymbols:\n  x: {shape: [n]}\n  a: {}\ndims: {n: 4}\n"
        "objective: a * sum(x**2) / 2 + sum(sin(x))\nwrt: x\n"
    )
    marker = tmp_path / "ran-in-the-parent"
    grad = tmp_path / "forge.py"
    grad.write_text(
        FORGED_PASS if module == "forged pass" else PICKLE_PAYLOAD.format(marker=str(marker))
    )
    result = CliRunner().invoke(main, ["check", str(spec), "--grad", f"{grad}:g"])
    assert result.exit_code == 2, result.output
    assert "report could not be read" in result.output
    assert "matches" not in result.output and "forged" not in result.output
    assert not marker.exists()


def test_a_report_forged_on_the_result_pipe_is_no_verdict(tmp_path):
    """The checked code can reach the child's result pipe: a malformed report sent down
    it crashed the parent (a traceback, exit 1). It is no verdict, exit 2, said."""
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "name: c\nsymbols:\n  x: {shape: [n]}\n  a: {}\ndims: {n: 4}\n"
        "objective: a * sum(x**3)\nwrt: x\n"
    )
    grad = tmp_path / "forge.py"
    grad.write_text(
        "import gc, os\nfrom multiprocessing.connection import Connection\n"
        "def g(x, a):\n    from dlsym.check._isolated import Outcome\n"
        "    from dlsym.check._report import CheckReport\n"
        "    for o in gc.get_objects():\n"
        "        if isinstance(o, Connection) and o.writable and not o.readable:\n"
        "            o.send(('outcome', Outcome(CheckReport.__new__(CheckReport))))\n"
        "    os._exit(0)\n"
    )
    result = CliRunner().invoke(main, ["check", str(spec), "--grad", f"{grad}:g"])
    assert result.exit_code == 2, result.output
    assert "report could not be read" in result.output
    assert "Traceback" not in result.output


def test_a_module_that_limits_open_files_is_still_checked(tmp_path):
    """RLIMIT_NOFILE set to 3 at import left the child no file to import what sends the
    returns back (exit 3): it is loaded before the user's code runs."""
    path = tmp_path / "limits.py"
    path.write_text(
        "import resource\nimport numpy as np\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))\n"
        "def g(z, y):\n    e = np.exp(z - z.max())\n    return e / e.sum() - y\n"
    )
    result = CliRunner().invoke(main, ["check", str(SOFTMAX_CE), "--grad", f"{path}:g"])
    assert result.exit_code == 0, result.output
    assert "matches the derivative" in " ".join(result.output.split())


# the child's messages as the user's code may forge them: each ends in exit 2, at the
# budget at the latest, and never runs code in the parent or crashes it
PIPE = (
    "import gc, io, json, os, struct, time, zipfile\nimport numpy as np\n"
    "from multiprocessing.connection import Connection\n"
    "def pipe():\n"
    "    return next(o for o in gc.get_objects() if isinstance(o, Connection) and o.writable)\n"
)
FORGED_MESSAGES = {
    # a frame begun and never finished, faulthandler's stop cancelled: the parent waited
    # in recv_bytes past the budget (a hang)
    "partial frame": (
        "import faulthandler\n"
        "def g(x, a):\n    faulthandler.cancel_dump_traceback_later()\n"
        "    os.write(pipe().fileno(), struct.pack('!i', 1000) + b'R')\n"
        "    time.sleep(30)\n    return x\n"
    ),
    # a length past any message of ours: exit 3 (MemoryError) before
    "huge length": (
        "def g(x, a):\n    os.write(pipe().fileno(), struct.pack('!i', -1) + struct.pack('!Q', 2**62))\n"
        "    os._exit(0)\n"
    ),
    # integer arrays: exit 3 (np.finfo of an int) before
    "integer returns": (
        "def g(x, a):\n    buf = io.BytesIO()\n"
        "    got = {'x': ['a0'] * 16}\n"
        "    np.savez(buf, meta=np.array(json.dumps({'framework': 'numpy', 'name': 'g', 'got': got})),"
        " a0=np.zeros(4, dtype=np.int8))\n"
        "    pipe().send_bytes(b'R' + buf.getvalue())\n    os._exit(0)\n"
    ),
    # a deflated member: a small message that expands to gigabytes in the parent
    "deflated member": (
        "def g(x, a):\n    buf = io.BytesIO()\n"
        "    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:\n"
        "        z.writestr('meta.npy', b'x' * 100000)\n"
        "    pipe().send_bytes(b'R' + buf.getvalue())\n    os._exit(0)\n"
    ),
    # an error's code 2.0 passed "in (2, 3)" and sys.exit(2.0) exits 1: "does not match"
    "float code": (
        "def g(x, a):\n    pipe().send_bytes(b'E' + json.dumps({'code': 2.0, 'text': 'x'}).encode())\n"
        "    os._exit(0)\n"
    ),
    "code 0": (
        "def g(x, a):\n    pipe().send_bytes(b'E' + json.dumps({'code': 0, 'text': 'ok'}).encode())\n"
        "    os._exit(0)\n"
    ),
}


@pytest.mark.parametrize("case", sorted(FORGED_MESSAGES))
def test_forged_messages_on_the_result_pipe_end_in_exit_2(tmp_path, case):
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "name: c\nsymbols:\n  x: {shape: [n]}\n  a: {}\ndims: {n: 4}\n"
        "objective: a * sum(x**2) / 2 + sum(sin(x))\nwrt: x\n"
    )
    grad = tmp_path / "forge.py"
    grad.write_text(PIPE + FORGED_MESSAGES[case])
    started = time.monotonic()
    result = CliRunner().invoke(main, ["check", str(spec), "--grad", f"{grad}:g", "--budget", "6"])
    assert result.exit_code == 2, result.output
    assert time.monotonic() - started < 25  # the budget held (6 s, and the grace)
    assert "Traceback" not in result.output
