"""The table of networks, without torch: each network's name, builder and mixing points, declared once.

Configuration checks, aggregation and reports read this table without importing torch;
:func:`mixstudy.model.models.build_model` imports the builder it names. A network's settings are the
keys of its own section of ``model:`` in params.yaml (e.g. ``model.cnn13.dropout``), which holds
every default; a run records only the chosen network's settings (see :func:`network_settings`).

Adding a network: write its builder in :mod:`mixstudy.model.models` (a :class:`~mixstudy.model.models.StagedNet`
whose stage ``k`` starts at mixing point ``k``), add one entry here, its settings under
``model:`` in params.yaml and their types in the schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from mixstudy.core.errors import ConfigError


@dataclass(frozen=True)
class Network:
    builder: str  # function in mixstudy.model.models, called with the network's settings as keywords
    mixing_points: tuple[int, ...]  # the input of each stage; 0 = the image
    description: str


NETWORKS = {
    "cnn13": Network(
        "cnn13",
        (0, 1, 2),
        "the study's network (its Figure 2; the CNN-13 of the semi-supervised literature)",
    ),
    "convnet": Network("convnet", (0, 1, 2), "a cheap convnet: three blocks of three 3x3 convolutions"),
    "preactresnet18": Network("preactresnet18", (0, 1, 2), "PreActResNet18, the manifold mixup paper's network"),
}


STUDY_NETWORK = "cnn13"  # the study's own network: params.yaml's default


def network(name: str) -> Network:
    if name not in NETWORKS:
        raise ConfigError(f"model.name: unknown network {name!r}; choose one of: {', '.join(NETWORKS)}")
    return NETWORKS[name]


def mixing_points(name: str) -> tuple[int, ...]:
    return network(name).mixing_points


def network_settings(model_params: dict) -> dict:
    """A run's ``model`` section: the chosen network's name and its own settings, nothing of the others.

    ``{"name": "cnn13", "cnn13": {...}, "convnet": {...}}`` -> ``{"name": "cnn13", **settings}``.
    A section already in this form (a run's recorded configuration) is returned as it is.
    """
    name = model_params["name"]
    network(name)
    if not any(key in NETWORKS for key in model_params if key != "name"):
        return dict(model_params)
    return {"name": name, **model_params.get(name, {})}
