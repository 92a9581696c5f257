"""`python -m benchmarks run [--quick] [--only NAME ...]`: every benchmark, tables on stdout,
JSON in benchmarks/results/. `--quick` is a smoke run on slices (CI runs it, without timing
assertions). `--only ideas` measures the speed ideas vaelab kept or left out; `--only burda`
trains and evaluates configs/benchmarks/burda-vae.yaml (an hour; `python -m benchmarks.burda`
runs any recipe)."""

from __future__ import annotations

import argparse
import importlib
import os

BENCHMARKS = ["train_speed", "eval_speed", "scaling", "memory"]
EXTRA = ["ideas", "burda"]  # ideas: speed ideas measured against vaelab's choices (torch.compile needs a C++
# compiler); burda: the 60-minute burda-vae recipe (benchmarks/burda.py; --quick: its smoke run)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmarks")
    run.add_argument("--quick", action="store_true", help="small slices, one round: checks they execute")
    run.add_argument("--only", nargs="+", choices=BENCHMARKS + EXTRA, default=None,
                     help=f"run these only (default: {' '.join(BENCHMARKS)}; also: {' '.join(EXTRA)})")
    run.add_argument("--data-dir", default=None, help="MNIST location (default: $VAELAB_DATA_DIR, cache)")
    run.add_argument("--results-dir", default=None, help="write the JSON results here (default: benchmarks/results)")
    args = parser.parse_args()
    if args.results_dir:  # read by benchmarks.common when the benchmarks are imported below
        os.environ["VAELAB_BENCHMARK_RESULTS"] = args.results_dir
    for name in args.only or BENCHMARKS:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.{name}":
                print(f"\n({name}: not available)")
                continue
            raise
        print(f"\n=== {name} ===")
        module.run(quick=args.quick, data_dir=args.data_dir)


if __name__ == "__main__":
    main()
