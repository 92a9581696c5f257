"""The process side of tests/training/test_distributed.py: one toy2d run through
``vaelab.train``, started by torchrun (several ranks) or directly (one process).

``python ddp_worker.py OUTPUT_DIR NAME EPOCHS [zero-noise] [nan-rank=R,step=S]``: with
``zero-noise`` the latent noise is 0 (z is the posterior mean), so the runs with 1 and 2
processes differ only in float rounding; every rank writes its final parameters to
``OUTPUT_DIR/NAME-params-rank<r>.pt`` and the number of examples it evaluated in each epoch to
``OUTPUT_DIR/NAME-evaluated-rank<r>.txt``; ``test-size=N`` evaluates on N test points (default
100); ``nan-rank=R,step=S`` makes rank R's loss NaN at its
S-th step, ``die-rank=R,step=S`` kills rank R (SIGKILL) there, ``term-rank=R,step=S`` sends it SIGTERM; ``every=N`` checkpoints every N
steps.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

import vaelab
import vaelab.objectives.elbo as elbo
import vaelab.training.trainer as trainer_module
from vaelab.objectives import Objective


class SaveParameters(vaelab.Callback):
    all_ranks = True

    def __init__(self, path_stem: str):
        self.path_stem = path_stem

    def on_fit_end(self, trainer, summary):
        rank = trainer.world.rank
        torch.save({k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
                   f"{self.path_stem}-params-rank{rank}.pt")
        with open(f"{self.path_stem}-evaluated-rank{rank}.txt", "w") as f:
            f.write(" ".join(str(n) for n in EVALUATED))


EVALUATED: list[int] = []
"""Examples this process evaluated, one entry per call of evaluate_elbo (one per epoch)."""


def counting_evaluate_elbo(model, images, *args, **kwargs):
    EVALUATED.append(images.shape[0])
    return real_evaluate_elbo(model, images, *args, **kwargs)


real_evaluate_elbo = trainer_module.evaluate_elbo
trainer_module.evaluate_elbo = counting_evaluate_elbo


def main(out: str, name: str, epochs: int, *options: str) -> None:
    if "zero-noise" in options:
        elbo.reparameterize = lambda q, n, generator=None: q.base_dist.loc.expand(n, *q.base_dist.loc.shape)
    every, test_size = None, 100
    for option in options:
        if option.startswith("every="):
            every = int(option.split("=")[1])
        if option.startswith("test-size="):
            test_size = int(option.split("=")[1])
        if option.startswith(("nan-rank=", "die-rank=", "term-rank=")):
            rank, step = (int(part.split("=")[1]) for part in option.split(","))
            kind = option.split("-")[0]
            real, calls, die = Objective.__call__, {"n": 0}, kind != "nan"

            def poisoned(self, model, x, beta=1.0, generator=None, y=None, rank=rank, step=step, die=die, kind=kind):
                calls["n"] += 1
                if die and torch.distributed.get_rank() == rank and calls["n"] == step:
                    os.kill(os.getpid(), signal.SIGKILL if kind == "die" else signal.SIGTERM)
                terms = real(self, model, x, beta, generator, y)
                if not die and torch.distributed.get_rank() == rank and calls["n"] == step:
                    terms = terms._replace(recon=terms.recon * float("nan"))
                return terms

            Objective.__call__ = poisoned
    config = {"name": name, "output_dir": out, "seed": 3,
              "data": {"dataset": "toy2d", "toy2d_train_size": 400, "toy2d_test_size": test_size},
              "model": {"hidden": [16], "latent_dim": 2},
              "training": {"epochs": epochs, "batch_size": 40, "device": "cpu", "progress": False, "logger": "csv",
                           "sync_every_steps": 4, "checkpoint_every_steps": every},
              "figures": {"draw_at_end": False}}
    vaelab.train(config, verbose=False, callbacks=[SaveParameters(f"{out}/{name}")])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
