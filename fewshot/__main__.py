"""Command line: ``python -m fewshot compare [--json]`` regenerates chapter 5's table.

Progress bars and notes go to stderr, so ``--json`` output on stdout can be piped to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from .compare import DEFAULT_DIMS, DEFAULT_METHODS, compare, format_table
from .config import setup
from .train import METHODS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fewshot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="train every method at the current profile and tabulate them")
    cmp.add_argument("--json", action="store_true", help="print a JSON list, one object per model")
    cmp.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    cmp.add_argument("--dims", nargs="+", type=int, default=list(DEFAULT_DIMS))
    cmp.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--no-cache", action="store_true", help="train even if a cached model exists")
    args = parser.parse_args(argv)
    if any(d < 1 for d in args.dims):
        parser.error(f"--dims must be positive, got {args.dims}")
    with contextlib.redirect_stdout(sys.stderr):
        setup(args.seed)
        rows = compare(args.methods, args.dims, seed=args.seed, epochs=args.epochs,
                       cache=not args.no_cache)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
