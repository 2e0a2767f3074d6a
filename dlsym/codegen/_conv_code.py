"""Code for convolution and pooling (``dlsym.expr._conv``): rows of the operation table
(``_table.OPS`` includes ``CONV_ROWS``) and the helpers they call.

NumPy: the receptive fields as a strided view (``sliding_window_view``, every
``dilation``-th entry of a window) contracted with the kernel in one ``tensordot``, never
a Python loop over pixels. JAX: one ``lax.conv_general_dilated`` each (the kernel's
dilation as ``rhs_dilation``), the transposed convolution with ``lhs_dilation`` and the
kernel's correlation with the batch and channel axes swapped, as XLA computes its own
convolution gradients. Pooling in both: a window's entries as one strided slice per
offset in the window (a loop over the ``k x k`` offsets, never over pixels), added back
by padding each slice into place (by one reshape where windows sit side by side);
``jnp.max`` over the stacked offsets splits a tie's gradient equally, as the kink
convention says, where ``lax.reduce_window`` (and PyTorch) give all of it to one entry.
(Elementwise operations on the ``[..., h, w]`` slices run several times faster under
XLA on CPU than reductions over a ``[..., h, k, w, k]`` stack of them.)

A JAX helper imports ``lax`` inside itself: a spec may take the name ``jax``, and the
generated module then binds JAX under another name.
"""

from __future__ import annotations

# --- NumPy ---------------------------------------------------------------------------

WINDOWS = """def _windows(x, size, stride, padding, dilation=1):
    # the receptive field of each output entry: [N, C, *out, *size], a strided view of
    # the zero-padded input (windows of the kernel's span, every dilation-th entry)
    nd = len(size)
    lead = x.ndim - nd
    x = XP.pad(x, [(0, 0)] * lead + [(padding, padding)] * nd)
    span = tuple(dilation * (m - 1) + 1 for m in size)
    w = XP.lib.stride_tricks.sliding_window_view(x, span, axis=tuple(range(lead, x.ndim)))
    every = (slice(None, None, stride),) * nd + (slice(None, None, dilation),) * nd
    return w[(slice(None),) * lead + every]
"""
CONV = """def _conv(x, k, stride=1, padding=0, dilation=1):
    # PyTorch's conv1d / conv2d: sum over channels and kernel offsets in one tensordot
    nd = k.ndim - 2
    w = _windows(x, k.shape[2:], stride, padding, dilation)
    out = XP.tensordot(w, k, axes=([1] + list(range(2 + nd, 2 + 2 * nd)), list(range(1, 2 + nd))))
    return XP.moveaxis(out, -1, 1)
"""
CONV_KERNEL_GRAD = """def _conv_kernel_grad(x, g, size, stride=1, padding=0, dilation=1):
    # dK[o, c, *i] = sum over the batch and output positions of g[b, o, *h] x[b, c, s*h + d*i - p]
    nd = g.ndim - 2
    w = _windows(x, size, stride, padding, dilation)
    axes = [0] + list(range(2, 2 + nd))
    return XP.tensordot(g, w, axes=(axes, axes))
"""
CONV_INPUT_GRAD = """def _conv_input_grad(g, k, size, stride=1, padding=0, dilation=1):
    # the transposed convolution: g dilated by the stride, correlated in full with the
    # flipped kernel (channels swapped, its taps dilation apart), cropped to the input
    # (its padding, and the rows past the last window, which got nothing)
    nd = k.ndim - 2
    spans = [dilation * (m - 1) + 1 for m in k.shape[2:]]
    n, o = g.shape[:2]
    dilated = XP.zeros((n, o) + tuple((m - 1) * stride + 1 for m in g.shape[2:]), dtype=g.dtype)
    dilated[(slice(None),) * 2 + (slice(None, None, stride),) * nd] = g
    dilated = XP.pad(dilated, [(0, 0)] * 2 + [(m - 1, m - 1) for m in spans])
    flipped = XP.swapaxes(XP.flip(k, axis=tuple(range(2, 2 + nd))), 0, 1)
    full = _conv(dilated, flipped, 1, 0, dilation)
    room = [(0, 0)] * 2 + [(0, m + 2 * padding - f) for m, f in zip(size, full.shape[2:])]
    full = XP.pad(full, room)
    return full[(slice(None),) * 2 + tuple(slice(padding, padding + m) for m in size)]
"""

# --- JAX ---------------------------------------------------------------------------------

CONV_SPECS = """def _conv_specs(nd, lhs, rhs, out):
    # conv_general_dilated's dimension numbers: these letters then nd spatial ones
    spatial = "DHW"[3 - nd:]
    return (lhs + spatial, rhs + spatial, out + spatial)
"""
CONV_LAX = """def _conv_lax(x, k, stride=1, padding=0, dilation=1):
    from jax import lax
    nd = k.ndim - 2
    return lax.conv_general_dilated(
        x, k, (stride,) * nd, [(padding, padding)] * nd, rhs_dilation=(dilation,) * nd,
        dimension_numbers=_conv_specs(nd, "NC", "OI", "NC"),
    )
"""
CONV_INPUT_GRAD_LAX = """def _conv_input_grad_lax(g, k, size, stride=1, padding=0, dilation=1):
    # the transposed convolution: g dilated by the stride (lhs_dilation), padded so the
    # result has the input's size, with the flipped kernel read as [in, out], its taps
    # dilation apart (rhs_dilation); a negative padding crops
    from jax import lax
    nd = k.ndim - 2
    pads = [
        (dilation * (kk - 1) - padding, n + padding - 1 - (m - 1) * stride)
        for kk, n, m in zip(k.shape[2:], size, g.shape[2:])
    ]
    flipped = XP.flip(k, axis=tuple(range(2, 2 + nd)))
    return lax.conv_general_dilated(
        g, flipped, (1,) * nd, pads, lhs_dilation=(stride,) * nd,
        rhs_dilation=(dilation,) * nd, dimension_numbers=_conv_specs(nd, "NC", "IO", "NC"),
    )
"""
CONV_KERNEL_GRAD_LAX = """def _conv_kernel_grad_lax(x, g, size, stride=1, padding=0, dilation=1):
    # the input correlated with g dilated by the stride (rhs_dilation), output entries
    # dilation apart (the window stride), the batch summed over as the contracted
    # feature axis and the channels as the batch
    from jax import lax
    nd = g.ndim - 2
    pads = [
        (padding, dilation * (kk - 1) + 1 + (m - 1) * stride - n - padding)
        for kk, n, m in zip(size, x.shape[2:], g.shape[2:])
    ]
    return lax.conv_general_dilated(
        x, g, (dilation,) * nd, pads, rhs_dilation=(stride,) * nd,
        dimension_numbers=_conv_specs(nd, "CN", "IO", "CN"),
    )
"""

# --- pooling (both backends) -------------------------------------------------------------

POOL_SLICES = """def _pool_slices(x, k, stride=None, padding=0, fill=0.0):
    # the k x k windows, stride apart in the input padded with fill, as one [..., h, w]
    # array per offset (i, j) in the window, row by row: k * k strided slices (a loop
    # over the offsets, never over pixels); the rows and columns past the last whole
    # window are dropped (PyTorch's floor mode)
    stride = k if stride is None else stride
    if padding:
        x = XP.pad(x, [(0, 0)] * (x.ndim - 2) + [(padding, padding)] * 2, constant_values=fill)
    h, w = ((n - k) // stride + 1 for n in x.shape[-2:])
    rows, cols = stride * (h - 1) + 1, stride * (w - 1) + 1
    return [x[..., i : i + rows : stride, j : j + cols : stride] for i in range(k) for j in range(k)]
"""
POOL_BACK = """def _pool_back(parts, k, size, stride=None, padding=0):
    # the adjoint of _pool_slices: each offset's [..., h, w] added back where it was read
    # (overlapping windows add up) into zeros [..., *size], the padding cropped
    stride = k if stride is None else stride
    h, w = parts[0].shape[-2:]
    lead = [(0, 0)] * (parts[0].ndim - 2)
    rows, cols = size[0] + 2 * padding, size[1] + 2 * padding
    if stride == k:  # side by side: one reshape
        out = XP.stack([XP.stack(parts[i * k : (i + 1) * k], -1) for i in range(k)], -3)
        out = out.reshape(out.shape[:-4] + (h * k, w * k))
        out = XP.pad(out, lead + [(0, rows - h * k), (0, cols - w * k)])
    else:
        out = 0
        for n, part in enumerate(parts):
            out = out + _spaced(part, stride, n // k, n % k, rows, cols)
    return out[..., padding : padding + size[0], padding : padding + size[1]]
"""
SPACED = """def _spaced(c, stride, i, j, rows, cols):
    # c[..., h, w] at rows i + stride*h and columns j + stride*w of zeros [..., rows, cols]
    h, w = c.shape[-2:]
    lead = [(0, 0)] * (c.ndim - 2)
    gaps = lead + [(0, 0), (0, stride - 1), (0, 0), (0, stride - 1)]
    c = XP.pad(c[..., :, None, :, None], gaps).reshape(c.shape[:-2] + (h * stride, w * stride))
    c = c[..., : rows - i, : cols - j]
    return XP.pad(c, lead + [(i, rows - i - c.shape[-2]), (j, cols - j - c.shape[-1])])
"""
MAX_POOL = """def _max_pool2d(x, k, stride=None, padding=0):
    # jnp.max over each window splits a tie's gradient equally (lax.reduce_window's does
    # not); the padding is -inf, which never wins
    return XP.max(XP.stack(_pool_slices(x, k, stride, padding, -XP.inf), -1), axis=-1)
"""
AVG_POOL = """def _avg_pool2d(x, k, stride=None, padding=0):
    # the padding's zeros counted: the divisor is k * k (PyTorch's count_include_pad)
    return XP.mean(XP.stack(_pool_slices(x, k, stride, padding), -1), axis=-1)
"""
MAX_SHARES = """def _max_shares(x, k, stride=None, padding=0):
    # 1/c on each of the c largest entries of each window, 0 on the others, one
    # [..., h, w] array per offset in the window
    parts = _pool_slices(x, k, stride, padding, -XP.inf)
    top = XP.max(XP.stack(parts, -1), axis=-1)
    hits = [(part == top) * 1.0 for part in parts]
    count = sum(hits)
    return [hit / count for hit in hits]
"""
MAX_POOL_MASK = """def _max_pool2d_mask(x, k, stride=None, padding=0):
    # windows that do not overlap: each entry's share of its window's maximum
    return _pool_back(_max_shares(x, k, stride, padding), k, x.shape[-2:], stride, padding)
"""
MAX_POOL_INPUT_GRAD = """def _max_pool2d_input_grad(g, x, k, stride=None, padding=0):
    # each window's g to its largest entries, added up over the windows an entry wins
    shares = [share * g for share in _max_shares(x, k, stride, padding)]
    return _pool_back(shares, k, x.shape[-2:], stride, padding)
"""
MAX_POOL_GATHER = """def _max_pool2d_gather(v, x, k, stride=None, padding=0):
    # each window's v at its largest entries of x (their mean where they tie)
    parts = _pool_slices(v, k, stride, padding)
    return sum(share * part for share, part in zip(_max_shares(x, k, stride, padding), parts))
"""
UNPOOL = """def _unpool2d(g, k, size, stride=None, padding=0):
    # each entry added over its k x k window
    return _pool_back([g] * (k * k), k, size, stride, padding)
"""
UNPOOL_LAX = """def _unpool2d_lax(g, k, size, stride=None, padding=0):
    # the transpose of sum pooling as XLA computes it: g spaced stride apart (interior
    # padding), then summed over k x k windows by one reduce_window, which reads g once
    # (XLA on CPU recomputes an elementwise g, cos(Z), for each of k * k pads)
    from jax import lax
    stride = k if stride is None else stride
    zero = XP.zeros((), g.dtype)
    spaced = [
        (k - 1 - padding, n + padding - (m - 1) * stride - 1, stride - 1)
        for n, m in zip(size, g.shape[-2:])
    ]
    g = lax.pad(g, zero, [(0, 0, 0)] * (g.ndim - 2) + spaced)
    return lax.reduce_window(g, zero, lax.add, (1,) * (g.ndim - 2) + (k, k), (1,) * g.ndim, "VALID")
"""
FLOOR = """def _floor(x):
    # a size such as floor((L + 2p - k)/s) + 1, the output length of a strided
    # convolution: a whole number, computed from the dims (Python numbers)
    return int(x // 1)
"""

# name -> (NumPy code, JAX code), each a helper below
CONV_ROWS = {
    "conv1d": ("_conv", "_conv_lax"),
    "conv2d": ("_conv", "_conv_lax"),
    "conv1d_input_grad": ("_conv_input_grad", "_conv_input_grad_lax"),
    "conv2d_input_grad": ("_conv_input_grad", "_conv_input_grad_lax"),
    "conv1d_kernel_grad": ("_conv_kernel_grad", "_conv_kernel_grad_lax"),
    "conv2d_kernel_grad": ("_conv_kernel_grad", "_conv_kernel_grad_lax"),
    "max_pool2d": ("_max_pool2d", "_max_pool2d"),
    "avg_pool2d": ("_avg_pool2d", "_avg_pool2d"),
    "max_pool2d_mask": ("_max_pool2d_mask", "_max_pool2d_mask"),
    "unpool2d": ("_unpool2d", "_unpool2d_lax"),
    "max_pool2d_input_grad": ("_max_pool2d_input_grad", "_max_pool2d_input_grad"),
    "max_pool2d_gather": ("_max_pool2d_gather", "_max_pool2d_gather"),
    "floor": ("_floor", "_floor"),
}
CONV_HELPERS = (
    WINDOWS,
    CONV,
    CONV_KERNEL_GRAD,
    CONV_INPUT_GRAD,
    CONV_SPECS,
    CONV_LAX,
    CONV_INPUT_GRAD_LAX,
    CONV_KERNEL_GRAD_LAX,
    POOL_SLICES,
    POOL_BACK,
    SPACED,
    MAX_POOL,
    AVG_POOL,
    MAX_SHARES,
    MAX_POOL_MASK,
    MAX_POOL_INPUT_GRAD,
    MAX_POOL_GATHER,
    UNPOOL,
    UNPOOL_LAX,
    FLOOR,
)
