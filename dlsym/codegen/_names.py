"""Fresh names: the names generated code reads never capture the user's.

A generated function takes the spec's symbols as parameters under the user's names and
binds the dims and defines as locals under theirs, so a spec may call a symbol ``np``,
``jax``, ``objective`` or ``g``. Every other name such a function reads (the array
modules, the module's other functions, the locals of ``--custom-vjp``'s backward) goes
through ``Names``: it keeps its plain name unless the user took it, and is otherwise
prefixed with ``_`` until it is free. A spec's names start with a letter
(``dlsym.expr._names``), so the ``_`` helpers (``_sigmoid``) and temporaries (``_t0``)
are free already; without a collision the code reads as it always did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlsym.codegen._table import HELPERS, IMPORTS, MODULE, helpers


@dataclass(frozen=True)
class Names:
    taken: frozenset = frozenset()  # the user's names: parameters and locals of the code

    def __call__(self, name: str) -> str:
        """The name the code uses for the internal ``name``."""
        while name in self.taken:
            name = "_" + name
        return name

    def code(self, text: str) -> str:
        """``text``, our table's code (never user text), with its modules renamed."""
        return MODULE.sub(lambda m: self(m.group(1)) + ".", text)

    def modules_in(self, code: str) -> set:
        """The modules of ``IMPORTS`` that ``code`` reads, under their names here."""
        return {m for m in IMPORTS if re.search(rf"(?<![\w.]){re.escape(self(m))}\.", code)}

    def imports(self, target: str, code: str) -> list[str]:
        """The import lines ``code`` needs, binding each module to its name here: NumPy
        always for the NumPy target (and SciPy where it calls it), JAX's for the JAX
        target."""
        used = {"jax", "jnp"} if target == "jax" else {"np"} | (self.modules_in(code) & {"scipy"})
        lines = []
        for name, (module, submodules) in IMPORTS.items():
            if name not in used:
                continue
            alias = self(name)
            if alias != module:
                lines.append(f"import {module} as {alias}")
            elif not submodules:  # `import a.b` binds a already
                lines.append(f"import {module}")
            lines += [f"import {sub}" for sub in submodules]
        return lines

    def helpers(self, target: str, code: str, also=()) -> list[str]:
        """The helpers ``code`` calls (and ``also``), reading the array module here."""
        return helpers(code, also, self("np" if target == "numpy" else "jnp"))


# A renamed module never lands on a helper: '_' + a module's name is no helper's name
assert not {"_" + m for m in IMPORTS} & set(HELPERS)
