"""Parameters: load params.yaml plus override files, apply --set overrides, validate.

The merged parameters are validated against ``schemas/params.schema.yaml`` (types, ranges,
names) and then by a few checks a schema cannot express (mixing points a network has).
Every failure is a :class:`ConfigError` whose message names the key and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from mixstudy.core.errors import ConfigError
from mixstudy.core.networks import mixing_points

SCHEMA_PATH = Path(str(resources.files("mixstudy.core") / "schemas" / "params.schema.yaml"))


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` with ``override`` merged in; nested dicts merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 (core schema) scalars, as DVC reads params.yaml:
    ``1e6`` is a number, ``on``/``off``/``yes``/``no`` stay strings, ``0777`` is decimal 777,
    and only ``true``/``false`` are booleans."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (
        "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)
Yaml12Loader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: int(loader.construct_scalar(node)))


def parse_yaml(text: str):
    """Parse YAML text with YAML 1.2 scalars (see :class:`Yaml12Loader`)."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def yaml_error_where(err: yaml.YAMLError) -> str:
    """A YAML error in one line: where (line and column, counted from 1) and what."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    what = f"{problem} ({context})" if context else problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark is not None else what


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist")
    try:
        content = parse_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML at {yaml_error_where(err)}") from err
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of parameters, not {type(content).__name__}")
    return content


def parse_json_params(text: str) -> dict:
    """Parameters given as JSON text (``--params-json``, ``--run-spec``): a mapping, or a ConfigError."""
    try:
        content = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"JSON parameters are not valid JSON ({err})") from err
    if not isinstance(content, dict):
        raise ConfigError(f"JSON parameters must be a mapping, not {type(content).__name__}")
    return content


def apply_override(params: dict, assignment: str) -> dict:
    """Apply one ``dotted.key=value`` override; the value is parsed as YAML (``[0, 2]``, ``4.0``, ``true``)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.subkey=value")
    dotted, raw_value = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    try:
        value = parse_yaml(raw_value)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {assignment!r}: value is not valid YAML ({err})") from err
    if expects_string(keys) and value is not None and not isinstance(value, (str, list, dict)):
        value = raw_value.strip()  # e.g. an all-digit sha256: the user means the text
    nested: Any = value
    for key in reversed(keys):
        nested = {key: nested}
    return deep_merge(params, nested)


DEFAULT_PARAMS = "params.yaml"


def layered_on_defaults(files: list[str | Path], defaults: str | Path = DEFAULT_PARAMS) -> list[str | Path]:
    """Every parameter file layers on params.yaml, as Snakemake's --configfile does.

    A file that is params.yaml itself is not read twice. Where the current folder has no
    params.yaml, the files stand alone and must be complete (the schema says what is missing).
    """
    defaults = Path(defaults)
    if not defaults.is_file():
        return list(files) or [defaults]
    given = [Path(f) for f in files]
    if any(path.is_file() and path.samefile(defaults) for path in given):
        return list(files)
    return [defaults, *files]


def load_params(files: Iterable[str | Path | dict], overrides: Iterable[str] = ()) -> dict:
    """Merge parameter files (or mappings) in order, apply overrides, validate, and return the result."""
    params: dict = {}
    for source in files:
        params = deep_merge(params, source if isinstance(source, dict) else read_yaml(source))
    for assignment in overrides:
        params = apply_override(params, assignment)
    params = with_data_paths(as_written(params))
    validate_params(params)
    return params


DATA_PATHS = ("npz_path", "out")  # the data files whose path may name the data set as {name}


def with_data_paths(params: dict) -> dict:
    """``data.npz_path`` and ``data.out`` with ``{name}`` replaced by ``data.name``, so each data set
    reads and writes its own files (params.yaml: ``data/{name}/{name}.npz``)."""
    data = params.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return params  # the schema names what is missing
    resolved = {key: value.replace("{name}", data["name"]) if key in DATA_PATHS and isinstance(value, str) else value
                for key, value in data.items()}
    return {**params, "data": resolved}


# Settings whose words YAML 1.1 reads as booleans (on/off, yes/no): the boolean goes back to the word.
WORDS_FOR_BOOLEANS = {("compute", "amp"): {True: "on", False: "off"}}


def as_written(params: dict) -> dict:
    """``amp: on`` (or ``--set compute.amp=on``) means the word a user wrote, not YAML's boolean."""
    params = copy.deepcopy(params)
    for (section, key), words in WORDS_FOR_BOOLEANS.items():
        value = params.get(section, {}).get(key) if isinstance(params.get(section), dict) else None
        if isinstance(value, bool):
            params[section][key] = words[value]
    return params


def expects_string(keys: list[str]) -> bool:
    """Whether the schema types the parameter at ``keys`` as a string (and not as a number)."""
    node = yaml.safe_load(SCHEMA_PATH.read_text())
    for key in keys:
        node = (node.get("properties") or {}).get(key) if isinstance(node, dict) else None
        if node is None:
            return False
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else types
    return "string" in types and "number" not in types and "integer" not in types


def _schema() -> dict:
    """The schema, with every key of every section required: params.yaml holds each setting's one
    default, so a parameter set without a key is an error, never a second default in code."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    _require_all(schema)
    return schema


def _require_all(node) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and node.get("additionalProperties") is False:
            node["required"] = list(node["properties"])
        for value in node.values():
            _require_all(value)
    elif isinstance(node, list):
        for value in node:
            _require_all(value)


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{key}: {error.instance!r} is not allowed; choose one of: {allowed}"
    if error.validator == "additionalProperties":
        known = ", ".join(sorted(schema.get("properties", {})))
        return f"{key}: {error.message}; known keys here: {known}"
    if error.validator == "required":
        return f"{key}: {error.message}"
    if error.validator == "uniqueItems":
        return f"{key}: has duplicate values {error.instance!r}; list each value once"
    if error.validator == "minItems":
        return f"{key}: must not be empty (at least {error.validator_value} item(s))"
    return f"{key}: {error.message}"


def validate_params(params: dict) -> None:
    """Validate merged parameters against the schema and the cross-key rules."""
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid parameters: " + "; ".join(_describe(e) for e in errors))
    check_finite(params)
    check_mixing_points(params)
    check_mixing_settings(params["mixing"])
    check_validation_settings(params)


def non_finite_numbers(node, prefix: str = "") -> list[str]:
    """Dotted keys of every NaN or infinite number in a nested configuration."""
    if isinstance(node, dict):
        return [key for name, value in node.items() for key in non_finite_numbers(value, f"{prefix}{name}.")]
    if isinstance(node, list):
        return [key for i, value in enumerate(node) for key in non_finite_numbers(value, f"{prefix[:-1]}[{i}].")]
    if isinstance(node, float) and not math.isfinite(node):
        return [f"{prefix[:-1]} is {node}"]
    return []


def check_finite(config: dict) -> None:
    """NaN and infinities pass the schema's ranges (every comparison with NaN is false): refuse them."""
    bad = non_finite_numbers(config)
    if bad:
        raise ConfigError(f"{'; '.join(bad)}: give a finite number")


def check_validation_settings(params: dict) -> None:
    """Settings that read the validation split need one."""
    if params["evaluation"]["temperature_scaling"] and params["subset"]["val_per_class"] == 0:
        raise ConfigError(
            "evaluation.temperature_scaling needs a validation split: set subset.val_per_class > 0 "
            "(e.g. 50) or evaluation.temperature_scaling: false"
        )


def check_mixing_settings(mixing: dict) -> None:
    """A setting that does not apply to the chosen method is refused, never recorded as if it had acted."""
    if mixing["method"] != "manifold" and list(mixing["layers"]) != [0]:
        raise ConfigError(
            f"mixing.layers: {list(mixing['layers'])} applies to manifold mixup only; {mixing['method']} "
            "mixes at the input (point 0): set mixing.method=manifold, or mixing.layers=[0]"
        )


def check_mixing_points(params: dict) -> None:
    """Every mixing point named in ``mixing.layers`` and ``sweep.layer_sets`` must exist in the network."""
    named = {("mixing.layers", tuple(params["mixing"]["layers"]))}
    named |= {("sweep.layer_sets", tuple(s)) for s in params["sweep"]["layer_sets"]}
    for key, layer_set in sorted(named):
        check_points_exist(key, layer_set, params["model"]["name"])


def check_points_exist(key: str, layer_set, model_name: str) -> None:
    """The one check that mixing points exist in a network, for params (every set the grids name)
    and for one run's configuration (a run spec, checked again where it is trained)."""
    valid = mixing_points(model_name)
    bad = sorted(set(layer_set) - set(valid))
    if bad:
        raise ConfigError(f"{key}: mixing point(s) {bad} do not exist in {model_name}; valid points are {list(valid)} (0 = input)")


def config_hash(config: dict) -> str:
    """A short stable hash of a configuration (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
