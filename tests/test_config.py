"""Parameters: every bad value is refused with a ConfigError that names its key."""

from __future__ import annotations

import copy

import pytest
import yaml

from mixstudy.core import config as cfg
from mixstudy.core.errors import ConfigError

from conftest import PARAMS_FILE, ROOT


@pytest.fixture(scope="module")
def base() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text())


def _set(params: dict, dotted: str, value) -> dict:
    params = copy.deepcopy(params)
    node = params
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return params


def _delete(params: dict, dotted: str) -> dict:
    params = copy.deepcopy(params)
    node = params
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    del node[last]
    return params


BAD_VALUES = [
    # wrong types
    ("train.epochs", "ten", "train.epochs"),
    ("train.lr", "fast", "train.lr"),
    ("train.nesterov", "yes", "train.nesterov"),
    ("train.batch_size", 32.5, "train.batch_size"),
    ("model.cnn13.widths", [4, 8], "model.cnn13.widths"),
    ("subset.seed", -1, "subset.seed"),
    # zero or negative values
    ("train.lr", 0, "train.lr"),
    ("train.lr", -0.1, "train.lr"),
    ("train.epochs", 0, "train.epochs"),
    ("train.batch_size", 1, "train.batch_size"),
    ("mixing.alpha", -1.0, "mixing.alpha"),
    ("train.weight_decay", -0.001, "train.weight_decay"),
    ("train.momentum", 1.0, "train.momentum"),
    ("subset.per_class", 0, "subset.per_class"),
    ("model.cnn13.dropout", 1.0, "model.cnn13.dropout"),
    ("train.scheduler.gamma", 0, "train.scheduler.gamma"),
    ("evaluation.ece_bins", 1, "evaluation.ece_bins"),
    ("evaluation.fgsm_epsilons", [0.0], "evaluation.fgsm_epsilons"),
    ("tuning.lr", 0, "tuning.lr"),
    ("sweep.alphas", [1.0, 0.0], "sweep.alphas"),
    # empty grids
    ("sweep.alphas", [], "sweep.alphas"),
    ("tuning.seeds", [], "tuning.seeds"),
    ("sweep.layer_sets", [], "sweep.layer_sets"),
    ("sweep.layer_sets", [[0], []], "sweep.layer_sets"),
    ("tuning.grid.momentum", [], "tuning.grid.momentum"),
    # unknown names
    ("train.scheduler.name", "adam", "train.scheduler.name"),
    ("model.name", "vgg", "model.name"),
    ("mixing.method", "mixmatch", "mixing.method"),
    ("mixing.loss", "mse", "mixing.loss"),
    ("mixing.lambda_per", "pixel", "mixing.lambda_per"),
    ("data.source", "ftp", "data.source"),
    ("compute.device", "tpu", "compute.device"),
    ("tuning.grid.scheduler", ["step", "adam"], "tuning.grid.scheduler"),
    ("data.npz_sha256", "not-a-hash", "data.npz_sha256"),
    # mixing points the network lacks
    ("sweep.layer_sets", [[0, 5]], "sweep.layer_sets"),
    ("mixing.layers", [7], "mixing.layers"),
    # duplicate grid values
    ("sweep.alphas", [1.0, 1.0], "sweep.alphas"),
    ("sweep.seeds", [0, 1, 1], "sweep.seeds"),
    ("sweep.layer_sets", [[0], [0]], "sweep.layer_sets"),
    ("tuning.grid.weight_decay", [0.001, 0.001], "tuning.grid.weight_decay"),
    ("sweep.cutmix_alphas", [1.0, 1.0], "sweep.cutmix_alphas"),
    ("mixing.layers", [0, 0], "mixing.layers"),
]


@pytest.mark.parametrize("key, value, named", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_value_is_refused_naming_its_key(base, key, value, named):
    with pytest.raises(ConfigError) as info:
        cfg.validate_params(_set(base, key, value))
    assert named in str(info.value)


@pytest.mark.parametrize("key, value, named", BAD_VALUES[:3] + BAD_VALUES[-8:-4])
def test_bad_value_via_override_is_refused(key, value, named):
    with pytest.raises(ConfigError) as info:
        cfg.load_params([PARAMS_FILE], [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"])
    assert named in str(info.value)


@pytest.mark.parametrize("key", ["train.epochs", "mixing.method", "sweep.alphas", "data.out", "tuning.grid.scheduler"])
def test_missing_key_is_refused(base, key):
    parent, _, leaf = key.rpartition(".")
    with pytest.raises(ConfigError) as info:
        cfg.validate_params(_delete(base, key))
    message = str(info.value)
    assert parent in message and leaf in message


def test_missing_section_is_refused(base):
    with pytest.raises(ConfigError, match="sweep"):
        cfg.validate_params(_delete(base, "sweep"))


@pytest.mark.parametrize("key", ["train.epoch", "mixing.alhpa", "extra_section", "compute.gpus"])
def test_unknown_key_is_refused(base, key):
    parent, _, leaf = key.rpartition(".")
    with pytest.raises(ConfigError) as info:
        cfg.validate_params(_set(base, key, 3))
    message = str(info.value)
    assert leaf in message
    if parent:
        assert parent in message


def test_unknown_key_via_override(tmp_path):
    with pytest.raises(ConfigError, match="epoch"):
        cfg.load_params([PARAMS_FILE], ["train.epoch=3"])


@pytest.mark.parametrize("assignment", ["train.epochs", "train.epochs 5", ""])
def test_bad_override_syntax(assignment):
    with pytest.raises(ConfigError, match="key.subkey=value"):
        cfg.load_params([PARAMS_FILE], [assignment])


def test_override_value_that_is_not_yaml():
    with pytest.raises(ConfigError, match="train.lr"):
        cfg.load_params([PARAMS_FILE], ["train.lr=[0.1"])


def test_missing_params_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        cfg.load_params([missing])
    assert str(missing) in str(info.value)


def test_invalid_yaml(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  epochs: [1, 2\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        cfg.load_params([broken])
    assert str(broken) in str(info.value)


def test_yaml_that_is_not_a_mapping(tmp_path):
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        cfg.load_params([PARAMS_FILE, listing])


def test_all_errors_are_reported_together(base):
    params = _set(_set(base, "train.epochs", 0), "mixing.method", "mixmatch")
    with pytest.raises(ConfigError) as info:
        cfg.validate_params(params)
    assert "train.epochs" in str(info.value) and "mixing.method" in str(info.value)


# --- valid parameters -----------------------------------------------------------------------


def test_real_params_validate():
    params = cfg.load_params([PARAMS_FILE])
    assert params == cfg.with_data_paths(yaml.safe_load(PARAMS_FILE.read_text()))


def test_data_paths_name_the_data_set():
    """{name} in data.npz_path and data.out is data.name: CIFAR-10 keeps its files, others get their own."""
    cifar10 = cfg.load_params([PARAMS_FILE])["data"]
    assert (cifar10["npz_path"], cifar10["out"]) == ("../shared/datasets/cifar10/cifar10.npz", "data/cifar10/cifar10.npz")
    svhn = cfg.load_params([PARAMS_FILE], ["data.name=svhn"])["data"]
    assert (svhn["npz_path"], svhn["out"]) == ("../shared/datasets/svhn/svhn.npz", "data/svhn/svhn.npz")
    assert cfg.load_params([PARAMS_FILE], ["data.name=svhn", "data.out=elsewhere.npz"])["data"]["out"] == "elsewhere.npz"


def test_unknown_data_set_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match="data.name.*cifar100"):
        cfg.load_params([PARAMS_FILE], ["data.name=mnist"])


OVERRIDE_FILES = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("override", OVERRIDE_FILES, ids=[p.name for p in OVERRIDE_FILES])
def test_override_files_validate(override):
    params = cfg.load_params([PARAMS_FILE, override])
    layered = yaml.safe_load(override.read_text()) or {}
    for section, values in layered.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if not isinstance(value, dict):
                    assert params[section][key] == value


def test_overrides_deep_merge_and_parse_yaml_values():
    params = cfg.load_params([PARAMS_FILE], ["mixing.method=manifold", "mixing.layers=[0, 2]", "train.scheduler.name=cosine", "mixing.alpha=4"])
    assert params["mixing"]["layers"] == [0, 2]
    assert params["mixing"]["alpha"] == 4
    assert params["train"]["scheduler"]["name"] == "cosine"
    assert params["train"]["scheduler"]["t_0"] == 10  # siblings of an overridden key are kept


def test_deep_merge_leaves_inputs_untouched():
    a = {"x": {"y": [1], "z": 2}}
    b = {"x": {"y": [3]}}
    merged = cfg.deep_merge(a, b)
    assert merged == {"x": {"y": [3], "z": 2}}
    assert a == {"x": {"y": [1], "z": 2}} and b == {"x": {"y": [3]}}
    merged["x"]["y"].append(4)
    assert b == {"x": {"y": [3]}}


def test_config_hash_ignores_key_order_and_sees_values():
    assert cfg.config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == cfg.config_hash({"b": {"d": 3, "c": 2}, "a": 1})
    assert cfg.config_hash({"a": 1}) != cfg.config_hash({"a": 2})


# Keys the schema file itself leaves optional (required only by config._schema): a file without
# them must never train with some other value.
ONCE_OPTIONAL = ["model.cnn13.widths", "model.convnet.dropout", "evaluation.ece_bins", "compute.amp", "train.augment.cutout"]


@pytest.mark.parametrize("key", ONCE_OPTIONAL)
def test_params_file_without_a_key_gets_the_params_yaml_value(base, tmp_path, key):
    partial = tmp_path / "partial.yaml"
    partial.write_text(yaml.safe_dump(_delete(base, key)))
    params = cfg.load_params(cfg.layered_on_defaults([partial], defaults=PARAMS_FILE))
    node, expected = params, base
    for part in key.split("."):
        node, expected = node[part], expected[part]
    assert node == expected


@pytest.mark.parametrize("key", ONCE_OPTIONAL)
def test_params_file_without_a_key_and_no_params_yaml_is_refused_naming_it(base, tmp_path, key):
    partial = tmp_path / "partial.yaml"
    partial.write_text(yaml.safe_dump(_delete(base, key)))
    with pytest.raises(ConfigError) as info:
        cfg.load_params(cfg.layered_on_defaults([partial], defaults=tmp_path / "params.yaml"))
    parent, _, leaf = key.rpartition(".")
    assert f"{parent}: '{leaf}' is a required property" in str(info.value)


@pytest.mark.parametrize("written, stored", [("on", "on"), ("off", "off"), ('"on"', "on"), ("'off'", "off"), ("auto", "auto")])
def test_amp_takes_the_word_a_user_writes(written, stored, tmp_path):
    """YAML 1.1 reads a bare on/off as a boolean; amp keeps the word, in an override and in a file."""
    assert cfg.load_params([PARAMS_FILE], [f"compute.amp={written}"])["compute"]["amp"] == stored
    override = tmp_path / "amp.yaml"
    override.write_text(f"compute:\n  amp: {written}\n")
    assert cfg.load_params([PARAMS_FILE, override])["compute"]["amp"] == stored


def test_amp_refuses_other_words_naming_the_spellings():
    with pytest.raises(ConfigError) as info:
        cfg.load_params([PARAMS_FILE], ["compute.amp=bf16"])
    assert "compute.amp" in str(info.value) and "auto, on, off" in str(info.value)
