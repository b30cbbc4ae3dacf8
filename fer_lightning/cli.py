"""The command-line layer: Hydra entry points, resolvers, one-line errors and exit codes, the
per-job error policy of multirun sweeps, and the `key=value` parser of the non-Hydra commands."""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, InstantiationException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fer_lightning import completion
from fer_lightning.data.formats import layout_classes, layout_protocol
from fer_lightning.errors import ConfigError
from fer_lightning.files import write_text_atomic
from fer_lightning.paths import CONFIG_DIR
from fer_lightning.search import study_seed

log = logging.getLogger("fer_lightning")

# A failed sweep job leaves its error, one line, in `<job dir>/results/` under this name; a job
# that finished leaves DONE_FILE there. A job directory with neither is unfinished.
FAILED_FILE = "failed.txt"
DONE_FILE = "done.txt"


def run_name(override_dirname: str) -> str:
    """A directory name for a run, stable for the same overrides so a rerun finds its checkpoints.

    `model=tnet,seed=1` becomes `model-tnet_seed-1`: `=` and `,` in a path would have to be quoted
    in every later override that names it (`ckpt_path=...`).
    """
    if not override_dirname:
        return "default"
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", override_dirname.replace("=", "-"))
    if len(name) > 100:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[:80]}-{digest}"
    return name


def checkpoint_run_name(ckpt_path: str) -> str:
    """The part of an eval, predict or export run directory that names the checkpoint.

    `outputs/train/runs/model-tnet/checkpoints/last.ckpt` becomes `model-tnet-last-<hash>`: the
    training run's name and the file's, for the reader, and a hash of the resolved path, so two
    checkpoints never share a directory (docs/run-directory.md).
    """
    path = Path(ckpt_path).expanduser().resolve()
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return run_name(f"{run_dir.name}-{path.stem}")[:80] + f"-{digest}"


def gpu_precision(accelerator: str = "gpu") -> str:
    """bf16 where the GPU computes it natively (no loss scaling), fp16 with a scaler otherwise,
    and full precision where the run has no GPU (`trainer=ddp trainer.accelerator=cpu`)."""
    import torch  # here: the plain commands (data.synthetic, data.check) start without torch

    if accelerator == "cpu" or not torch.cuda.is_available():
        return "32-true"
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16-mixed"
    return "16-mixed"


def cudnn_benchmark(deterministic: bool | str | None) -> bool:
    """cuDNN's search for the fastest kernels, unless the run asks to be deterministic (its
    choices then differ between runs, and PyTorch ignores cuDNN's deterministic flag under it)."""
    return deterministic in (False, None)


def register_resolvers() -> None:
    resolvers = {
        "fer_cudnn_benchmark": cudnn_benchmark,
        "fer_run_name": run_name,
        "fer_checkpoint_run_name": checkpoint_run_name,
        "fer_gpu_precision": gpu_precision,
        "fer_study_seed": study_seed,
        "fer_layout_classes": layout_classes,
        "fer_layout_protocol": layout_protocol,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def _user_error(exc: BaseException) -> ConfigError | None:
    """Finds a ConfigError behind Hydra's instantiation wrapper, if there is one."""
    while exc is not None:
        if isinstance(exc, ConfigError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def unknown_choice(argv: Sequence[str], config_name: str = "train") -> str | None:
    """A one-line complaint about the first `group=option` of `argv` naming no option of a group.

    Hydra reports these itself, but across many lines (for `model`, a list of 80 names). The
    groups and options are those Hydra will compose from (`config_search.ConfigOptions`): conf/,
    the nodes stored from code, and a user's `--config-dir` and `hydra.searchpath` folders. The
    `model` options include the registry's names, which need no file in conf/model/.
    """
    from fer_lightning.config_search import ConfigOptions
    from fer_lightning.models.registry import model_choices, unknown_model

    try:
        configs = ConfigOptions(argv, config_name)
    except ConfigError as exc:  # a --config-dir that is not a folder
        return str(exc)
    if not configs.checkable:
        return None
    for override in configs.overrides:
        group, sep, value = override.partition("=")
        if not sep or "/" in group or "." in group or value[:1] in "[({":
            continue
        options = configs.options(group)
        if group == "model":
            options = sorted({*options, *model_choices()})
        if not options:
            continue
        for choice in value.split(","):
            if choice in {*options, "null"}:
                continue
            if group == "model":
                return unknown_model(choice)
            return f"unknown {group} '{choice}': choose {', '.join(options)}"
    return None


def fail(message: str) -> NoReturn:
    """Ends a command with a user error: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def in_multirun() -> bool:
    """True inside a job of `-m`, where one job's error must not end the other jobs."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _mark_job(marker: str | None = None, text: str = "") -> None:
    """Leaves `marker` (FAILED_FILE or DONE_FILE, or none) as the only one in the job's results/.

    An earlier attempt's marker goes first, so a rerun job that is killed reads as unfinished.
    """
    if not HydraConfig.initialized():
        return
    results = Path(HydraConfig.get().runtime.output_dir) / "results"
    for old in (FAILED_FILE, DONE_FILE):
        (results / old).unlink(missing_ok=True)
    if marker:
        write_text_atomic(results / marker, text)


def record_failure(exc: Exception) -> None:
    """Logs a job's error with its trace and leaves it, one line, in `<job dir>/results/`."""
    log.error("job failed; the sweep continues", exc_info=exc)
    while exc.__cause__ is not None:  # the original error, not Hydra's instantiation wrapper
        exc = exc.__cause__
    message = " ".join(str(exc).split()) or "(no message)"
    _mark_job(FAILED_FILE, f"{type(exc).__name__}: {message}\n")


def _distributed_job() -> bool:
    """Whether this process is one of several ranks of a job: its process group is up, or the
    launcher said so (Lightning's launcher and torchrun set WORLD_SIZE, SLURM its task count)."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        return distributed.get_world_size() > 1
    return any(int(os.environ.get(name, "1") or 1) > 1 for name in ("WORLD_SIZE", "SLURM_NTASKS"))


def run_sweep_job(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Runs one job of a multirun, recording an error instead of raising it.

    Hydra's basic launcher would stop the sweep at the first error, and a user error's
    `sys.exit(2)` would end the process. Returns what the sweeper needs: for a search
    (`optimized_metric` set: one name, or a list for a multi-objective search), the named values
    of the task's result; else the result itself. A failed job returns None, which the Optuna
    sweeper marks as a failed trial. A job of several processes (DDP) is recorded and then ends
    with its error: the other ranks would wait for this one in their next collective until the
    30-minute timeout (under SLURM, `SLURM_KILL_BAD_EXIT` ends them with it).
    """
    _mark_job()
    try:
        result = task(cfg)
    except Exception as exc:
        record_failure(exc)
        if _distributed_job():
            raise
        return None
    _mark_job(DONE_FILE, "done\n")
    metric = cfg.get("optimized_metric")
    if not metric:
        return result
    names = [metric] if isinstance(metric, str) else list(metric)
    missing = [name for name in names if name not in result]
    if missing:
        raise ConfigError(f"optimized_metric {missing[0]} is not a result: one of {list(result)}")
    values = [float(result[name]) for name in names]
    return values[0] if isinstance(metric, str) else values


def parse_key_values(argv: Sequence[str], defaults: Mapping[str, Any], example: str) -> dict:
    """The `key=value` arguments of a command that is not a Hydra app, over `defaults`.

    Values are parsed as in Hydra overrides (numbers as numbers); dotted keys nest. A key that is
    not in `defaults` (at any depth), an argument without `=`, or a value that does not parse is a
    ConfigError naming the argument, the valid keys and `example`.
    """
    keys = ", ".join(_dotted_keys(defaults))
    for arg in argv:
        if "=" not in arg or arg.startswith("="):
            raise ConfigError(f"expected key=value, got {arg!r}; keys: {keys}; e.g. {example}")
    try:
        given = OmegaConf.to_container(OmegaConf.from_dotlist(list(argv)))
    except Exception as err:  # omegaconf/yaml raise several unrelated types for bad syntax
        summary = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"could not parse the arguments ({summary}); use key=value") from err
    unknown = sorted(set(_dotted_keys(given)) - set(_dotted_keys(defaults)))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; keys: {keys}")
    return OmegaConf.to_container(OmegaConf.merge(defaults, given))


def _dotted_keys(node: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        if isinstance(value, Mapping):
            keys.extend(_dotted_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def run_command(main: Callable[[], int]) -> int:
    """Runs a non-Hydra command: a ConfigError ends it as `fail` does (one line, exit status 2)."""
    try:
        return main()
    except ConfigError as err:
        fail(str(err))


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Wraps a task as a Hydra app whose user errors end in one line and exit code 2."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @functools.wraps(task)
        def validated(cfg: DictConfig) -> Any:
            # Imported here: they import torch and Lightning, which --help needs not.
            from fer_lightning.runs.run_lock import record_run, run_dir_lock
            from fer_lightning.validate import validate

            run_dir = Path(HydraConfig.get().runtime.output_dir)
            with run_dir_lock(run_dir):
                record_run(run_dir, cfg)
                validate(cfg, config_name)
                return task(cfg)

        @functools.wraps(task)
        def guarded(cfg: DictConfig) -> Any:
            if in_multirun():  # one job's error is recorded and must not end the sweep
                return run_sweep_job(validated, cfg)
            try:
                return validated(cfg)
            except (ConfigError, InstantiationException, OmegaConfBaseException, OSError) as exc:
                # Said here, not after Hydra's run_job, which first writes a line of its own.
                error = _user_error(exc)
                message = str(error) if error else outside_error(exc)
                if message is None:
                    raise
                fail(message)

        register_resolvers()
        from fer_lightning.models import register_model_configs
        from fer_lightning.presets import register_experiment_configs

        register_model_configs()
        register_experiment_configs()
        app = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)(
            guarded
        )

        @functools.wraps(app)
        def checked() -> Any:
            # Hydra prints its own errors (an unknown key, a missing value) across several lines
            # and exits 1 unless asked to raise them, so that they can be said in one line here.
            os.environ["HYDRA_FULL_ERROR"] = "1"
            try:
                problem = unknown_choice(sys.argv[1:], config_name)
                if problem:
                    fail(problem)
                completion.before_hydra(sys.argv[1:])
                result = app()
                completion.after_hydra(sys.argv[1:])
                return result
            except (HydraException, OmegaConfBaseException, OSError) as exc:  # before the task
                message = outside_error(exc)
                if message is None:
                    raise
                fail(message)

        return checked

    return decorate


# File-system errors the user can fix, with what to do about each.
FILE_ERRORS = {
    errno.ENOSPC: "free space or write elsewhere",
    errno.EDQUOT: "free space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "this user may not use it: change its permissions or use another place",
    errno.EPERM: "this user may not use it: change its permissions or use another place",
}


def outside_error(exc: BaseException) -> str | None:
    """One line for an error of the command line (Hydra's, OmegaConf's) or of the file system that
    the user can fix; None for anything else, which keeps its traceback."""
    if isinstance(exc, OSError):
        if exc.errno not in FILE_ERRORS:
            return None
        where = exc.filename or "a file of the run directory"
        return f"cannot write {where} ({exc.strerror}): {FILE_ERRORS[exc.errno]}"
    missing = re.search(r"Missing mandatory value: ([\w.]+)", f"{exc} {exc.__cause__}")
    if missing:  # also when met while resolving another value, e.g. the run directory's name
        from fer_lightning.validate import required

        return required(missing.group(1))
    if isinstance(exc, InstantiationException):
        return None
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
    if isinstance(exc, OverrideParseException):
        return f"cannot parse the overrides ({lines[0]}): write key=value, quoting special values"
    if lines[0].startswith("Could not override"):
        # Hydra's next line says how to add the key; most often it is a misspelt one instead.
        return f"{lines[0].removesuffix('.')}: no such key in the config ({lines[-1]})"
    return " ".join(lines)


def instantiate_dict(node: DictConfig | None) -> list[Any]:
    """Instantiates every entry with a `_target_` (callbacks, loggers); other keys are settings."""
    if not node:
        return []
    return [
        hydra.utils.instantiate(value)
        for value in node.values()
        if isinstance(value, DictConfig) and "_target_" in value
    ]
