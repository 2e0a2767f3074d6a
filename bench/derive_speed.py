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


def cli_seconds(spec: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "derive", str(spec), "--no-verify"],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def derive_seconds(dims: dict, repeat: int) -> float:
    import dlsym
    from dlsym._yamlfile import load_file
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
    table = Table(title="dlsym derive --no-verify (median wall time, fresh interpreter)")
    table.add_column("spec")
    table.add_column("seconds", justify="right")
    for spec in sorted((ROOT / "derivations").glob("*.yaml")):
        s = cli_seconds(spec, args.repeat)
        rows.append({"spec": spec.stem, "seconds": s})
        table.add_row(spec.stem, f"{s:.2f}")
    console.print(table)
    small = derive_seconds({"m": 6, "n": 3}, args.repeat)
    big = derive_seconds({"m": 2000, "n": 1000}, args.repeat)
    sizes = Table(title="logistic regression: derivation time against dims (in-process)")
    for col in ("dims", "seconds", "ratio"):
        sizes.add_column(col)
    sizes.add_row("m=6, n=3", f"{small:.3f}", "1.00")
    sizes.add_row("m=2000, n=1000", f"{big:.3f}", f"{big / small:.2f}")
    console.print(sizes)
    out = {"machine": platform.platform(), "python": platform.python_version(),
           "cli": rows, "logistic_dims": {"small": small, "large": big, "ratio": big / small}}
    path = ROOT / "bench" / "results" / "derive_speed.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
