"""Wall time of `dlsym derive --no-verify` per catalog spec (a fresh interpreter each
run, so interpreter start and imports are included), and derivation time of logistic
regression at small and large dims, side by side in one run.

    python bench/derive_speed.py [--repeat 5]

Prints a rich table and writes bench/results/derive_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _seconds(argv: list) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


def cli_rounds(specs: list, repeat: int) -> tuple[dict, dict, float]:
    """Median wall times, measured in interleaved rounds (the SymPy import floor, then
    every spec) so that drift in this shared machine's speed hits all of them alike."""
    cli = [sys.executable, str(ROOT / "cli.py"), "derive"]
    fast = {s: [] for s in specs}
    verified = {s: [] for s in specs}
    floor = []
    for r in range(repeat):
        floor.append(_seconds([sys.executable, "-c", "import sympy"]))
        for s in specs:
            fast[s].append(_seconds(cli + [str(s), "--no-verify"]))
            if r < max(1, repeat // 2):
                verified[s].append(_seconds(cli + [str(s)]))
    med = statistics.median
    return (
        {s: med(v) for s, v in fast.items()},
        {s: med(v) for s, v in verified.items()},
        med(floor),
    )


def derive_seconds(dims: dict, repeat: int) -> float:
    import dlsym
    from dlsym.spec._yamlfile import load_file

    data = dict(load_file(ROOT / "derivations" / "logistic_regression.yaml").data, dims=dims)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        dlsym.derive(data)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    console = Console()
    rows = []
    table = Table(title="dlsym derive (median wall time, fresh interpreter)")
    for col in ("spec", "--no-verify, s", "with verification, s", "verification's cost, s"):
        table.add_column(col, justify="right" if col != "spec" else "left")
    specs = sorted((ROOT / "derivations").glob("*.yaml"))
    fast, verified, floor = cli_rounds(specs, args.repeat)
    for spec in specs:
        s, v = fast[spec], verified[spec]
        rows.append({"spec": spec.stem, "seconds": s, "verified_seconds": v})
        table.add_row(spec.stem, f"{s:.2f}", f"{v:.2f}", f"{v - s:.2f}")
    table.caption = f"for reference, `python -c 'import sympy'` takes {floor:.2f} s in these rounds"
    console.print(table)
    small = derive_seconds({"m": 6, "n": 3}, args.repeat)
    big = derive_seconds({"m": 2000, "n": 1000}, args.repeat)
    sizes = Table(title="logistic regression: derivation time against dims (in-process)")
    for col in ("dims", "seconds", "ratio"):
        sizes.add_column(col)
    sizes.add_row("m=6, n=3", f"{small:.3f}", "1.00")
    sizes.add_row("m=2000, n=1000", f"{big:.3f}", f"{big / small:.2f}")
    console.print(sizes)
    out = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "import_sympy_seconds": floor,
        "cli": rows,
        "logistic_dims": {"small": small, "large": big, "ratio": big / small},
    }
    path = ROOT / "bench" / "results" / "derive_speed.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
