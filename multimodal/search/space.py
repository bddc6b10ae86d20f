"""The search space: a small YAML file mapping config keys to distributions.

    # configs/baselines/fitzpatrick17k_space.yaml
    train.optimizer: {categorical: [adam, rmsprop, sgd]}
    train.learning_rate: {log_uniform: [0.001, 0.1]}
    model.dropout: {uniform: [0.0, 0.5]}
    data.batch_size: {int: [16, 64], step: 16}
    data.augment: {categorical: [[flip_h], [flip_h, flip_v, rotate90]]}

A key is any dotted config key (the `--set` syntax); `int` takes `step` or `log: true`,
`uniform` takes `step`. Categorical choices may be any YAML values (lists, mappings): they
are stored in the study as their YAML text. `check_space` tries the bounds and every
choice on the config before a trial runs, so a bad key or value stops the search at once.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import yaml

from multimodal.errors import ConfigError, UserError

KINDS = ("log_uniform", "uniform", "int", "categorical")
FORM = ("`key: {log_uniform: [low, high]}`, `{uniform: [low, high]}`, "
        "`{int: [low, high], step: 1}` or `{categorical: [a, b, ...]}`")


@dataclasses.dataclass(frozen=True)
class Param:
    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()  # categorical: the values as YAML text when any is not a scalar
    step: float | int | None = None
    log: bool = False
    encoded: bool = False  # choices are YAML text (non-scalar values)

    @property
    def log_scale(self) -> bool:
        return self.kind == "log_uniform" or (self.kind == "int" and self.log)

    def suggest(self, trial) -> Any:
        """The trial's value of this parameter (decoded: what the config receives)."""
        if self.kind == "categorical":
            return self.decode(trial.suggest_categorical(self.key, list(self.choices)))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high),
                                   log=self.kind == "log_uniform", step=self.step)

    def decode(self, stored) -> Any:
        """A value as the study stores it -> the config value."""
        return yaml.safe_load(stored) if self.encoded else stored

    def examples(self) -> list:
        """Values that bound this parameter: both ends, or every choice."""
        if self.kind == "categorical":
            return [self.decode(c) for c in self.choices]
        return [self.low, self.high]


def _number(value, where: str, integer: bool = False):
    if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {value!r} is not a number")
    if integer:
        if float(value) != int(value):
            raise ConfigError(f"{where}: {value!r} is not an integer")
        return int(value)
    return float(value)


def _scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def parse_param(key: str, spec, where: str) -> Param:
    """One entry of a space file -> Param, checked."""
    at = f"{where}: {key}"
    if not isinstance(key, str) or "." not in key and key not in ("modality", "task"):
        raise ConfigError(f"{where}: {key!r} is not a dotted config key (e.g. train.learning_rate)")
    if not isinstance(spec, dict):
        raise ConfigError(f"{at}: expected a mapping like {FORM}, got {spec!r}")
    kinds = [k for k in spec if k in KINDS]
    extra = sorted(set(spec) - set(KINDS) - {"step", "log"})
    if len(kinds) != 1 or extra:
        raise ConfigError(f"{at}: give exactly one of {list(KINDS)} (and optionally step / log), "
                          f"got {sorted(spec)}", f"write it as {FORM}")
    kind, args = kinds[0], spec[kinds[0]]
    if kind == "categorical":
        if set(spec) != {"categorical"}:
            raise ConfigError(f"{at}: categorical takes no step or log")
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{at}: categorical needs a non-empty list of choices, got {args!r}")
        encoded = not all(_scalar(c) for c in args)
        choices = tuple(yaml.safe_dump(c, default_flow_style=True).strip().removesuffix("\n...")
                        if encoded else c for c in args)
        if len(set(map(str, choices))) != len(choices):
            raise ConfigError(f"{at}: the choices {args!r} repeat a value")
        return Param(key, kind, choices=choices, encoded=encoded)
    if not isinstance(args, list) or len(args) != 2:
        raise ConfigError(f"{at}: {kind} needs [low, high], got {args!r}")
    integer = kind == "int"
    low, high = (_number(v, at, integer) for v in args)
    if not low < high:
        raise ConfigError(f"{at}: low {low!r} must be below high {high!r}")
    step = _number(spec["step"], f"{at}.step", integer) if "step" in spec else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{at}.log: expected true or false, got {log!r}")
    if log and kind != "int":
        raise ConfigError(f"{at}: `log` is for int; use log_uniform for a float")
    if kind == "log_uniform" and (low <= 0 or step is not None):
        raise ConfigError(f"{at}: log_uniform needs low > 0 and no step")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{at}.step: {step!r} must be > 0 (and int steps cannot be log)")
    return Param(key, kind, low, high, step=step, log=log)


def load_space(path: str) -> list[Param]:
    """Read and check a space file (every key at most once)."""
    if not os.path.exists(path):
        raise ConfigError(f"search space file not found: {path}")
    try:
        with open(path) as f:
            tree = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{path}: not valid YAML" + (f" (line {mark.line + 1})" if mark else ""))
    if not isinstance(tree, dict) or not tree:
        raise ConfigError(f"{path}: expected a mapping of config keys to distributions",
                          "e.g. train.learning_rate: {log_uniform: [0.0001, 0.01]}")
    return [parse_param(key, spec, path) for key, spec in tree.items()]


def check_space(params: list[Param], make_config: Callable[[list], Any], where: str) -> None:
    """Build the config with each bound and each choice of every parameter (others at the
    config's values); a value the config refuses stops here, naming the space file."""
    for param in params:
        for value in param.examples():
            try:
                make_config([(param.key, value)])
            except UserError as exc:
                raise ConfigError(f"{where}: {param.key} = {value!r} is refused by the config: "
                                  f"{exc.problem}") from None
