"""``dlsym schema``: a JSON Schema of the spec format (docs/spec.md), for editors: with it
a YAML editor completes the keys, the derive kinds and the domains, and marks an unknown
key or a misspelt kind while the spec is written.

It is built from the tables the validation itself uses (the keys of each section, the
domains, the kinds), so it follows them; the validation stays the authority (an
expression's meaning, a shape's dims, a kind that needs an objective are beyond a
schema), and ``tests/test_install.py`` checks every catalog spec against it.
"""

from __future__ import annotations

from dlsym.sections.constrained._section import KINDS as CONSTRAINED_KINDS
from dlsym.sections.info._section import KINDS as INFO_KINDS
from dlsym.sections.lqr._section import KINDS as LQR_KINDS
from dlsym.sections.lqr._section import LQR_KEYS
from dlsym.sections.mdp._model import KINDS as MDP_KINDS
from dlsym.sections.mdp._model import MDP_KEYS
from dlsym.spec._spec import CALCULUS_KINDS, RANDOM_KINDS
from dlsym.spec._symbols import DOMAINS

EXPRESSION = {
    "type": ["string", "number"],
    "description": "An expression in the language of docs/spec.md (a safe subset of NumPy).",
}
NAMES = {"type": "object", "propertyNames": {"pattern": "^[A-Za-z][A-Za-z0-9_]*$"}}


def _one_or_many(item: dict) -> dict:
    return {"anyOf": [item, {"type": "array", "items": item}]}


def schema() -> dict:
    """The JSON Schema (draft 2020-12) of a spec."""
    kinds = list(
        dict.fromkeys(
            [*CALCULUS_KINDS, *RANDOM_KINDS, *CONSTRAINED_KINDS, *MDP_KINDS, *LQR_KINDS]
            + [*INFO_KINDS]
        )
    )
    symbol = {
        "type": ["object", "null"],
        "properties": {
            "shape": {
                "type": "array",
                "items": {"type": ["string", "integer"]},
                "description": "[] a scalar, [n] a vector, [m, n] a matrix, any rank: dims or integers",
            },
            "domain": {
                "anyOf": [
                    {"enum": list(DOMAINS)},
                    {
                        "type": "object",
                        "properties": {"index": {"type": ["string", "integer"]}},
                        "required": ["index"],
                        "additionalProperties": False,
                        "description": "integer labels 0..k-1 (class labels, token ids)",
                    },
                ]
            },
            "latex": {"type": "string", "description": "how the symbol is typeset"},
            "distribution": {
                "type": ["string", "object"],
                "description": "normal(mean, var), uniform(low, high), bernoulli(p), "
                "{normal: {mean, cov}}; an index: uniform or categorical(p)",
            },
        },
        "additionalProperties": False,
    }
    verify = {
        "type": "object",
        "properties": {
            "points": {"type": "integer", "minimum": 1},
            "seed": {"type": "integer", "minimum": 0},
            "rtol": {"type": "number", "exclusiveMinimum": 0},
            "atol": {"type": "number", "minimum": 0},
            "dtype": {"enum": ["float64", "float32"]},
            "device": {"enum": ["cpu", "gpu"]},
        },
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dlsym spec",
        "description": "One derivation for `dlsym derive`: see docs/spec.md.",
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "symbols": {**NAMES, "additionalProperties": symbol},
            "dims": {**NAMES, "additionalProperties": {"type": "integer", "minimum": 1}},
            "define": {
                **NAMES,
                "additionalProperties": {
                    "anyOf": [
                        EXPRESSION,
                        {
                            "type": "object",
                            "properties": {"expr": EXPRESSION, "latex": {"type": "string"}},
                            "required": ["expr"],
                            "additionalProperties": False,
                        },
                    ]
                },
            },
            "objective": EXPRESSION,
            "output": EXPRESSION,
            "wrt": _one_or_many({"type": "string"}),
            "derive": _one_or_many({"enum": kinds}),
            "verify": verify,
            "minimize": EXPRESSION,
            "maximize": EXPRESSION,
            "subject_to": {"type": "array", "items": EXPRESSION},
            "distributions": {"type": "object"},
            "quantities": {"type": "array", "items": {"type": "string"}},
            "identities": {"type": "array", "items": {"type": "string"}},
            "units": {"enum": ["nats", "bits"]},
            "mdp": {
                "type": "object",
                "properties": {k: {} for k in MDP_KEYS},
                "additionalProperties": False,
            },
            "lqr": {
                "type": "object",
                "properties": {k: {} for k in LQR_KEYS},
                "additionalProperties": False,
            },
            "recurrence": {
                "type": "object",
                "properties": {
                    "index": {"type": "string"},
                    "state": {**NAMES, "additionalProperties": EXPRESSION},
                    "update": {**NAMES, "additionalProperties": EXPRESSION},
                    "loss": EXPRESSION,
                    "final": EXPRESSION,
                },
                "required": ["index", "state", "update"],
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }
