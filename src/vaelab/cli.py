"""The ``vaelab`` command: subcommands that parse options, build a config and call the library.

The options of ``vaelab train`` are generated from the config's fields
(:mod:`vaelab.config`), so the help, the YAML keys and the Python API never disagree. The global
option ``--import MODULE`` (repeatable, before the command) imports plug-in modules first
(:mod:`vaelab.plugins`): the networks they register are choices of ``--network``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .config import Config, load_config, sections, yaml_load
from .errors import TrainingInterrupted, VaelabError, cli_spelling, option


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _config_fields() -> list[tuple[str, dataclasses.Field, Any]]:
    """(dotted key, field, type hint) for every leaf field of the config."""
    out = []
    top_hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if f.name not in sections():
            out.append((f.name, f, top_hints[f.name]))
    for section, cls in sections().items():
        hints = typing.get_type_hints(cls)
        out.extend((f"{section}.{f.name}", f, hints[f.name]) for f in dataclasses.fields(cls))
    return out


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()


def _add_field_option(group, f: dataclasses.Field, hint, dest: str) -> None:
    """One command-line option for config field ``f``: flag from its name, type, choices and
    help (with the default) from the field."""
    default = _default_of(f)
    shown = " ".join(map(str, default)) if isinstance(default, list) else default
    help_text = f.metadata.get("help", "") + ("" if default is None else f" (default: {shown})")
    kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": help_text}
    kind = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Optional[X] -> X
        kind = next(a for a in typing.get_args(hint) if a is not type(None))
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is list:
        kwargs.update(nargs="+", type=typing.get_args(kind)[0], metavar="N")
    else:
        kwargs["type"] = kind
        if f.metadata.get("choices"):  # a tuple, or a component registry (its names)
            kwargs["choices"] = [c for c in f.metadata["choices"] if c is not None]
        else:
            kwargs["metavar"] = {int: "N", float: "X", str: "STR"}.get(kind, "V")
    group.add_argument(_flag(f.name), **kwargs)


def _add_config_options(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for dotted, f, hint in _config_fields():
        section = dotted.split(".")[0] if "." in dotted else "run"
        if only is not None and section not in only:
            continue
        if section not in groups:
            groups[section] = parser.add_argument_group(f"{section} options")
        _add_field_option(groups[section], f, hint, dotted)


def _add_section_options(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One option per field of the flat config dataclass ``cls`` (dest = field name)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            _add_field_option(parser, f, hints[f.name], f.name)


class _Parser(argparse.ArgumentParser):
    """No abbreviated options (``--epoch`` is not ``--epochs``): a prefix could silently mean
    another option once one is added."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _suggest(parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]) -> str:
    """``unrecognized arguments: ...`` with the closest option of the command for each."""
    import difflib

    target = parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, "command", None) in action.choices:
            target = action.choices[args.command]
            sub = getattr(args, "action", None)
            for inner in target._actions:
                if isinstance(inner, argparse._SubParsersAction) and sub in inner.choices:
                    target = inner.choices[sub]
    options = [o for a in target._actions for o in a.option_strings if o.startswith("--")]
    aliases = {"--lr": "--learning-rate", "--bs": "--batch-size", "--out": "--output-dir", "--epoch": "--epochs"}
    shown = []
    for extra in extras:
        name = extra.split("=", 1)[0]
        if not name.startswith("-"):
            shown.append(extra)
            continue
        close = [aliases[name]] if aliases.get(name) in options else difflib.get_close_matches(name, options, n=1)
        shown.append(f"{extra} (did you mean {close[0]}?)" if close else extra)
    return "unrecognized arguments: " + ", ".join(shown)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``vaelab`` parser. ``command``: the subcommand about to run; the options of ``train``,
    whose choices come from the component registries (:mod:`vaelab.registry`, which import torch),
    are built only for ``train`` or when it is None (every command's options)."""
    parser = _Parser(
        prog="vaelab",
        description="Train, evaluate and study variational autoencoders.",
        epilog="Run `vaelab COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import this module before the command (repeatable): your plug-in that registers a "
                             "network with vaelab.register_network (or a dataset), e.g. --import mypackage.networks; "
                             "runs record it in environment.json")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train a VAE and write its run directory",
        description="Train a VAE. Defaults match pytorch/examples' VAE (MNIST gray levels, "
                    "784-400-20, ReLU, Adam 1e-3, batch 128, 10 epochs). Losses are in nats per "
                    "example. Options override --config, which overrides the defaults.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", metavar="FILE.yaml", help="start from this config (e.g. a run's config.yaml)")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its last checkpoint (only --epochs, --max-minutes, "
                            "--device, --data-dir, --progress, --learning-rate, --clip-norm, --clip-value, "
                            "--nonfinite, --max-skipped-steps may change)")
    train.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                       help="override any config key, e.g. --set model.hidden=[512,256] (YAML value)")
    train.add_argument("--quiet", action="store_true", help="print only the final summary")
    train.add_argument("--threads", type=int, metavar="N",
                       help="CPU threads for torch (default: $OMP_NUM_THREADS, else torch's choice); "
                            "on a busy machine 1 is often fastest")
    if command in (None, "train"):
        _add_config_options(train)

    datasets = commands.add_parser("datasets", help="list the datasets vaelab knows")
    datasets.set_defaults(handler=_cmd_datasets)

    download = commands.add_parser("download", help="fetch a dataset's files into the cache, verified")
    download.add_argument("dataset")
    download.add_argument("--data-dir", help="look here first (default: $VAELAB_DATA_DIR)")
    download.set_defaults(handler=_cmd_download)
    train.set_defaults(handler=_cmd_train)

    sweep = commands.add_parser("sweep", help="train every run of a sweep file in parallel workers",
                                description="Train a grid/list of variants x seeds; re-launching skips "
                                            "finished runs and resumes interrupted ones.")
    sweep.add_argument("sweep_file", metavar="SWEEP.yaml")
    sweep.add_argument("--jobs", type=int, default=None,
                       help="worker processes (default: the GPU count on a machine with GPUs, which the workers "
                       "take in turn; else the CPU count)")
    sweep.add_argument("--budget", default="quick", help="quick or full (the sweep's budgets) (default: quick)")
    sweep.add_argument("-o", "--output-dir", default=None, help="parent of the sweep directory (default: runs/sweeps)")
    sweep.add_argument("--quiet", action="store_true", help="print only the results table")
    sweep.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local: worker processes on this machine; ray: one Ray task per run, on a Ray "
                            "cluster (needs `pip install 'vaelab[ray]'`; every node must see the sweep "
                            "directory at the same path) (default: local)")
    sweep.add_argument("--ray-address", metavar="auto|HOST:PORT", default=None,
                       help="--backend ray: the cluster to run on (default: start a local Ray instance "
                            "sized to this machine)")
    sweep.add_argument("--cpus-per-run", type=int, default=None, metavar="N",
                       help="--backend ray: CPUs each run asks for, and its torch threads (default: 1)")
    sweep.add_argument("--gpus-per-run", type=float, default=None, metavar="F",
                       help="--backend ray: GPUs each run asks for, e.g. 1 or 0.5 (a run trains on the GPU "
                            "Ray gives it, else on the CPU) (default: 0)")
    sweep.set_defaults(handler=_cmd_sweep)

    sweep_summary = commands.add_parser(
        "sweep-summary", help="(re)write a sweep's results table and comparison figures",
        description="Write SWEEP_DIR/results.csv and results.md (final metrics, mean ± std over seeds, "
                    "nats per example) and SWEEP_DIR/figures/compare_<key>.png: the curves of "
                    "`vaelab compare` for each swept key, the seeds of a setting in one colour. "
                    "Unfinished runs are named and left out.")
    sweep_summary.add_argument("sweep_dir", metavar="SWEEP_DIR")
    sweep_summary.set_defaults(handler=_cmd_sweep_summary)
    _add_campaign_commands(commands)
    _add_figure_commands(commands)
    _add_evaluation_commands(commands, command)
    return parser


def _add_campaign_commands(commands) -> None:
    """``vaelab campaign run`` and ``vaelab campaign status``."""
    campaign = commands.add_parser(
        "campaign", help="run a plan of sweeps for days: resumable, results kept as each run ends",
        description="A campaign runs the sweeps of a plan file in order (each at its budget), resuming whatever "
                    "an earlier launch left, keeps each finished run's small result files in the plan's results "
                    "folder at once, and writes a status (sweeps and runs done, CPU-hours spent, hours left).")
    actions = campaign.add_subparsers(dest="action", metavar="ACTION")
    run = actions.add_parser("run", help="run (or continue) the plan; stop it any time with Ctrl-C or SIGTERM",
                             description="Run the plan's steps in order. Runs already kept are not trained "
                                         "again; interrupted ones resume from their last checkpoint. SIGINT or "
                                         "SIGTERM checkpoint the running runs and stop; so does SIGKILL, losing at "
                                         "most the epoch each run was in.")
    run.add_argument("plan", metavar="PLAN.yaml")
    run.add_argument("--jobs", type=int, default=1, help="runs that train at a time (default: 1)")
    run.add_argument("--threads", type=int, default=None, metavar="N",
                     help="torch threads per run (default: the CPUs shared out among the jobs)")
    run.add_argument("--nice", type=int, default=19, metavar="N",
                     help="niceness of the campaign and its workers, 0-19 (default: 19, the lowest priority)")
    run.add_argument("--quiet", action="store_true", help="print only the final status")
    run.set_defaults(handler=_cmd_campaign_run)
    status = actions.add_parser("status", help="print what the plan has done and what remains",
                                description="Print the plan's status from its kept results, runs and ledger "
                                            "(nothing is trained).")
    status.add_argument("plan", metavar="PLAN.yaml")
    status.add_argument("--jobs", type=int, default=None, help="also give the wall time left with this many jobs")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--write", action="store_true", help="also rewrite the plan's status.json")
    status.set_defaults(handler=_cmd_campaign_status)
    campaign.set_defaults(handler=lambda args: campaign.print_help() or 0)


def _cmd_campaign_run(args: argparse.Namespace) -> int:
    from .experiments.campaign import run_campaign

    if args.jobs < 1:
        raise VaelabError(f"--jobs must be >= 1, got {args.jobs}")
    if not 0 <= args.nice <= 19:
        raise VaelabError(f"--nice must be between 0 and 19, got {args.nice}")
    status = run_campaign(args.plan, args.jobs, args.threads, args.nice, verbose=not args.quiet)
    if args.quiet:
        from .experiments.campaign import format_status

        print(format_status(status))
    unfinished = status["runs"] - status["runs_kept"]
    return 1 if unfinished else 0


def _cmd_campaign_status(args: argparse.Namespace) -> int:
    import json

    from .experiments.campaign import campaign_status, format_status, load_plan, write_status

    if args.jobs is not None and args.jobs < 1:
        raise VaelabError(f"--jobs must be >= 1, got {args.jobs}")
    plan = load_plan(args.plan)
    status = campaign_status(plan, args.jobs)
    if args.write:
        write_status(plan, status)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def _add_figure_commands(commands) -> None:
    """``vaelab plot``, ``vaelab compare`` and ``vaelab report``."""
    from .plots.run import KINDS  # light: no matplotlib or torch

    plot = commands.add_parser(
        "plot", help="draw the figures of a run directory (without training)",
        description="Draw the figures of a run directory from its metrics.csv, checkpoint and dataset; "
                    "nothing is trained. Works on finished runs and on runs still training. Figure "
                    "options default to the run config's figures section.",
    )
    plot.add_argument("run_dir", metavar="RUN_DIR")
    plot.add_argument("--kind", nargs="+", action="extend", metavar="KIND",
                      help=f"figure kinds to draw (default: every kind that applies): {', '.join(KINDS)}")
    plot.add_argument("--checkpoint", choices=("last", "best"), default="last",
                      help="draw the model of this checkpoint (default: last)")
    plot.add_argument("-o", "--output-dir", metavar="DIR", help="write the PNGs here (default: RUN_DIR/figures)")
    plot.add_argument("--data-dir", metavar="DIR", help="where to find the dataset (default: the run's, "
                                                        "then $VAELAB_DATA_DIR and the cache)")
    _add_config_options(plot, only=("figures",))
    plot.set_defaults(handler=_cmd_plot)

    compare = commands.add_parser(
        "compare", help="overlay the curves of several runs and tabulate their final metrics",
        description="Overlay the per-epoch curves of several runs, labelled by the config values in "
                    "which they differ, and print and write a table of their final metrics "
                    "(nats per example).",
    )
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--metric", action="append", metavar="NAME",
                         help="metrics.csv column to plot (repeatable), e.g. test_neg_elbo, train_kl, "
                              "test_elbo (= -test_neg_elbo); a term without split (neg_elbo, recon, kl) "
                              "means the evaluation split (default: neg_elbo, recon and kl)")
    compare.add_argument("--label", action="append", metavar="KEY",
                         help="config key to label runs by, e.g. beta or model.latent_dim (repeatable; "
                              "default: every key whose value differs)")
    compare.add_argument("-o", "--output-dir", default=None, metavar="DIR",
                         help="where to write comparison.png and final_metrics.csv/.md (default: comparison/ "
                              "beside the runs, in their common parent directory)")
    compare.add_argument("--log-scale", action="store_true", help="logarithmic y axes")
    compare.set_defaults(handler=_cmd_compare)

    report = commands.add_parser(
        "report", help="write one self-contained HTML report of one or more runs",
        description="Write one HTML file (figures embedded, no network needed) with each run's "
                    "config, metrics and figures, and for several runs their comparison.",
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("-o", "--output", default=None, metavar="FILE.html",
                        help="the HTML file to write (default: report.html beside the runs, in their common "
                             "parent directory)")
    report.add_argument("--redraw", action="store_true",
                        help="draw every figure again (default: draw only those missing in RUN_DIR/figures)")
    report.add_argument("--data-dir", metavar="DIR", help="where to find datasets when figures must be drawn")
    report.add_argument("--title", help="page title")
    report.add_argument("--label", action="append", metavar="KEY", help="as for vaelab compare")
    report.add_argument("--metric", action="append", metavar="NAME", help="as for vaelab compare")
    report.set_defaults(handler=_cmd_report)

    sample = commands.add_parser(
        "sample", help="write a grid of generated images from a trained run",
        description="Draw N latents, decode them (decoder means E[x|z]) and write a PNG grid: with the "
                    "prior p(z), or with gmm, a Gaussian mixture fitted to the training set's posterior "
                    "means (ex-post density estimation, Ghosh et al. 2020).",
    )
    sample.add_argument("run_dir", metavar="RUN_DIR")
    sample.add_argument("--sampler", choices=("prior", "gmm"), default="prior",
                        help="prior: z ~ p(z); gmm: z from a full-covariance Gaussian mixture fitted to the "
                             "posterior means of the training split (default: prior)")
    sample.add_argument("--n", type=int, default=64, help="number of samples, at most 10,000 (default: 64)")
    sample.add_argument("--gmm-components", type=int, default=10, metavar="K",
                        help="sampler gmm: mixture components (default: 10, as Ghosh et al. 2020)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the draws and of the GMM fit (default: 0)")
    sample.add_argument("--checkpoint", choices=("best", "last"), default="best", help="(default: best)")
    sample.add_argument("--npy", action="store_true", help="also write the images (n, C, H, W) float32 as .npy")
    sample.add_argument("-o", "--output", metavar="FILE.png", help="default: RUN_DIR/samples-<sampler>.png")
    sample.add_argument("--data-dir", metavar="DIR", help="where to find the dataset (gmm; default: the run's)")
    sample.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    sample.set_defaults(handler=_cmd_sample)


def _cmd_sample(args: argparse.Namespace) -> int:
    from .plots.samples import sample_run

    if not 1 <= args.n <= 10_000:
        raise VaelabError(f"--n must be between 1 and 10,000 samples, got {args.n}; for more, run it again with "
                          "another --seed")
    if not 1 <= args.gmm_components <= 1000:
        raise VaelabError(f"--gmm-components must be between 1 and 1,000, got {args.gmm_components}")

    result = sample_run(args.run_dir, args.sampler, args.n, seed=args.seed, which=args.checkpoint, npy=args.npy,
                        output=args.output, components=args.gmm_components, data_dir=args.data_dir,
                        device=args.device)
    print(f"wrote {result.png}" + (f" and {result.npy}" if result.npy else ""))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plots.run import plot_run

    overrides = {k: v for k, v in vars(args).items() if k.startswith("figures.")}
    paths = plot_run(args.run_dir, args.kind, which=args.checkpoint, output_dir=args.output_dir,
                     overrides=overrides, data_dir=args.data_dir)
    for path in paths:
        print(path)
    return 0


def _runs_parent(run_dirs: list[str]) -> Path:
    """The deepest directory holding every run directory (where default outputs go)."""
    import os

    return Path(os.path.commonpath([str(Path(r).absolute().parent) for r in run_dirs]))


def _cmd_compare(args: argparse.Namespace) -> int:
    from .plots.compare import compare_runs

    output_dir = args.output_dir if args.output_dir is not None else _runs_parent(args.run_dirs) / "comparison"
    comparison = compare_runs(args.run_dirs, args.metric, args.label, output_dir, args.log_scale)
    print(comparison.text, end="")
    for note in comparison.notes:
        print(f"note: {note}", file=sys.stderr)
    for path in comparison.files:
        print(f"wrote {path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .plots.report import write_report

    output = args.output if args.output is not None else _runs_parent(args.run_dirs) / "report.html"
    path = write_report(args.run_dirs, output, redraw=args.redraw, data_dir=args.data_dir,
                        title=args.title, label_keys=args.label, metrics=args.metric)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {k: v for k, v in vars(args).items() if "." in k or k in ("name", "output_dir", "seed")}
    if isinstance(values.get("data.dataset"), str):  # --dataset MNIST means mnist
        from .data import dataset_names

        lowered = values["data.dataset"].lower()
        if values["data.dataset"] not in dataset_names() and lowered in dataset_names():
            values["data.dataset"] = lowered
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise VaelabError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = yaml_load(raw)
        except yaml.YAMLError:
            raise VaelabError(f"--set {item!r}: the value is not valid YAML") from None
    return values


def warn_inapplicable(config: Config, given: list[str]) -> list[str]:
    """A warning (printed to stderr, and returned) for each option in ``given`` (dotted keys
    the user set) that does nothing with this ``config``: its field's ``applies``
    (:class:`~vaelab.schema.Applies`, declared beside the field) does not hold."""
    rules = {key: f.metadata.get("applies") for key, f, _ in _config_fields()}
    out = []
    for key in given:
        rule = rules.get(key)
        if rule is not None and not rule.holds(config):
            out.append(f"warning: {_flag(key.split('.')[-1])} applies only with {option(rule.key, rule.text())}; "
                       "it is ignored here")
    for line in out:
        print(line, file=sys.stderr)
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from .api import resume, train
    from .training.distributed import leave

    try:
        return _train_or_resume(args, resume, train)  # torchrun: the ranks wait for each other at its end
    finally:
        leave()  # torchrun: close the process group now, not at interpreter exit


def _train_or_resume(args: argparse.Namespace, resume, train) -> int:
    overrides = _overrides(args)
    argv = ["vaelab", *sys.argv[1:]] if args.argv is None else ["vaelab", *args.argv]
    if args.resume:
        if args.config:
            raise VaelabError("--config and --resume exclude each other: a resumed run keeps its config")
        resume(args.resume, overrides, verbose=not args.quiet, argv=argv)
        return 0
    config = load_config(args.config) if args.config else Config()
    config = config.replace(overrides)
    warn_inapplicable(config, list(overrides))
    run = train(config, verbose=not args.quiet, argv=argv)
    if args.quiet:
        from .training.callbacks import print_summary

        print_summary(run.summary, run.config.figures.draw_at_end)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments import load_sweep, run_sweep

    if args.jobs is not None and args.jobs < 1:
        raise VaelabError(f"--jobs must be >= 1, got {args.jobs}")
    ray_options = {"--ray-address": args.ray_address, "--cpus-per-run": args.cpus_per_run,
                   "--gpus-per-run": args.gpus_per_run}
    if args.backend == "local" and any(v is not None for v in ray_options.values()):
        given = ", ".join(flag for flag, value in ray_options.items() if value is not None)
        raise VaelabError(f"{given} apply to --backend ray only; add --backend ray or leave them out")
    if args.backend == "ray" and args.jobs is not None:
        raise VaelabError("--jobs applies to --backend local; with --backend ray the cluster's resources and "
                          "--cpus-per-run/--gpus-per-run decide how many runs train at once")
    sweep = load_sweep(args.sweep_file, args.budget, args.output_dir)
    ray_kwargs = {} if args.backend == "local" else {
        "backend": "ray", "ray_address": args.ray_address,
        "cpus_per_run": 1 if args.cpus_per_run is None else args.cpus_per_run,
        "gpus_per_run": 0.0 if args.gpus_per_run is None else args.gpus_per_run}
    if args.imports:  # the workers import the plug-ins too
        import functools

        from .plugins import import_plugins

        ray_kwargs["worker_init"] = functools.partial(import_plugins, list(args.imports))
    summary = run_sweep(sweep, args.jobs, args.budget, verbose=not args.quiet, **ray_kwargs)
    if args.quiet:
        print((sweep.directory / "results.md").read_text())
    return 1 if summary["unfinished"] else 0


def _cmd_sweep_summary(args: argparse.Namespace) -> int:
    from .experiments import summarize_sweep

    summary = summarize_sweep(args.sweep_dir)
    print((Path(summary["directory"]) / "results.md").read_text())
    for path in summary["figures"]:
        print(f"wrote {path}")
    return 0


def _add_evaluation_commands(commands, command: str | None) -> None:
    """``evaluate`` and ``classifier``; their options (from EvaluationConfig and
    ClassifierConfig, which live beside torch code) are built only for the command that runs."""
    evaluate = commands.add_parser(
        "evaluate", help="measure a trained run: ELBO, importance-sampled NLL, latents, FID",
        description="Evaluate a run's checkpoint on a split: negative ELBO, reconstruction NLL and KL, "
                    "the importance-sampled NLL with K samples (Burda et al. 2016) in nats per example and "
                    "bits/dim, active units, KL per latent dimension, probe accuracies, and the samples' "
                    "classifier-feature FID and class histogram. Writes RUN_DIR/evaluation.json, or for "
                    "a weights file FILE.evaluation.json beside it.",
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR|WEIGHTS",
                          help="a directory written by `vaelab train`, or a weights-only .safetensors file "
                               "written by `vaelab export-weights` (then --checkpoint does not apply)")
    evaluate.add_argument("--config", metavar="FILE.yaml", dest="run_config",
                          help="WEIGHTS: the model's config (default: the one stored in the file)")
    evaluate.add_argument("-o", "--output", metavar="FILE.json",
                          help="WEIGHTS: where to write the result (default: FILE.evaluation.json beside "
                               "the weights); a run's result goes to RUN_DIR/evaluation.json")
    evaluate.add_argument("--quiet", action="store_true", help="print only the table")
    evaluate.add_argument("--threads", type=int, metavar="N",
                          help="CPU threads for torch (default: $OMP_NUM_THREADS, else torch's choice)")
    if command in (None, "evaluate"):
        from .evaluation.run import EvaluationConfig

        _add_section_options(evaluate, EvaluationConfig)
        evaluate.set_defaults(section=EvaluationConfig)
    evaluate.set_defaults(handler=_cmd_evaluate)

    export = commands.add_parser(
        "export-weights", help="write a run's weights only (small safetensors) with its config",
        description="Write the weights of a run's checkpoint, without optimizer, RNG or history, as float32 "
                    "safetensors (the moving average of the weights when the run used --ema-decay), with "
                    "the run's config in the file and as FILE.yaml beside it. `vaelab evaluate FILE` "
                    "evaluates it.")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--checkpoint", choices=("last", "best"), default="last", help="(default: last)")
    export.add_argument("-o", "--output", metavar="FILE.safetensors", required=True)
    export.set_defaults(handler=_cmd_export_weights)

    classifier = commands.add_parser("classifier", help="the dataset classifier behind FID and the perceptual loss")
    actions = classifier.add_subparsers(dest="action", metavar="ACTION")
    classifier_train = actions.add_parser(
        "train", help="train and cache the classifier of a dataset",
        description="Train a small CNN on a dataset's training split and cache it (with its sha256 and "
                    "config) for classifier-feature FID, sample class histograms and the perceptual loss.",
    )
    classifier_train.add_argument("--force", action="store_true", help="retrain even if one is cached")
    classifier_train.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    if command in (None, "classifier"):
        from .models.classifier import ClassifierConfig

        _add_section_options(classifier_train, ClassifierConfig)
        classifier_train.set_defaults(section=ClassifierConfig)
    classifier_train.set_defaults(handler=_cmd_classifier_train)
    classifier.set_defaults(handler=lambda args: classifier.print_help() or 0)


def _section_values(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(args.section)}
    return {k: v for k, v in vars(args).items() if k in names}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.run import evaluate, evaluate_weights, print_table

    weights = Path(args.run_dir).is_file()
    if not weights and (args.run_config or args.output):
        raise VaelabError("--config and --output apply to a weights file; a run directory is evaluated with "
                          "its own config into RUN_DIR/evaluation.json")
    if weights:
        result = evaluate_weights(args.run_dir, _section_values(args), run_config=args.run_config,
                                  output=args.output, verbose=not args.quiet)
    else:
        result = evaluate(args.run_dir, _section_values(args), verbose=not args.quiet)
    if args.quiet:
        print_table(result.results)
    return 0


def _cmd_export_weights(args: argparse.Namespace) -> int:
    from .training.weights import export_weights

    path = export_weights(args.run_dir, args.output, args.checkpoint)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.yaml')}")
    return 0


def _cmd_classifier_train(args: argparse.Namespace) -> int:
    from .evaluation.classifier import train_classifier

    train_classifier(_section_values(args), force=args.force, device=args.device)
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .data import dataset_names, get_spec
    from .data.registry import local_folder

    for name in dataset_names():
        spec = get_spec(name)
        c, h, w = spec.image_shape
        folder = local_folder(spec)
        where = ("built in" if not spec.files else f"here: {folder}" if folder is not None
                 else f"not here: `vaelab download {name}`")
        print(f"{name:16s} {h}x{w}x{c}  {len(spec.classes)} classes  [{where}]  {spec.citation}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .data import cache_dir, get_spec
    from .data.registry import fetch_file

    spec = get_spec(args.dataset)
    for role, file in spec.files.items():
        fetch_file(spec, role, args.data_dir)
        print(f"ok  {file.name}")
    print(f"{spec.name} is available (downloads are kept in {cache_dir() / 'datasets'})")
    return 0


def _leading_imports(words: list[str]) -> tuple[list[str], str]:
    """The modules of the ``--import MODULE`` (or ``--import=MODULE``) options before the
    command, and the command's name ("" when there is none)."""
    modules, i = [], 0
    while i < len(words):
        if words[i] == "--import" and i + 1 < len(words):
            modules.append(words[i + 1])
            i += 2
        elif words[i].startswith("--import="):
            modules.append(words[i].split("=", 1)[1])
            i += 1
        else:
            break
    command = words[i] if i < len(words) and not words[i].startswith("-") else ""
    return modules, command


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vaelab`` command; returns the exit status.

    Errors caused by input (:class:`VaelabError`) are printed as ``vaelab: error: ...`` and
    give exit status 2.
    """
    words = sys.argv[1:] if argv is None else argv
    imports, command = _leading_imports(words)
    if imports:  # before the parser: the networks they register are choices of --network
        from .plugins import import_plugins

        try:
            import_plugins(imports)
        except VaelabError as exc:
            print(f"vaelab: error: {exc}", file=sys.stderr)
            return 2
    parser = build_parser(command)
    args, extras = parser.parse_known_args(argv)
    if extras:
        parser.error(_suggest(parser, args, extras))
    args.argv = argv
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        with cli_spelling():  # messages name flags (--clip-norm 5), not config keys
            return args.handler(args)
    except TrainingInterrupted as exc:
        print(f"vaelab: {exc}", file=sys.stderr)
        return 130
    except VaelabError as exc:
        print(f"vaelab: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file operation outside vaelab's own checks: still one line
        from .io import write_error

        where = exc.filename if exc.filename is not None else "a file"
        print(f"vaelab: error: {write_error(where, exc, 'use')}", file=sys.stderr)
        return 2
    except MemoryError:
        print("vaelab: error: out of memory; use a smaller model, batch (--batch-size) or --eval-batch-size",
              file=sys.stderr)
        return 2
    except RuntimeError as exc:  # torch.OutOfMemoryError (a GPU's) is a RuntimeError, not a MemoryError
        import torch

        if not isinstance(exc, torch.OutOfMemoryError):
            raise
        from .runtime import out_of_memory_message

        print(f"vaelab: error: {out_of_memory_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaelab: interrupted; continue a run with `vaelab train --resume RUN_DIR`", file=sys.stderr)
        return 130
