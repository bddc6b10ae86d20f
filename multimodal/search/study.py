"""A hyperparameter study: Optuna over the trainer, stored in SQLite, resumable.

`OUT/` holds `study.db` (the Optuna study), `search.json` (the settings it was started
with: a resumed search must repeat them), `trials/trial_NNNN/` (one run directory per
trial), and after every session `trials.csv`, `search.png` and `best_config.yaml`
(results.py).

Each trial trains the config with its sampled values (applied after `--smoke` and `--set`,
like `--set`) and scores the best validation value of `train.early_stop_metric` (the
metric that also picks the run's best checkpoint; `metric` sets it). Epoch by epoch the
validation value goes to Optuna, whose median pruner stops a trial that falls below the
median of earlier trials at the same epoch. Splits are grouped (a search refuses
`data.split_by: image`) and only validation is scored: no test prediction is made.

Interrupted (Ctrl-C, a kill), a search continues with the same command: trials that were
running are marked failed and queued again with their values, continuing from their run
directory's last checkpoint when it has one; `trials` counts finished (complete or pruned)
trials, so the study ends with that many whatever the interruptions.

With `storage` (`--storage URL`: a database, or `journal:///file` on a shared file system)
the study lives there instead and several workers, on one host or many, run it at once with
the same command; `OUT/search.lock` is not used, the trials of dead workers are retried by
the live ones, and `trials` counts the finished trials of all workers (shared.py).
"""

from __future__ import annotations

import os
import shutil
import time

from multimodal import tasks
from multimodal.config import Config, config_from_cli
from multimodal.errors import ConfigError, RunError
from multimodal.outputs import settings_changed
from multimodal.search.results import write_results
from multimodal.search.shared import alive, check_url
from multimodal.search.space import check_space, load_space

STUDY = "search"
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures reach the caller as errors
    return optuna


class _Lock:
    """OUT/search.lock holds the pid of the search using OUT; a dead holder's lock is taken
    over (a killed search), a live one's refused."""

    def __init__(self, out: str):
        self.path = os.path.join(out, "search.lock")

    def __enter__(self):
        if os.path.exists(self.path):
            try:
                with open(self.path) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and alive(pid):
                raise RunError(f"another search (pid {pid}) is using {os.path.dirname(self.path)}",
                               "wait for it, or choose another --out")
        with open(self.path, "w") as f:
            f.write(str(os.getpid()))
        return self

    def __exit__(self, *exc):
        try:
            os.remove(self.path)
        except OSError:
            pass


def _settings(config_path, space_path, overrides, smoke, modality, metric, sampler, pruner,
              seed) -> dict:
    with open(space_path) as f:
        space_text = f.read()
    return {"config": os.path.abspath(config_path), "space": space_text,
            "overrides": [list(o) if isinstance(o, tuple) else o for o in overrides],
            "smoke": bool(smoke), "modality": modality, "metric": metric, "sampler": sampler,
            "pruner": pruner, "seed": seed}


def _check_settings(out: str, settings: dict) -> None:
    """First session: save the settings; later ones must repeat them."""
    changed = settings_changed(os.path.join(out, "search.json"), settings)
    if changed:
        raise ConfigError(f"{out} holds a search started with other settings ({', '.join(changed)} "
                          "differ); a search continues only with the command that started it",
                          "repeat that command (see search.json), or choose another --out")


def _base_config(config_path, overrides, smoke, modality, metric) -> tuple[Config, list]:
    overrides = list(overrides) + ([("train.early_stop_metric", metric)] if metric else [])
    cfg = config_from_cli(config_path, overrides, smoke, modality)
    if tasks.get(cfg.task).output != "classes":
        raise ConfigError(f"search: {config_path} is a {cfg.task} config; searches train "
                          "classifiers")
    if cfg.data.split_by != "group":
        raise ConfigError("search: data.split_by is 'image'; a search validates on grouped "
                          "splits only (an image-level split leaks and would pick the leak)",
                          "--set data.split_by=group")
    return cfg, overrides


def _recover(study) -> int:
    """Trials a killed or interrupted session left unfinished: running ones (a kill) are
    marked failed; they and interrupted ones (Ctrl-C, failed by Optuna) are queued again with
    their values and run directory, once. Returns how many were queued."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    requeued = {t.user_attrs.get("resumes") for t in trials}
    queued = 0
    for trial in trials:
        running = trial.state == TrialState.RUNNING
        if not (running or trial.state == TrialState.FAIL and
                trial.user_attrs.get("interrupted")) or trial.number in requeued:
            continue
        if running:  # no public call fails another process's trial (Optuna's heartbeat
            # fails stale trials only after a grace period): the storage's own setter
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={
            "resumes": trial.number, "workdir": trial.user_attrs.get("workdir")},
            skip_if_exists=False)
        queued += 1
    return queued


def finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run_search(config_path: str, space_path: str, out: str, trials: int | None = None,
               timeout: float | None = None, sampler: str = "tpe", pruner: str = "median",
               seed: int = 0, overrides=(), smoke: bool = False, modality: str | None = None,
               metric: str | None = None, show_progress: bool = False, log=print,
               storage: str | None = None) -> dict:
    """Run (or continue) the study in `out` until `trials` trials have finished or `timeout`
    seconds of this session have passed (no new trial starts after it); write the results.
    `storage` (a database URL or journal:///file, shared.py): a study several workers
    share, each started with the same command; `trials` counts the trials of them all.
    Returns {"finished", "complete", "pruned", "failed", "best": {...} | None, "out"}."""
    if trials is None and timeout is None:
        raise ConfigError("search: give a budget: --trials N and/or --timeout SECONDS")
    if trials is not None and trials < 1 or timeout is not None and timeout <= 0:
        raise ConfigError("search: --trials must be >= 1 and --timeout > 0")
    if sampler not in SAMPLERS or pruner not in PRUNERS:
        raise ConfigError(f"search: sampler must be one of {SAMPLERS}, pruner one of {PRUNERS}")
    if storage is not None:
        check_url(storage)
    params = load_space(space_path)
    base, overrides = _base_config(config_path, overrides, smoke, modality, metric)
    metric = base.train.early_stop_metric

    from multimodal.run import mesh as mesh_lib
    from multimodal.training.trainer import check_before_work

    mesh = mesh_lib.make_mesh()

    def make_config(values) -> Config:
        cfg = config_from_cli(config_path, [*overrides, *values], smoke, modality)
        if cfg.data.split_by != "group":
            raise ConfigError("data.split_by must stay 'group' in a search")
        check_before_work(cfg, os.path.join(out, "trials", "_check"), False, mesh)
        return cfg

    check_space(params, make_config, space_path)
    os.makedirs(os.path.join(out, "trials"), exist_ok=True)
    settings = _settings(config_path, space_path, overrides, smoke, modality, metric, sampler,
                         pruner, seed)
    objective = _objective(params, make_config, out, metric, show_progress, log)
    if storage is not None:
        study = _shared_search(storage, settings, out, objective, trials, timeout, log)
        return write_results(study, params, out, metric, config_path, overrides, smoke,
                             modality)
    with _Lock(out):
        study = _local_search(settings, out, objective, trials, timeout, log)
        return write_results(study, params, out, metric, config_path, overrides, smoke,
                             modality)


def _local_search(settings, out, objective, trials, timeout, log):
    """The one process of the study in OUT/study.db (under OUT/search.lock): what an
    earlier session left running is failed and queued again first."""
    _check_settings(out, settings)
    study = _open_study(f"sqlite:///{os.path.abspath(os.path.join(out, 'study.db'))}", settings)
    recovered = _recover(study)
    _set_sampler(study, settings)
    done = finished(study)
    if recovered:
        log(f"search: {recovered} interrupted trial(s) queued again; {done} finished so far")
    remaining = None if trials is None else max(0, trials - done)
    if remaining != 0:
        study.optimize(objective, n_trials=remaining, timeout=timeout)
    return study


def _open_study(storage, settings: dict):
    """The study, made on first use."""
    optuna = _optuna()
    return optuna.create_study(
        storage=storage, study_name=STUDY, direction="maximize", load_if_exists=True,
        pruner=(optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
                if settings["pruner"] == "median" else optuna.pruners.NopPruner()))


def _set_sampler(study, settings: dict, salt: int = 0) -> None:
    """This session's sampler. One seeded anew each session would repeat the first
    session's draws, and two workers seeded alike would draw alike: the seed moves on with
    the study's trials and the worker's `salt`."""
    optuna = _optuna()
    session_seed = (settings["seed"] + len(study.trials) + salt) % 2**31
    study.sampler = (optuna.samplers.TPESampler(seed=session_seed, n_startup_trials=5)
                     if settings["sampler"] == "tpe"
                     else optuna.samplers.RandomSampler(seed=session_seed))


def _shared_search(url, settings, out, objective, trials, timeout, log):
    """One worker of a study in shared storage: no lock on `out`, trials of dead workers
    retried, the budget shared (shared.py). Returns the study once this worker is done."""
    import zlib

    from multimodal.search import shared

    storage = shared.open_storage(url, log)
    settings = {**settings, "storage": "journal" if url.startswith(shared.JOURNAL) else
                "database"}
    _check_settings(out, settings)
    worker = shared.this_worker()
    study = _open_study(storage.storage, settings)
    _check_study_settings(study, settings, url)
    _set_sampler(study, settings, salt=zlib.crc32(f"{worker['host']}:{worker['pid']}".encode()))
    log(f"search: worker {worker['host']}:{worker['pid']} on the shared study {storage.url}; "
        f"{finished(study)} trial(s) finished so far")
    shared.optimize(study, objective, storage, trials, timeout, log)
    return study


def _check_study_settings(study, settings: dict, url: str) -> None:
    """Workers on other hosts have other --out folders: the study itself keeps the settings
    (the config by its text: its path may differ from host to host)."""
    with open(settings["config"]) as f:
        mine = {**{k: v for k, v in settings.items() if k != "config"}, "config_text": f.read()}
    saved = study.user_attrs.get("settings")
    if saved is None:
        study.set_user_attr("settings", mine)
        return
    changed = sorted(k for k in set(mine) | set(saved) if saved.get(k) != mine.get(k))
    if changed:
        raise ConfigError(f"the study in {url} was started with other settings "
                          f"({', '.join(changed)} differ); every worker runs the same command",
                          "repeat the first worker's command, or use another --storage")


def _objective(params, make_config, out, metric, show_progress, log):
    """Optuna's objective: one trial is one run directory trained with the sampled values,
    scored by its best validation `metric`, reported epoch by epoch for pruning."""
    optuna = _optuna()
    from multimodal.run.checkpoint import RunCheckpoints
    from multimodal.training.trainer import train

    def objective(trial) -> float:
        values = [(p.key, p.suggest(trial)) for p in params]
        cfg = make_config(values)
        workdir = trial.user_attrs.get("workdir") or os.path.join(
            out, "trials", f"trial_{trial.number:04d}")
        trial.set_user_attr("workdir", workdir)
        resume = RunCheckpoints.latest_step_in(workdir) is not None
        if os.path.isdir(workdir) and not resume:
            shutil.rmtree(workdir)  # died before its first checkpoint: start over
        shown = ", ".join(f"{k}={v!r}" for k, v in values)
        log(f"trial {trial.number}: {shown}" + (" (continuing its run)" if resume else ""))
        if resume:  # the curve so far, for the pruner
            for record in _history(workdir):
                trial.report(float(record[f"val_{metric}"]), int(record["epoch"]))

        def on_epoch(record):
            value = float(record[f"val_{metric}"])
            trial.report(value, int(record["epoch"]))
            if record["epoch"] < cfg.train.epochs and trial.should_prune():
                raise optuna.TrialPruned(f"val {metric} {value:.4f} at epoch "
                                         f"{record['epoch']} below the median")

        t0 = time.perf_counter()
        try:
            summary = train(cfg, workdir, resume=resume, show_progress=show_progress,
                            on_epoch=on_epoch)
        except optuna.TrialPruned:
            log(f"trial {trial.number}: pruned")
            raise
        except KeyboardInterrupt:  # the run saved a checkpoint: the next session continues it
            trial.set_user_attr("interrupted", True)
            raise
        trial.set_user_attr("epochs", summary["epochs"])
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        value = float(summary[f"best_{metric}"])
        log(f"trial {trial.number}: val {metric} {value:.4f}")
        return value

    return objective


def _history(workdir: str) -> list[dict]:
    from multimodal.run.files import read_history

    return read_history(workdir)
