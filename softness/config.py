"""The config: load, fill defaults from the JSON schema, validate.

The schema (``softness/config.schema.yaml``, also reached as
``workflow/schemas/config.schema.yaml``) is the single source of truth for every key,
its type, its bounds and its default. :func:`resolve` returns a complete config; a
bad one raises :class:`~softness.errors.SoftnessError` with one sentence naming the key.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from softness.errors import SoftnessError


@functools.cache
def schema() -> dict:
    """The config schema as a dict."""
    text = resources.files("softness").joinpath("config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _fill_defaults(sch: dict, instance) -> None:
    """Fill missing keys from ``default`` entries, recursing into objects."""
    if not isinstance(instance, dict):
        return
    for key, sub in sch.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(sub, instance[key])


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = _key_path(error)
        name = ", ".join(f"{where}.{k}" if where != "(top level)" else k for k in extra)
        return f"unknown config key '{name}'"
    return f"config key '{_key_path(error)}': {error.message}"


def _check_consistency(cfg: dict) -> None:
    """Constraints between keys that a JSON schema cannot express."""
    temps = cfg["temperatures_K"]
    if cfg["quench"]["T_min_K"] > min(temps):
        raise SoftnessError(
            f"config key 'quench.T_min_K' ({cfg['quench']['T_min_K']} K) is above the lowest of "
            f"temperatures_K ({min(temps)} K); the quench must reach every temperature.")
    t_train = cfg["train"]["T_train_K"]
    if t_train is not None and t_train not in temps:
        raise SoftnessError(f"config key 'train.T_train_K' ({t_train} K) is not one of temperatures_K.")
    f = cfg["features"]
    if f["radial_r_max_A"] <= f["radial_r_min_A"]:
        raise SoftnessError("config key 'features.radial_r_max_A' must exceed features.radial_r_min_A.")


def resolve(cfg: dict | None) -> dict:
    """Return a complete, validated copy of ``cfg`` with every default filled in.

    Raises:
      SoftnessError: naming the first offending key.
    """
    cfg = copy.deepcopy(cfg) if cfg else {}
    if not isinstance(cfg, dict):
        raise SoftnessError("the config must be a mapping of keys to values.")
    sch = schema()
    _fill_defaults(sch, cfg)
    validator = jsonschema.Draft7Validator(sch)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise SoftnessError(_describe(errors[0]) + ".")
    _check_consistency(cfg)
    return cfg


def load(path: str | Path | None) -> dict:
    """Read a YAML config file (``None``: the defaults) and :func:`resolve` it."""
    if path is None:
        return resolve({})
    path = Path(path)
    if not path.exists():
        raise SoftnessError(f"config file {path} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SoftnessError(f"config file {path} is not valid YAML ({exc}).") from None
    return resolve(raw)


def training_temperature(cfg: dict) -> float:
    """T_train: the configured one, or the lowest simulated temperature."""
    t = cfg["train"]["T_train_K"]
    return min(cfg["temperatures_K"]) if t is None else t
