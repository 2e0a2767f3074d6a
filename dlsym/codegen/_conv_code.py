"""Code for convolution and pooling (``dlsym.expr._conv``): rows of the operation table
(``_table.OPS`` includes ``CONV_ROWS``) and the helpers they call.

NumPy: the receptive fields as a strided view (``sliding_window_view``, every
``dilation``-th entry of a window) contracted with the kernel in one ``tensordot``, never
a Python loop over pixels. JAX: one ``lax.conv_general_dilated`` each (the kernel's
dilation as ``rhs_dilation``), the transposed convolution with ``lhs_dilation`` and the
kernel's correlation with the batch and channel axes swapped, as XLA computes its own
convolution gradients. Pooling in both: windows by reshaping; ``jnp.max`` over a
window splits a tie's gradient equally, as the kink convention says, where
``lax.reduce_window`` (and PyTorch) give all of it to one entry.

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

POOL_WINDOWS = """def _pool_windows(x, k):
    # [..., H, W] -> [..., H // k, k, W // k, k]; the rows and columns past the last whole
    # window are dropped (PyTorch's floor mode)
    h, w = x.shape[-2] // k, x.shape[-1] // k
    x = x[..., : h * k, : w * k]
    return x.reshape(x.shape[:-2] + (h, k, w, k))
"""
POOL_BACK = """def _pool_back(windows, size):
    # [..., h, k, w, k] -> [..., H, W]: zeros past the last whole window
    h, k, w = windows.shape[-4:-1]
    out = windows.reshape(windows.shape[:-4] + (h * k, w * k))
    lead = [(0, 0)] * (out.ndim - 2)
    return XP.pad(out, lead + [(0, size[0] - h * k), (0, size[1] - w * k)])
"""
MAX_POOL = """def _max_pool2d(x, k):
    # jnp.max over each window splits a tie's gradient equally (lax.reduce_window's does not)
    return XP.max(_pool_windows(x, k), axis=(-3, -1))
"""
AVG_POOL = """def _avg_pool2d(x, k):
    return XP.mean(_pool_windows(x, k), axis=(-3, -1))
"""
MAX_POOL_MASK = """def _max_pool2d_mask(x, k):
    # 1/c on each of the c largest entries of each window, 0 elsewhere
    w = _pool_windows(x, k)
    hit = (w == XP.max(w, axis=(-3, -1), keepdims=True)) * 1.0
    return _pool_back(hit / XP.sum(hit, axis=(-3, -1), keepdims=True), x.shape[-2:])
"""
UNPOOL = """def _unpool2d(g, k, size):
    # each entry copied over its k x k window
    w = XP.broadcast_to(g[..., :, None, :, None], g.shape[:-2] + (g.shape[-2], k, g.shape[-1], k))
    return _pool_back(w, size)
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
    "unpool2d": ("_unpool2d", "_unpool2d"),
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
    POOL_WINDOWS,
    POOL_BACK,
    MAX_POOL,
    AVG_POOL,
    MAX_POOL_MASK,
    UNPOOL,
    FLOOR,
)
