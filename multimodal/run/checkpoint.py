"""Orbax checkpoints of a run: `latest` (for --resume) and `best` (top-k by a val metric),
under the run directory's `checkpoints/` (layout.py):
    checkpoints/latest/<step>/{model,optimizer,progress}, checkpoints/best/<step>/...
Orbax writes each step to a temporary folder and renames it when complete, so
a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

import jax
import orbax.checkpoint as ocp
from flax import nnx

from multimodal.errors import RunError
from multimodal.run.layout import CHECKPOINTS, CONFIG

ITEMS = ("model", "optimizer", "progress")


@contextlib.contextmanager
def use_weights(model, weights):
    """Temporarily load `weights` (pure dict of parameters) into `model`; no-op for None."""
    if weights is None:
        yield model
        return
    params = nnx.state(model, nnx.Param)
    backup = params.to_pure_dict()
    nnx.replace_by_pure_dict(params, weights)
    nnx.update(model, params)
    try:
        yield model
    finally:
        nnx.replace_by_pure_dict(params, backup)
        nnx.update(model, params)


_CPU_HANDLER_SET = False


def _no_replica_parallel_on_cpu() -> None:
    """Orbax splits a replicated array between its replicas so that each device writes a
    slice. On CPU devices that is eager slicing, one compile per parameter shape: the first
    save of a run on 4 CPU devices took 31-35 s against 0.4 s without it (150 small arrays).
    Replicated arrays are then written once, by replica 0 of host 0; restoring is unchanged.
    Other backends keep Orbax's default. Registered once per process."""
    global _CPU_HANDLER_SET
    if _CPU_HANDLER_SET or jax.default_backend() != "cpu":
        return
    from orbax.checkpoint._src.metadata import array_metadata_store  # as Orbax's default has

    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(
            use_replica_parallel=False, array_metadata_store=array_metadata_store.Store()),
        override=True)
    _CPU_HANDLER_SET = True


def _barriers(name: str):
    return ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name)


class RunCheckpoints:
    """Two Orbax managers over one run directory."""

    def __init__(self, workdir: str, metric: str, keep_best: int = 2):
        _no_replica_parallel_on_cpu()
        root = os.path.abspath(os.path.join(workdir, CHECKPOINTS))
        self.metric = metric
        # each manager meets the other hosts at barriers of its own names (Orbax's names are
        # otherwise the same for both managers, and two saves in flight would collide)
        self.latest = ocp.CheckpointManager(
            os.path.join(root, "latest"), item_names=ITEMS,
            options=ocp.CheckpointManagerOptions(max_to_keep=1, cleanup_tmp_directories=True,
                                                 multiprocessing_options=_barriers("latest")))
        self.best = ocp.CheckpointManager(
            os.path.join(root, "best"), item_names=ITEMS,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep_best, best_fn=lambda m: m[metric], best_mode="max",
                keep_checkpoints_without_metrics=False, cleanup_tmp_directories=True,
                multiprocessing_options=_barriers("best")))

    @staticmethod
    def _args(model, optimizer, progress):
        return ocp.args.Composite(
            model=ocp.args.StandardSave(nnx.state(model).to_pure_dict()),
            optimizer=ocp.args.StandardSave(nnx.state(optimizer).to_pure_dict()),
            progress=ocp.args.JsonSave(progress))

    def save(self, step: int, model, optimizer, progress: dict, metrics: dict | None = None,
             best_weights=None):
        """Save `latest`; with metrics also a `best` candidate, holding `best_weights`
        (the EMA parameters) as its model when given."""
        self.latest.save(step, args=self._args(model, optimizer, progress), force=True)
        if metrics is not None:
            if jax.process_count() > 1:
                # latest's background finalize and best's save both meet the other hosts at
                # barriers; with one name they collided ("Barrier ... is already ongoing") and a
                # host died while the others waited for it. Names of their own (_barriers), and
                # one collective at a time, as JAX asks of barrier syncs.
                self.latest.wait_until_finished()
            with use_weights(model, best_weights):
                args = self._args(model, optimizer, progress)
                self.best.save(step, args=args, metrics=metrics, force=True)
                self.best.wait_until_finished()  # the swap back must not race the async save

    @staticmethod
    def latest_step_in(workdir: str) -> int | None:
        """The newest finished `latest` step on disk, without opening (or creating) anything."""
        return max(finished_steps(os.path.join(workdir, CHECKPOINTS, "latest")), default=None)

    def restore_latest(self, model, optimizer) -> dict | None:
        """Load the latest checkpoint into model and optimizer; return its progress."""
        step = self.latest.latest_step()
        if step is None:
            return None
        return restore(self.latest, step, model, optimizer)

    def wait(self):
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self):
        self.latest.close()
        self.best.close()


def restore(manager, step: int, model, optimizer=None) -> dict:
    model_state = nnx.state(model)
    items = {"model": ocp.args.StandardRestore(model_state.to_pure_dict()),
             "progress": ocp.args.JsonRestore()}
    if optimizer is not None:
        items["optimizer"] = ocp.args.StandardRestore(nnx.state(optimizer).to_pure_dict())
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    nnx.replace_by_pure_dict(model_state, restored["model"])
    nnx.update(model, model_state)
    if optimizer is not None:
        opt_state = nnx.state(optimizer)
        nnx.replace_by_pure_dict(opt_state, restored["optimizer"])
        nnx.update(optimizer, opt_state)
    return dict(restored["progress"])


def finished_steps(folder: str) -> list[int]:
    """Steps Orbax finished writing in `folder` (a step is renamed from a temporary name
    when complete, so only integer-named folders count)."""
    if not os.path.isdir(folder):
        return []
    return sorted(int(e.name) for e in os.scandir(folder) if e.is_dir() and e.name.isdigit())


def load_model_weights(workdir: str, model, which: str = "best",
                       metric: str = "balanced_accuracy") -> dict:
    """Load the best (by `metric`) or latest weights of a run into `model`; return its progress.

    A damaged run falls back, with a warning, from `best` to the latest step and from an
    unreadable step to the next one; a run with no readable step raises `RunError`.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', not {which!r}")
    root = os.path.join(os.path.abspath(workdir), CHECKPOINTS)
    candidates = [which] + (["latest"] if which == "best" else [])
    logging.getLogger("absl").setLevel(logging.ERROR)  # read-only notices are expected here
    problems = []
    for kind in candidates:
        folder = os.path.join(root, kind)
        if not finished_steps(folder):
            problems.append(f"no finished step in checkpoints/{kind}")
            continue
        manager = ocp.CheckpointManager(folder, item_names=ITEMS, options=ocp.CheckpointManagerOptions(
            read_only=True, best_fn=lambda m: m[metric], best_mode="max"))
        try:
            best = manager.best_step() if kind == "best" else None
            order = [best] if best is not None else []
            order += [s for s in reversed(finished_steps(folder)) if s not in order]
            for step in order:
                try:
                    progress = restore(manager, step, model)
                except Exception as exc:  # noqa: BLE001 - any unreadable step: try the next
                    problems.append(f"checkpoints/{kind}/{step} unreadable "
                                    f"({type(exc).__name__})")
                    continue
                if problems:
                    warnings.warn(f"{workdir}: {'; '.join(problems)}; loaded "
                                  f"checkpoints/{kind}/{step} instead", stacklevel=2)
                return progress
        finally:
            manager.close()
    raise RunError(f"{workdir} has no readable checkpoint: {'; '.join(problems)}",
                   "train it again into a new folder: python scripts/train.py --config "
                   f"{os.path.join(workdir, CONFIG)} --workdir NEW_FOLDER")
