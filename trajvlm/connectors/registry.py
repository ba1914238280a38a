"""The connector map: ``config.connector`` name -> ``"module:Class"``, the one place a connector is listed.

Plain strings, so reading the names (validating a config, listing choices on the command line) imports neither
torch nor any connector; a class is imported the first time it is asked for. A third party adds a connector with
one call, before building a model that names it::

    from trajvlm.connectors.registry import register_connector
    register_connector("mine", "my_package.my_connector:MyConnector")  # a trajvlm.connectors.Connector subclass
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trajvlm.connectors.base import Connector

# name -> "module:Class". Adding a connector: its module under trajvlm/connectors/ and one line here.
CONNECTOR_CLASSES: dict[str, str] = {
    "pool": "trajvlm.connectors.pool:PoolConnector",
    "trajtok": "trajvlm.connectors.trajtok:TrajTokConnector",
    "resampler": "trajvlm.connectors.resampler:ResamplerConnector",
    "vtok": "trajvlm.connectors.vtok:VTokConnector",
    "tome": "trajvlm.connectors.tome:ToMeConnector",
    "trajvit": "trajvlm.connectors.trajvit:TrajViTConnector",
    "coordtok": "trajvlm.connectors.coordtok:CoordTokConnector",
}

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_loaded: dict[str, type[Connector]] = {}


def connector_names() -> tuple[str, ...]:
    """Every registered connector name, in registration order."""
    return tuple(CONNECTOR_CLASSES)


def register_connector(name: str, target: str) -> None:
    """Register ``name`` -> ``target`` (``"module:Class"``, the class a ``Connector`` subclass); imported lazily.

    Registering a name again with the same target is a no-op; with another target it raises (one map, one truth).
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][\w.-]*", name):
        raise ValueError(f"connector name must be a non-empty word (letters, digits, _ . -), got {name!r}")
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ValueError(
            f"connector target must be 'module:Class' (e.g. 'my_pkg.connector:MyConnector'), got {target!r}"
        )
    known = CONNECTOR_CLASSES.get(name)
    if known is not None and known != target:
        raise ValueError(f"connector {name!r} is already registered as {known!r}; cannot register it as {target!r}")
    CONNECTOR_CLASSES[name] = target


def get_connector_class(name: str) -> type[Connector]:
    """The ``Connector`` subclass registered as ``name`` (its module imported on first use)."""
    target = CONNECTOR_CLASSES.get(name) if isinstance(name, str) else None
    if target is None:
        raise ValueError(f"unknown connector {name!r}; valid connectors: {', '.join(connector_names())}")
    cls = _loaded.get(target)
    if cls is not None:
        return cls
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"connector {name!r}: cannot import {module_name} (registered as {target!r}): {e}") from e
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ImportError(f"connector {name!r}: module {module_name} has no {class_name} (registered as {target!r})")
    from trajvlm.connectors.base import Connector

    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise TypeError(f"connector {name!r}: {target} is not a trajvlm.connectors.base.Connector subclass")
    _loaded[target] = cls
    return cls


def connectors_with(capability: str) -> list[str]:
    """The registered names whose class declares ``capability`` (e.g. ``"draws_trajectories"``), for messages that
    say which connector a feature needs; imports every connector."""
    return [name for name in connector_names() if getattr(get_connector_class(name), capability)]


def connector_class_for(config: Any) -> type[Connector]:
    """The connector class of a model config (a plain ``LlavaOnevisionConfig`` means upstream ``pool``)."""
    return get_connector_class(getattr(config, "connector", "pool"))


def build_connector(config: Any) -> Connector:
    """The connector named by ``config.connector``, built from ``config``."""
    return get_connector_class(config.connector)(config)


class _LazyConnectors(Mapping):
    """Read-only ``name -> class`` view of the map; a class is imported when it is looked up."""

    def __getitem__(self, name: str) -> type[Connector]:
        if name not in CONNECTOR_CLASSES:
            raise KeyError(name)
        return get_connector_class(name)

    def __iter__(self) -> Iterator[str]:
        return iter(connector_names())

    def __len__(self) -> int:
        return len(CONNECTOR_CLASSES)

    def __repr__(self) -> str:
        return f"CONNECTORS({', '.join(connector_names())})"


CONNECTORS: Mapping[str, type] = _LazyConnectors()

__all__ = [
    "CONNECTORS",
    "CONNECTOR_CLASSES",
    "build_connector",
    "connector_class_for",
    "connector_names",
    "connectors_with",
    "get_connector_class",
    "register_connector",
]
