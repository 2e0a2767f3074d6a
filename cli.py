"""Run dlsym from a checkout: ``python cli.py derive derivations/ridge_regression.yaml``."""

from dlsym._cli import run

if __name__ == "__main__":
    run()
