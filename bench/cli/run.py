"""`python run_bench.py [run] ...`: run the benchmark grid and print its tables. The default
subcommand. Bad input exits with code 2 before any run starts; a grid with failed runs exits 1."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.cli import parsing
from bench.cli.list import list_everything
from bench.cli.table import print_and_write_tables
from bench.core.errors import UserError
from bench.evaluation.metrics import fid_reference_choice, metric_weights
from bench.generation import schedule as generation_schedule
from bench.reporting import tables
from bench.runs import config, presets
from bench.runs.runner import DEFAULT_OUT
from bench.training import determinism

DEFAULT_METHODS = ("vqct", "vqgan")  # the seed paper against its base; every registered method if vqct is absent
DEFAULT_DATASETS = ("photos",)


def _dataset_settings(opts: argparse.Namespace) -> dict[str, Any]:
    """RunConfig fields shared by every config of the grid; dataset names made canonical."""
    import datasets

    opts.datasets = [datasets.canonical_name(d) for d in opts.datasets]
    paths = {datasets.canonical_name(name): path for name, path in opts.dataset_path}
    options = dict(opts.dataset_option)
    if opts.limit_val is not None:
        options["limit_val"] = opts.limit_val
    return {"data_root": opts.data_root, "dataset_paths": paths, "dataset_options": options,
            "dataset_cache": opts.dataset_cache, "skip_bad_images": opts.skip_bad_images}


def default_methods() -> list[str]:
    import methods

    names = methods.available()
    return list(DEFAULT_METHODS) if all(m in names for m in DEFAULT_METHODS) else names


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", type=parsing.comma_list(str), default=None,
                   help="comma-separated methods (default: vqct,vqgan)")
    p.add_argument("--datasets", type=parsing.comma_list(str), default=list(DEFAULT_DATASETS), help="comma-separated datasets (default: photos)")
    p.add_argument("--codebook-sizes", type=parsing.comma_list(parsing.codebook_size), default=None,
                   help="comma-separated codebook sizes K, or full: the whole vocabulary of a method that has one "
                        "(vqct; default: 256, and full under --preset vqct-official; a method whose codebook is "
                        "fixed, leech, takes its own K and is refused any other)")
    p.add_argument("--bits-per-image", type=parsing.positive_float, action="append", default=None, metavar="B",
                   help="instead of --codebook-sizes: for each method the K whose bits per image (positions x "
                        "log2 of each index's codebook size) are closest to B at the preset's grid, printed before "
                        "the grid starts; a method that cannot come within 5%% is refused (repeatable)")
    p.add_argument("--seeds", type=parsing.comma_list(parsing.non_negative_int), default=None,
                   help="comma-separated seeds (default: the preset's: 0,1,2 for gpu-tiny, the default on a CUDA "
                        "machine; 0 for the others)")
    p.add_argument("--preset", default=None, help=f"one of {', '.join(presets.PRESETS)} (default: gpu on a machine "
                   "with a CUDA GPU, else cpu-tiny; the choice is printed and recorded)")
    p.add_argument("--steps", type=parsing.positive_int, default=None, help="training steps (default: the preset's)")
    p.add_argument("--vqct-captions", default=None, metavar="DIR",
                   help="--preset vqct-official only: the official caption corpus of VQCT's prior, a folder with "
                        "cub/text_c10, flowers/text_c10 and coco/ caption JSON (docs/vqct.md)")
    p.add_argument("--vqct-clip", default=None, metavar="DIR",
                   help="--preset vqct-official only: a folder holding CLIP ViT-B/32's text encoder saved by "
                        "transformers (docs/vqct.md, \"Using CLIP\")")
    p.add_argument("--option", type=parsing.option, action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method option, e.g. vqgan.beta=0.5 (repeatable)")
    p.add_argument("--data-root", default=None,
                   help="folder holding the datasets (default: $VQBENCH_DATA, else ~/data; see docs/datasets.md)")
    p.add_argument("--dataset-path", type=parsing.dataset_path, action="append", default=[], metavar="NAME=PATH",
                   help="folder of one dataset, e.g. ffhq=/x/ffhq (repeatable; overrides --data-root for it)")
    p.add_argument("--dataset-option", type=parsing.dataset_option, action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option for every dataset, e.g. train_crop=center, hflip=False, "
                        "resize_filter=lanczos (repeatable; part of the run id)")
    parsing.add_dataset_args(p)
    p.add_argument("--no-tensorboard", action="store_true",
                   help="write no TensorBoard events (by default every run writes its training curves, a "
                        "reconstruction grid and its final metrics under its folder's tensorboard/; not part of "
                        "the run id)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the encoder, decoder and discriminator (worth it on a GPU for long runs; "
                        "recorded, not part of the run id)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic CUDA kernels, so that a GPU run repeats itself bit for bit on the same GPU, "
                        "driver and torch (slower; no effect on CPU runs, which are deterministic anyway; recorded, "
                        "not part of the run id; docs/scheduling.md: What is bit-exact, per device)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: results/)")
    p.add_argument("--force", action="store_true", help="rerun finished runs instead of skipping them")
    p.add_argument("--no-wait", action="store_true", help="leave the runs that another driver on --out is training "
                   "(they are never trained twice) instead of waiting for them at the end (docs/scheduling.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list methods, datasets and presets, then exit")
    p.add_argument("--generate", action="store_true",
                   help="also train a token prior on every tokenizer, sample it and score the samples (gFID; "
                        "docs/generation.md); each prior starts when its tokenizer's record exists")
    p.add_argument("--prior-preset", default=None, metavar="NAME",
                   help="the prior's preset with --generate: cpu-tiny, smoke, gpu or paper (default: the one "
                        "named like --preset)")
    p.add_argument("--metric-weights", default=None, metavar="dinov2=PATH,clip=PATH",
                   help="local Hugging Face folders of DINOv2 ViT-L/14 (FD-DINOv2) and CLIP ViT-L/14@336 (CMMD); "
                        "without them those metrics are unavailable (docs/metrics.md); not part of the run id")
    add_fid_reference_arg(p)
    _add_scheduling_args(p)
    _add_until_resolved_args(p)


def add_fid_reference_arg(p: argparse.ArgumentParser) -> None:
    """--fid-reference, shared by run and eval (bench.evaluation.metrics.fid_reference_choice)."""
    from bench.evaluation.metrics import fid_reference_choice as choice

    p.add_argument("--fid-reference", default=choice.DEFAULT, metavar="val|train[:N]|stats:PATH",
                   help="what rFID compares the reconstructions with: val (default) the originals of the evaluated "
                        f"images; train[:N] N training images (default {choice.DEFAULT_TRAIN_IMAGES:,}, all when the "
                        "split is smaller; drawn with a fixed seed); stats:PATH precomputed Inception statistics, "
                        "pytorch-fid's .npz (mu, sigma) or ADM's reference batch (VIRTUAL_imagenet256_labeled.npz: "
                        "its pool3 mu and sigma). Recorded as protocol.fid.reference and named in the table headers; "
                        "part of the run id unless val (docs/metrics.md)")


def _add_until_resolved_args(p: argparse.ArgumentParser) -> None:
    """--until-resolved [METRICS] and its budget --max-seeds (bench.scheduling.until_resolved)."""
    from bench.scheduling.until_resolved import DEFAULT_MAX_SEEDS

    p.add_argument("--until-resolved", type=parsing.comma_list(str), nargs="?", const=[], default=None,
                   metavar="METRICS", help="after the grid's seeds, add seeds to the cells of unresolved comparisons "
                   "of these metrics (default: rFID and PSNR) one at a time, until each is resolved or --max-seeds "
                   "is reached; a group-sequential test keeps repeated looks valid (docs/results.md)")
    p.add_argument("--max-seeds", type=parsing.positive_int, default=None, metavar="N",
                   help=f"the most seeds per cell --until-resolved runs (default: {DEFAULT_MAX_SEEDS})")


# Scheduling flag -> the backend option it sets (bench/scheduling/backends: a backend's options are
# its constructor's keywords). A backend gets the options of the flags given that it takes; a flag
# it does not take is refused, so no flag is silently ignored.
FLAG_OPTIONS = {"--ray-address": "address", "--num-cpus": "num_cpus", "--num-gpus": "num_gpus",
                "--cpus-per-run": "resources", "--gpus-per-run": "resources", "--memory-per-run": "resources",
                "--resource": "resources", "--max-retries": "max_retries"}
DEFAULT_BACKEND = "ray"


def _add_scheduling_args(p: argparse.ArgumentParser, data_parallel: bool = True) -> None:
    """The scheduling flags; `data_parallel`: also --workers-per-run (training runs only)."""
    from bench.scheduling import backends
    from bench.scheduling.backends.ray import DEFAULT_MAX_RETRIES

    g = p.add_argument_group("scheduling", "How the runs are executed (docs/scheduling.md). By default each run is a "
                             "Ray task: a local Ray instance sized to this machine, or a cluster with --ray-address. "
                             "The flags below --no-ray are the Ray backends' (ray; ray-train, which "
                             "--workers-per-run N > 1 selects).")
    described = "; ".join(f"{name}{' (default)' if name == DEFAULT_BACKEND else ''} {backends.summary(name)}"
                          for name in backends.available())
    g.add_argument("--backend", default=None, metavar="NAME", help=f"what executes the runs: {described}")
    g.add_argument("--no-ray", action="store_true", help="the same as --backend local: the same jobs one after "
                   "another in this process")
    g.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="join a running Ray cluster (`ray start --head` ...) instead of starting a local instance")
    g.add_argument("--num-cpus", type=parsing.positive_int, default=None, metavar="N",
                   help="CPUs of the local Ray instance (default: all of this machine's)")
    g.add_argument("--num-gpus", type=parsing.non_negative_int, default=None, metavar="N",
                   help="GPUs of the local Ray instance (default: all of this machine's)")
    if data_parallel:
        g.add_argument("--workers-per-run", type=parsing.positive_int, default=None, metavar="N",
                       help="train each run on N data-parallel workers (the ray-train backend: Ray Train, GPUs or "
                            "CPU processes); N must split the preset's global batch; not part of the run id "
                            "(default: 1)")
    g.add_argument("--cpus-per-run", type=parsing.positive_float, default=None, metavar="N",
                   help="CPUs each run (each worker, with --workers-per-run) asks for, also its torch thread count "
                        "(default: 1)")
    g.add_argument("--gpus-per-run", type=parsing.non_negative_float, default=None, metavar="N",
                   help="GPUs each run (each worker, with --workers-per-run) asks for; 0.5 packs two runs per GPU "
                        "(default: 1 when the cluster has GPUs, else 0)")
    g.add_argument("--memory-per-run", default=None, metavar="SIZE",
                   help="memory each run asks Ray for, e.g. 8G (default: not scheduled by memory)")
    g.add_argument("--resource", type=parsing.resource, action="append", default=[], metavar="NAME=AMOUNT",
                   help="a custom Ray resource each run asks for, e.g. A100=1 (repeatable)")
    g.add_argument("--max-retries", type=parsing.non_negative_int, default=None, metavar="N",
                   help="restarts of a run whose worker died (killed, out of memory, node lost), each from its last "
                        f"checkpoint; errors of the run itself are never retried (default: {DEFAULT_MAX_RETRIES})")


DATA_PARALLEL_BACKEND = "ray-train"  # what --workers-per-run N > 1 runs on


def _backend_name(opts: argparse.Namespace) -> str:
    from bench.scheduling import backends

    if opts.no_ray and opts.backend not in (None, "local"):
        raise UserError(f"--no-ray is --backend local, but --backend {opts.backend} was given; drop one or the other")
    workers = getattr(opts, "workers_per_run", None) or 1
    if workers > 1:
        given = "--no-ray" if opts.no_ray else f"--backend {opts.backend}" if opts.backend else None
        if given is not None and (opts.no_ray or backends.registry.canonical(opts.backend) != DATA_PARALLEL_BACKEND):
            raise UserError(f"--workers-per-run {workers} trains each run on {workers} workers through Ray Train "
                            f"(--backend {DATA_PARALLEL_BACKEND}), but {given} was given; drop one or the other")
        return DATA_PARALLEL_BACKEND
    name = "local" if opts.no_ray else opts.backend or DEFAULT_BACKEND
    return backends.registry.canonical(name)  # an unknown name: one line with suggestions


def _scheduling(opts: argparse.Namespace) -> dict[str, Any]:
    """api.run_grid's keyword arguments: the backend and the options of the scheduling flags given
    (the backend's own defaults stand for the others)."""
    from bench.scheduling import backends
    from bench.scheduling.resources import Resources, parse_memory

    name = _backend_name(opts)
    values = {"--ray-address": opts.ray_address, "--num-cpus": opts.num_cpus, "--num-gpus": opts.num_gpus,
              "--cpus-per-run": opts.cpus_per_run, "--gpus-per-run": opts.gpus_per_run,
              "--memory-per-run": opts.memory_per_run, "--resource": opts.resource or None,
              "--max-retries": opts.max_retries}
    given = [flag for flag, value in values.items() if value is not None]
    takes = backends.option_names(name)
    refused = [flag for flag in given if takes is not None and FLAG_OPTIONS[flag] not in takes]
    if refused:
        how = "--no-ray" if opts.no_ray else f"--backend {name}"
        if takes is not None and not takes & set(FLAG_OPTIONS.values()):
            raise UserError(f"{', '.join(refused)}: Ray options, but {how} {backends.summary(name)}; "
                            "drop one or the other")
        raise UserError(f"{', '.join(refused)}: not options of {how}; drop them")
    options: dict[str, Any] = {"backend": name}
    for flag in given:
        if FLAG_OPTIONS[flag] != "resources":
            options[FLAG_OPTIONS[flag]] = values[flag]
    if any(FLAG_OPTIONS[flag] == "resources" for flag in given):
        options["resources"] = Resources(
            cpus=1.0 if opts.cpus_per_run is None else opts.cpus_per_run, gpus=opts.gpus_per_run,
            memory=None if opts.memory_per_run is None else parse_memory(opts.memory_per_run),
            custom=dict(opts.resource))
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = parsing.OneLineParser(prog="run_bench.py", description="Train and evaluate VQ image tokenizers that differ "
                           "only in their quantizer; print and save result tables.",
                           epilog="Subcommands: `table` rebuilds tables from existing records, `report` writes "
                           "figures and results/report.html, `list` lists methods, datasets and presets. "
                           "Without a subcommand, runs the benchmark.")
    _add_run_args(parser)
    return parser


def _method_options(chosen: list[str], options: list[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    per_method: dict[str, dict[str, Any]] = {}
    for method, key, value in options:
        if method not in chosen:
            raise UserError(f"--option {method}.{key}: method {method!r} is not among --methods ({','.join(chosen)})")
        per_method.setdefault(method, {})[key] = value
    return per_method


def _check_device(opts: argparse.Namespace) -> None:
    """A GPU that nvidia-smi lists but torch cannot use is said in one line: refused (exit 2) when the
    runs were asked to use CUDA on this machine, a warning when they would silently take the CPU
    default. With --ray-address the runs execute elsewhere, so this machine's GPUs decide nothing."""
    import torch

    from bench.runs import cuda_probe

    wants_cuda = (opts.device or "").startswith("cuda")
    takes_default = opts.device is None and opts.preset is None
    if opts.ray_address is not None or not (wants_cuda or takes_default) or torch.cuda.is_available():
        return
    reason = cuda_probe.unusable_reason()  # None: nvidia-smi lists no GPU either
    if wants_cuda:
        raise UserError(f"--device {opts.device}: " + (reason or f"torch {torch.__version__} sees no CUDA GPU on "
                                                       "this machine; drop --device (the CPU is used) or run on a "
                                                       "GPU machine"))
    if reason is not None:
        print(f"run_bench.py: warning: {reason}; meanwhile the runs take the CPU default", file=sys.stderr,
              flush=True)


def _until_resolved_design(opts: argparse.Namespace, seeds: list[int]) -> Any:
    """The sequential design of --until-resolved (None without it); bad flags stop here, before any run."""
    if opts.until_resolved is None:
        if opts.max_seeds is not None:
            raise UserError("--max-seeds is the budget of --until-resolved; add --until-resolved or drop --max-seeds")
        return None
    from bench.scheduling import until_resolved

    until_resolved.check_metrics(opts.until_resolved)
    return until_resolved.plan(seeds, opts.max_seeds)


def _method_sizes(opts: argparse.Namespace, chosen: list[str], per_method: dict[str, dict[str, Any]],
                  preset: presets.Preset) -> list[tuple[int | str, str, float | None]]:
    """(K, method, budget) cells of the grid: every --codebook-sizes K (default: the preset's, or a method's
    own where its codebook is fixed) for every method, budget None; or with --bits-per-image each method's
    K for each budget B (bench.runs.bit_budget), printed, with the first B that chose it; a budget a method
    cannot reach stops here, before any run."""
    if not opts.bits_per_image:
        if opts.codebook_sizes:
            return [(k, m, None) for k in opts.codebook_sizes for m in chosen]
        own = _fixed_sizes(chosen, per_method)
        return list(dict.fromkeys((own.get(m, k), m, None) for k in preset.codebook_sizes for m in chosen))
    if opts.codebook_sizes is not None:
        raise UserError("--bits-per-image chooses each method's codebook size; drop --codebook-sizes")
    from bench.runs import bit_budget

    choices = bit_budget.choose_all(chosen, per_method, opts.bits_per_image, preset.name)
    side = bit_budget.latent_side(preset.name)
    for budget in dict.fromkeys(opts.bits_per_image):
        picked = [c.describe() for c in choices if c.budget == budget]
        print(f"bits per image {budget:g} at {side}x{side} positions: {'; '.join(picked)}", flush=True)
    first: dict[tuple[int, str], float] = {}
    for c in choices:
        first.setdefault((c.codebook_size, c.method), c.budget)
    return [(k, m, b) for (k, m), b in first.items()]


def _fixed_sizes(chosen: list[str], per_method: dict[str, dict[str, Any]]) -> dict[str, int]:
    """{method: its K} for the methods whose codebook is fixed (Quantizer.fixed_codebook_size)."""
    import methods

    sizes = {m: methods.entry(m).cls.fixed_codebook_size(methods.build_options(m, **per_method.get(m, {})))
             for m in chosen}
    return {m: int(k) for m, k in sizes.items() if k is not None}


def grid(opts: argparse.Namespace) -> tuple[list[str], list[config.RunConfig], list[int], str, str]:
    """What a command line asks for, before anything runs: (methods, the RunConfigs of its grid, seeds,
    the preset's name, why that preset). Bad input stops here with a UserError."""
    chosen = opts.methods or default_methods()
    per_method = _method_options(chosen, opts.option)
    data = _dataset_settings(opts)
    preset_name, why = presets.choose(opts.preset)  # an unknown name stops here, before any work
    _check_device(opts)
    chosen_preset = presets.preset(preset_name)
    seeds = opts.seeds if opts.seeds is not None else list(chosen_preset.default_seeds)
    cells = _method_sizes(opts, chosen, per_method, chosen_preset)
    configs = [
        config.RunConfig(method=m, dataset=d, codebook_size=k, seed=s, preset=opts.preset, steps=opts.steps,
                         method_options=per_method.get(m, {}), device=opts.device, compile=opts.compile,
                         tensorboard=not opts.no_tensorboard, deterministic=opts.deterministic,
                         workers=opts.workers_per_run or 1, vqct_captions=opts.vqct_captions,
                         vqct_clip=opts.vqct_clip, fid_reference=opts.fid_reference, bits_budget=budget, **data)
        for d in opts.datasets for k, m, budget in cells for s in seeds
    ]
    return chosen, configs, seeds, preset_name, why


def run(opts: argparse.Namespace) -> int:
    metric_weights.use(opts.metric_weights)  # a bad folder stops here; the evaluating processes inherit it
    fid_reference_choice.parse(opts.fid_reference)  # so does a bad --fid-reference, before any run folder
    if opts.list:
        print(list_everything())
        return 0
    chosen, configs, seeds, preset_name, why = grid(opts)
    sequential_design = _until_resolved_design(opts, seeds)  # so does a budget with nothing to add
    if opts.deterministic:
        determinism.set_cublas_workspace()  # before this process or the workers it starts use CUDA
    seeds_note = "" if opts.seeds is not None else f"; seeds {','.join(map(str, seeds))} (the preset's default)"
    print(f"preset {preset_name}: {why}{seeds_note}", flush=True)

    def report(record: dict[str, Any]) -> None:
        c = record["config"]
        what = f"{c['method']} on {c['dataset']} K={c['codebook_size']} seed={c['seed']}"
        if record.get("claimed_by"):
            print(f"{record['status']} {what}: trained by {record['claimed_by']}", flush=True)
        elif record.get("skipped"):
            print(f"skipped {what}: finished before ({record['run_id']}; --force reruns)", flush=True)
        elif record["status"] == "finished":
            m = record["metrics"]
            print(f"finished {what} in {record['wall_s']:.0f}s: PSNR {m['psnr']:.2f}, SSIM {m['ssim']:.4f}, "
                  f"usage {100 * m['utilization']:.1f}%", flush=True)
        else:
            print(f"FAILED {what}: {record['error']}", file=sys.stderr, flush=True)

    def run_configs(batch: list[config.RunConfig], force: bool = opts.force) -> list[dict[str, Any]]:
        return generation_schedule.run_grid_with_priors(
            batch, opts.out, generation_schedule.prior_for_flags(opts.generate, opts.prior_preset, opts.preset),
            force=force, progress=not opts.no_progress, on_record=report, wait=not opts.no_wait,
            **_scheduling(opts))

    recs = run_configs(configs)
    if sequential_design is not None:
        from bench.scheduling import until_resolved

        recs += until_resolved.run(configs, opts.out, sequential_design, opts.until_resolved,
                                   lambda batch: run_configs(batch, force=False),  # the grid's runs: reused
                                   lambda: tables.build(opts.out, methods=chosen, datasets=opts.datasets)).records
    built = tables.build(opts.out, methods=chosen, datasets=opts.datasets)
    print_and_write_tables(built, opts.out, "terminal")
    try:  # figures and report take seconds; a plotting problem must not hide the benchmark's outcome
        from bench.reporting import report as report_mod

        page = report_mod.write_report(opts.out, built=built)
        print(f"figures written under {opts.out / 'figures'}; report: {page}")
    except Exception as exc:  # noqa: BLE001 - reported, and the tables above are already on disk
        print(f"run_bench.py: warning: figures/report not written: {type(exc).__name__}: {exc}", file=sys.stderr)
    failed = [r for r in recs if r["status"] != "finished"]
    return 1 if failed else 0


