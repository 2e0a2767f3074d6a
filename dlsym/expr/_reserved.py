"""Names that generated code resolves from its own namespace, so a symbol, dim or define
may not take them (the code generator checks that its namespace stays inside this set)."""

RESERVED = frozenset({
    'Abs', 'CoordSum', 'E', 'atan', 'cos', 'det', 'diag', 'entry',
    'erf', 'exp', 'expm1', 'eye', 'inv', 'log', 'log1p', 'log_softmax',
    'logdet', 'logsumexp', 'matmul', 'maximum', 'maxmask', 'norm', 'ones', 'outer',
    'pi', 'relu', 'sigmoid', 'sign', 'sin', 'softmax', 'softplus', 'sqrt',
    'step', 'tanh', 'tmax', 'tmean', 'tmin', 'trace', 'transpose', 'tsum',
    'unit',
})
