"""Command line: ``python -m fewshot compare [--json]`` regenerates the comparison chapter's table,
``python -m fewshot oneshot [--json]`` the one-shot character chapter's,
``python -m fewshot verify [--json] [--data characters|mnist]`` the enrol-and-verify chapter's;
``python -m fewshot export --out DIR`` writes the browser chapter's ONNX model and gallery JSON;
``python -m fewshot plan [--json]`` estimates each chapter's training time at the current size here.

Progress bars and notes go to stderr, so ``--json`` output on stdout can be piped to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from . import export
from .cache import read_ledger
from .characters import characters_source
from .compare import DEFAULT_DIMS, DEFAULT_METHODS, compare, format_table
from .oneshot import CHARACTER_METHODS, oneshot, oneshot_markdown
from .plan import format_plan, plan_json, run_plan
from .protocol import VERIFY_DATA, VERIFY_METHODS, format_verification_table, verification_table
from .recipes import METHODS
from .run import setup
from .tables import to_json


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not ≥ 1")
    return value


def seed_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fewshot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="train every method at the current profile and tabulate them")
    cmp.add_argument("--json", action="store_true", help="print a JSON list, one object per model")
    cmp.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    cmp.add_argument("--dims", nargs="+", type=positive_int, default=list(DEFAULT_DIMS))
    cmp.add_argument("--epochs", type=positive_int, default=None, help="override the profile's epochs")
    cmp.add_argument("--seed", type=seed_int, default=0)
    cmp.add_argument("--no-cache", action="store_true", help="train even if a cached model exists")
    one = sub.add_parser("oneshot", help="one-shot character recognition (chapter 8's table)")
    one.add_argument("--json", action="store_true", help="print a JSON list, one object per method")
    one.add_argument("--methods", nargs="+", default=list(CHARACTER_METHODS),
                     choices=list(CHARACTER_METHODS), help="character models to train (and pixels)")
    one.add_argument("--epochs", type=positive_int, default=None, help="override the profile's epochs")
    one.add_argument("--seed", type=seed_int, default=0)
    ver = sub.add_parser("verify", help="verification and open-set rates on unseen identities "
                                        "(chapter 9's table)")
    ver.add_argument("--json", action="store_true", help="print a JSON list, one object per method")
    ver.add_argument("--data", choices=VERIFY_DATA, default="characters")
    ver.add_argument("--methods", nargs="+", default=None,
                     choices=sorted({m for ms in VERIFY_METHODS.values() for m in ms}),
                     help="methods to measure (default: all of the data's; pixels needs no training)")
    ver.add_argument("--epochs", type=positive_int, default=None, help="override the profile's epochs")
    ver.add_argument("--seed", type=seed_int, default=0)
    exp = sub.add_parser("export", help="export chapter 9's character system: the ONNX model, the "
                                        "gallery JSON with calibrated thresholds (chapter 11)")
    exp.add_argument("--out", required=True, help="folder to write into (created if missing)")
    exp.add_argument("--method", default=None,
                     choices=[m for m in VERIFY_METHODS["characters"] if m != "pixels"],
                     help="method to deploy (default: the lowest EER on the calibration characters)")
    exp.add_argument("--seed", type=seed_int, default=0)
    pln = sub.add_parser("plan", help="estimate each chapter's training time at the current size "
                                      "on this machine (a probe of a few seconds)")
    pln.add_argument("--json", action="store_true", help="print JSON: the rate and each chapter")
    pln.add_argument("--seed", type=seed_int, default=0)
    pln.add_argument("--ledger", default=None, help="a run's FEWSHOT_LEDGER file: plan as if the "
                     "cache were empty and set each chapter's measured training time beside it")
    args = parser.parse_args(argv)
    if args.command == "plan":
        ledger = read_ledger(args.ledger) if args.ledger else None
        with contextlib.redirect_stdout(sys.stderr):
            run = setup(args.seed)
            plans, rate = run_plan(run, fresh=ledger is not None)
        print(plan_json(plans, rate) if args.json else format_plan(plans, rate, run.profile, ledger))
        return 0
    if args.command == "export":
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            exp.error(f"--out {args.out}: cannot create the folder ({exc.strerror or exc})")
        with contextlib.redirect_stdout(sys.stderr):
            run = setup(args.seed)
            print(f"Characters: {characters_source()}")
            build = export.build_demo(run, out, method=args.method)
        print(f"deployed {build.method} ({build.metric}): calibration EER "
              f"{100 * build.eers[build.method]:.1f}%, torch vs onnxruntime max |diff| {build.parity:.1e}")
        for point in build.operating_points:
            print(f"  FAR target {point['far']:g}: threshold {point['threshold']:.4f}, test TAR "
                  f"{100 * point['test_tar']:.1f}% at test FAR {100 * point['test_far']:.2f}%")
        for name, path in build.files.items():
            print(f"  {name:<8} {path} ({path.stat().st_size / 1e3:,.0f} kB)")
        return 0
    if args.command == "verify":
        bad = [m for m in args.methods or () if m not in VERIFY_METHODS[args.data]]
        if bad:
            ver.error(f"--methods {' '.join(bad)}: not available with --data {args.data} "
                      f"(choose from {', '.join(VERIFY_METHODS[args.data])})")
        with contextlib.redirect_stdout(sys.stderr):
            run = setup(args.seed).with_epochs(args.epochs)
            if args.data == "characters":
                print(f"Characters: {characters_source()}")
            rows = verification_table(run, args.data, methods=args.methods)
        print(to_json(rows) if args.json else format_verification_table(rows))
        return 0
    if args.command == "oneshot":
        with contextlib.redirect_stdout(sys.stderr):
            run = setup(args.seed).with_epochs(args.epochs)
            print(f"Characters: {characters_source()}")
            rows = oneshot(run, args.methods)
        print(to_json(rows) if args.json else oneshot_markdown(rows))
        return 0
    with contextlib.redirect_stdout(sys.stderr):
        run = setup(args.seed).with_epochs(args.epochs)
        rows = compare(run, args.methods, args.dims, cache=not args.no_cache)
    print(to_json(rows) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
