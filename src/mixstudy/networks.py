"""The networks' names and mixing points, without torch: configuration checks, aggregation and
reports read this table; :mod:`mixstudy.models` builds the networks it names."""

from __future__ import annotations

from mixstudy.errors import ConfigError

# Each network's mixing points, declared once (the input of each stage; 0 = the image).
MIXING_POINTS = {"convnet": (0, 1, 2), "preactresnet18": (0, 1, 2)}


def mixing_points(name: str) -> tuple[int, ...]:
    if name not in MIXING_POINTS:
        raise ConfigError(f"model.name: unknown network {name!r}; choose one of: {', '.join(MIXING_POINTS)}")
    return MIXING_POINTS[name]
