"""A fault-injection and bad-input campaign through the real CLI: every case runs ``vaelab ...``
in its own process (90 s limit) and is classified as a traceback, a hang, a corrupted outcome
(a file that vaelab must not change did change), a one-line error, or a success.

    VAELAB_DATA_DIR=../shared/data python -m benchmarks.fault_campaign [--seed 7] [--out FILE.json]

The inputs are drawn with ``--seed`` (names, values, byte flips), so a new seed gives new inputs
of the same classes as docs/reliability.md's. Writes a JSON summary (counts per outcome and per
class, and every case that was not a one-line error or a success).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VAELAB = [sys.executable, "-m", "vaelab"]
TINY = ["--train-examples", "300", "--eval-examples", "100", "--epochs", "1", "--hidden", "16",
        "--no-progress", "--threads", "1", "--logger", "csv"]


def run(args: list[str], cwd: Path, timeout: float = 90.0) -> tuple[str, str]:
    """(outcome, last line of stderr): ``traceback``, ``hang``, ``error`` (one line) or ``ok``."""
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, errors="replace",
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return "hang", ""
    err = proc.stderr.strip()
    last = err.splitlines()[-1][:300] if err else ""
    if "Traceback" in err:
        return "traceback", last
    if proc.returncode == 0:
        return "ok", last
    return ("error" if last.startswith(("vaelab: error:", "vaelab: stopped", "vaelab: ")) else "traceback"), last


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".lock"}


def cases(rng: random.Random, work: Path, base_run: Path):
    """(class, argv, folder that must not change or None) for every case."""
    npr = np.random.default_rng(rng.randrange(2 ** 32))
    out = str(work / "runs")
    # names and numbers
    for _ in range(4):
        bad = rng.choice(["\x07", "\x00"[:0] + "\x1b[31m", "a" * rng.randint(160, 400), "../" * rng.randint(1, 3) + "x",
                          rng.choice(["1e5", "3E2", "0x1F", "True", "null", ".5", "~"])])
        yield "names", VAELAB + ["train", *TINY, "--output-dir", out, "--name", bad], None
    for _ in range(3):
        yield "integers", VAELAB + ["train", *TINY, "--output-dir", out, "--seed", str(rng.choice(
            [2 ** 64 + rng.randint(0, 99), -(2 ** 70), 2 ** 63]))], None
    # YAML
    for i in range(4):
        depth = rng.randint(70, 3000)
        text = rng.choice([
            "model: " + "[" * depth + "]" * depth,
            "a: &a [1,1,1,1,1,1,1,1]\n" + "".join(f"b{k}: &b{k} [*{'a' if k == 0 else f'b{k - 1}'}]*8\n"
                                                  for k in range(6)).replace("]*8", ",*a,*a,*a]"),
            "objective: {beta: " + rng.choice([".", "-.", "+.", "..", "1e999"]) + "}",
            "seed: 1\nseed: 2",
            "name: [unclosed",
        ])
        path = work / f"c{i}.yaml"
        path.write_text(text)
        yield "yaml", VAELAB + ["train", "--config", str(path)], None
    # sweep files
    for i in range(5):
        key, value = rng.choice([("seeds", rng.randint(1, 9)), ("variants", {"a": 1}), ("variants", [[1, 2]]),
                                 ("budgets", [1, 2]), ("grid", {3: [1, 2]}), ("output_dir", 7), ("grid", {"x": 5}),
                                 ("budgets", {"quick": 5}), ("seed_keys", "data.subset_seed")])
        path = work / f"s{i}.yaml"
        import yaml

        path.write_text(yaml.safe_dump({"name": "s", "base": {"data": {"dataset": "mnist"}}, key: value}))
        yield "sweep files", VAELAB + ["sweep", str(path), "-o", out, "--jobs", "1"], None
    # data files
    x, t = npr.random((60, 6, 6), dtype=np.float32), npr.random((20, 6, 6), dtype=np.float32)
    for i in range(6):
        kind = rng.choice(["truncated", "crc", "labels", "classes", "fifo", "meta", "empty"])
        path = work / f"d{i}.npz"
        if kind in ("truncated", "crc"):
            np.savez(path, x_train=x, x_test=t)
            data = bytearray(path.read_bytes())
            data = data[: rng.randint(10, len(data) - 10)] if kind == "truncated" else data
            if kind == "crc":
                data[rng.randint(100, len(data) - 100)] ^= 1 << rng.randint(0, 7)
            path.write_bytes(bytes(data))
        elif kind == "labels":
            np.savez(path, x_train=x, x_test=t, y_train=np.full(60, 2 ** 64 - rng.randint(1, 9), np.uint64),
                     y_test=np.zeros(20, np.uint64))
        elif kind == "classes":
            np.savez(path, x_train=x, x_test=t, y_train=np.arange(60) * 10 ** rng.randint(6, 12), y_test=np.arange(20))
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "meta":
            import torch

            path = work / f"d{i}.pt"
            torch.save({"x_train": torch.empty(60, 6, 6, device="meta"), "x_test": torch.empty(20, 6, 6, device="meta")},
                       path)
        else:
            np.savez(path, x_train=np.zeros((0, 6, 6), np.float32), x_test=t)
        yield "data files", VAELAB + ["train", "--dataset", str(path), "--batch-size", "10", "--epochs", "1",
                                      "--no-progress", "--output-dir", out, "--threads", "1"], None
    # outputs that are not regular files
    fifo = work / "out.safetensors"
    os.mkfifo(fifo)
    yield "outputs", VAELAB + ["export-weights", str(base_run), "-o", str(fifo)], None
    yield "outputs", VAELAB + ["report", str(base_run), "-o", "/dev/null"], None
    # checkpoints edited field by field, then resumed (the run must not change)
    for i in range(6):
        run_dir = work / f"ck{i}"
        shutil.copytree(base_run, run_dir)
        field, edit = rng.choice([
            ("training_state", lambda v: {**v, "history": []}),
            ("training_state", lambda v: {**v, "best_value": float(rng.choice(["nan", "-inf"]))}),
            ("optimizer", lambda v: {**v, "param_groups": [{**v["param_groups"][0], "eps": -rng.random()}]}),
            ("optimizer", lambda v, drop=rng.choice(["lr", "params", "betas"]): {
                **v, "param_groups": [{k: w for k, w in v["param_groups"][0].items() if k != drop}]}),
            ("rng", lambda v: {**v, "numpy": ["MT19937", [1], 0, 0, 0.0]}),
            ("scheduler", lambda v: {"last_epoch": "x", "base_lrs": [-1.0]}),
        ])
        _edit(run_dir / "checkpoints" / "last.safetensors", field, edit)
        yield "checkpoints", VAELAB + ["train", "--resume", str(run_dir), "--epochs", "2"], run_dir
    run_dir = work / "gone"
    shutil.copytree(base_run, run_dir)
    shutil.rmtree(run_dir / "checkpoints")
    yield "checkpoints", VAELAB + ["train", "--resume", str(run_dir), "--epochs", "2"], run_dir
    yield "checkpoints", VAELAB + ["evaluate", str(base_run / "checkpoints" / "last.safetensors"), "--k", "2"], None
    # sizes that would hang
    for args in (["evaluate", str(base_run), "--k", str(10 ** rng.randint(6, 9))],
                 ["sample", str(base_run), "--n", str(10 ** rng.randint(5, 9))],
                 ["plot", str(base_run), "--kind", "latent_manifold", "--manifold-steps", str(10 ** rng.randint(3, 6)),
                  "-o", str(work / "p")],
                 ["evaluate", str(base_run), "--fid-samples", str(10 ** rng.randint(7, 10))]):
        yield "sizes", VAELAB + args, None
    # trackers
    db = work / "not.db"
    db.write_bytes(bytes(rng.randrange(256) for _ in range(64)))
    yield "trackers", VAELAB + ["train", *TINY, "--output-dir", out, "--logger", "mlflow", "--mlflow-uri",
                                rng.choice([f"sqlite:///{db}", "file:///dev/null", "http://127.0.0.1:9"])], None


def _edit(path: Path, field: str, change):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    old = json.loads(meta.get(field, "null")) or {}
    new = change(old)
    meta[field] = json.dumps(new)
    save_file(tensors, path, metadata=meta)
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=None, help="the JSON summary (default: print it)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    counts: dict[str, dict[str, int]] = {}
    problems = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vaelab-faults-") as tmp:
        work = Path(tmp)
        outcome, last = run(VAELAB + ["train", *TINY, "--output-dir", str(work), "--name", "base"], work, 300)
        if outcome != "ok":
            raise SystemExit(f"the base run failed ({outcome}): {last}")
        for kind, argv_, guarded in cases(rng, work, work / "base"):
            before = snapshot(guarded) if guarded is not None else None
            outcome, last = run(argv_, work)
            if before is not None and snapshot(guarded) != before:
                outcome = "corrupted"
            counts.setdefault(kind, {}).setdefault(outcome, 0)
            counts[kind][outcome] += 1
            if outcome not in ("error", "ok"):
                problems.append({"class": kind, "outcome": outcome, "argv": argv_[3:], "stderr": last})
            print(f"{kind:12s} {outcome:9s} {last[:140]}", flush=True)
    total = {o: sum(c.get(o, 0) for c in counts.values()) for o in ("error", "ok", "traceback", "hang", "corrupted")}
    summary = {"seed": args.seed, "cases": sum(total.values()), "outcomes": total, "by_class": counts,
               "problems": problems, "seconds": round(time.perf_counter() - start, 1)}
    text = json.dumps(summary, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
