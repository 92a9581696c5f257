"""Peak resident memory (RSS) of a real `vaelab train` run on MNIST and of evaluating it,
each in a fresh child process (``getrusage(RUSAGE_CHILDREN).ru_maxrss``).

    python -m benchmarks.memory [--quick] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile

from benchmarks.common import table, write_json


def peak_rss_mib(argv: list[str], env: dict) -> tuple[float, int]:
    """Run ``argv`` in a child; its peak RSS in MiB and exit status. Children run one at a time,
    so ru_maxrss of RUSAGE_CHILDREN after each is the largest so far: run the larger last."""
    status = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, status


def run(quick: bool = False, data_dir=None) -> dict:
    env = dict(os.environ)
    if data_dir:
        env["VAELAB_DATA_DIR"] = str(data_dir)
    out = tempfile.mkdtemp()
    vaelab = [sys.executable, "-m", "vaelab"]
    size = ["--train-examples", "2000", "--eval-examples", "1000"] if quick else []
    baseline, _ = peak_rss_mib([sys.executable, "-c", "import torch"], env)
    train_rss, status = peak_rss_mib([*vaelab, "train", "--epochs", "1", "--no-progress", "--quiet",
                                      "--output-dir", out, "--name", "mem", *size], env)
    rows = [["python + import torch", f"{baseline:.0f}"], [f"vaelab train (1 epoch, exit {status})", f"{train_rss:.0f}"]]
    result = {"quick": quick, "import_torch_mib": baseline, "train_mib": train_rss, "train_status": status}
    print(table("\npeak RSS (MiB)", rows, ["process", "MiB"]))
    write_json("memory", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    run(args.quick, args.data_dir)


if __name__ == "__main__":
    main()
