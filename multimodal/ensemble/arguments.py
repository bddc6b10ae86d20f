"""Checks of the ensemble scripts' arguments, made before any member trains or any file is
written: the builders find these mistakes only after the expensive part (stacking's
`dev_folds` and `fold_split` after WORKDIR/full is trained and saved)."""

from __future__ import annotations

import dataclasses
import os
import warnings

from multimodal.config import Config
from multimodal.errors import ConfigError

DEFAULT_FOLDS = 5  # dev_folds' default for a train/val/test base split


def check_stacking_folds(cfg: Config, folds: int | None) -> None:
    """`--folds` must give every fold member a test, a validation and a training fold
    (>= 3), agree with a K-fold base split's own K-1 development folds, and not ask for
    more folds than the dataset has groups (a group never spans folds; the groups outside
    the test split, which the folds divide, are known only once the member has made its
    split, so a --folds between those two counts is still refused after it trains)."""
    if folds is not None and folds < 3:
        raise ConfigError(f"--folds {folds}: stacking needs at least 3 folds (one predicted, "
                          "one validating, one or more training)",
                          f"pass --folds 3 or more, or leave it out for {DEFAULT_FOLDS}")
    if cfg.data.fold is not None:
        _check_kfold_base(cfg, folds)
        return
    k, groups = folds or DEFAULT_FOLDS, _cheap_table(cfg).frame["group_id"].nunique()
    if k > groups:
        asked = f"--folds {k}" if folds else f"stacking's default {k} folds"
        raise ConfigError(f"{asked}: the dataset has only {groups} group(s) (lesions or "
                          "patients), fewer still outside the test split, and every fold "
                          "needs at least one",
                          f"pass a smaller --folds, e.g. {min(DEFAULT_FOLDS, groups)}"
                          if groups >= 3 else "stacking needs a dataset of 3 or more groups")


def _cheap_table(cfg: Config):
    """The configured table without opening an image: its groups and ids are all these
    checks need, and the member's training checks the images anyway."""
    from multimodal.data.split.build import load_table

    with warnings.catch_warnings():  # the training run repeats its warnings (dropped rows)
        warnings.simplefilter("ignore")
        return load_table(dataclasses.replace(cfg.data, verify="none"))


def _check_kfold_base(cfg: Config, folds: int | None) -> None:
    """A K-fold base split (data.fold) leaves K-1 development folds: stacking uses those."""
    k = cfg.data.folds
    if cfg.data.split_file:
        from multimodal.data.split.grouped import load_split

        split = load_split(cfg.data.split_file, _cheap_table(cfg))
        if "fold" not in split.columns:
            return  # data.fold without folds: the member's training says so, first thing
        k = int(split["fold"].max()) + 1
    if folds is not None and folds != k - 1:
        raise ConfigError(f"the K-fold split (K = {k}, test fold {cfg.data.fold}) leaves {k - 1} "
                          f"development folds and stacking uses them; --folds {folds} asks for "
                          "others", f"drop --folds (or pass --folds {k - 1})")
    if k - 1 < 3:
        raise ConfigError(f"stacking needs at least 3 development folds; the K-fold split "
                          f"(K = {k}) leaves {k - 1} besides the test fold",
                          "use 4 or more folds (--set data.folds=5, or a split file with 4+)")


def check_late_fusion_members(members: list[str]) -> None:
    """Late fusion weighs two or more different runs: one run gets weight 1.0 and a run
    named twice (even through another spelling of its path) only duplicates itself."""
    seen = {}
    for member in members:
        real = os.path.realpath(member)
        if real in seen:
            same = "" if seen[real] == member else f" (as {seen[real]})"
            raise ConfigError(f"--members names the run {member} twice{same}; late fusion "
                              "weighs different runs", "list each run directory once")
        seen[real] = member
    if len(members) < 2:
        raise ConfigError(f"--members: late fusion needs at least two runs, got {len(members)} "
                          f"({members[0]})", "add the other run directories, e.g. --members "
                          "runs/image runs/image_meta")
