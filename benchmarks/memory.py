"""Peak resident memory (RSS) of a real `vaelab train` run on MNIST (one epoch, with its
figures) and of `vaelab evaluate` on it (IS-NLL with K = 1000 on the 10,000 test images), each in
a fresh child process (its own VmHWM, read by the child at exit).

    python -m benchmarks.memory [--quick] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from benchmarks.common import table, write_json


# Runs a module (``-m NAME ARGS``) or code (``-c CODE``) and, at exit, writes its own peak RSS
# (VmHWM, KiB) to the file named by its first argument. A child's ru_maxrss would not do: Linux
# carries the parent's high-water mark over the fork and exec, so every child of a large
# benchmark process would report at least the parent's size.
_REPORTER = """
import atexit, runpy, sys
report = sys.argv.pop(1)
def _write():
    with open('/proc/self/status') as status:
        kib = next(line.split()[1] for line in status if line.startswith('VmHWM:'))
    with open(report, 'w') as out:
        out.write(kib)
atexit.register(_write)
mode, target = sys.argv[1], sys.argv[2]
sys.argv = [target, *sys.argv[3:]]
if mode == '-c':
    exec(target)
else:
    runpy.run_module(target, run_name='__main__', alter_sys=True)
"""


def peak_rss_mib(argv: list[str], env: dict) -> tuple[float, int]:
    """Run ``python -m MODULE ARGS`` or ``python -c CODE`` (``argv`` without the interpreter) in
    a child; its own peak RSS in MiB (``VmHWM`` of /proc/self/status at its exit) and its exit
    status."""
    with tempfile.NamedTemporaryFile("r", suffix=".vmhwm") as report:
        status = subprocess.run([sys.executable, "-c", _REPORTER, report.name, *argv], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        text = report.read().strip()
    return (int(text) / 1024 if text else float("nan")), status


def run(quick: bool = False, data_dir=None) -> dict:
    env = dict(os.environ)
    if data_dir:
        env["VAELAB_DATA_DIR"] = str(data_dir)
    out = tempfile.mkdtemp()
    vaelab = ["-m", "vaelab"]
    size = ["--train-examples", "2000", "--eval-examples", "1000"] if quick else []
    baseline, _ = peak_rss_mib(["-c", "import torch"], env)
    train_rss, status = peak_rss_mib([*vaelab, "train", "--epochs", "1", "--no-progress", "--quiet",
                                      "--output-dir", out, "--name", "mem", *size], env)
    evaluate = ["--examples", "500", "--k", "100"] if quick else []
    eval_rss, eval_status = peak_rss_mib([*vaelab, "evaluate", os.path.join(out, "mem"), "--quiet", "--no-probe",
                                          "--fid", "none", *evaluate], env)
    eval_what = "IS-NLL K=100, 500 test images" if quick else "IS-NLL K=1000, 10k test images"
    rows = [["python + import torch", f"{baseline:.0f}"], [f"vaelab train (1 epoch, exit {status})", f"{train_rss:.0f}"],
            [f"vaelab evaluate ({eval_what}, exit {eval_status})", f"{eval_rss:.0f}"]]
    result = {"quick": quick, "import_torch_mib": baseline, "train_mib": train_rss, "train_status": status,
              "evaluate_mib": eval_rss, "evaluate_status": eval_status, "evaluate": eval_what}
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
