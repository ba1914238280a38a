"""Vision connectors: what turns projected tower features into the visual tokens the LLM reads.

- :mod:`trajvlm.connectors.registry`: the one map ``name -> "module:Class"`` (plain strings, torch-free), with
  :func:`get_connector_class`, :func:`connector_names`, :func:`register_connector` and :func:`build_connector`;
- :mod:`trajvlm.connectors.base`: :class:`Connector` (the forward contract and the capabilities a connector
  declares, which code outside this package asks instead of comparing names) and :class:`ConnectorOutput`;
- one module per connector: ``pool``, ``trajtok``, ``resampler``, ``vtok``, ``tome``, ``trajvit``, ``coordtok``.

Adding a connector: a module with a :class:`Connector` subclass (its ``name`` and capabilities set) and one line in
``registry.CONNECTOR_CLASSES``; outside the project, one ``register_connector(name, "module:Class")`` call.

Importing this package imports neither torch nor any connector: the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from trajvlm.connectors.registry import (
    CONNECTOR_CLASSES,
    CONNECTORS,
    build_connector,
    connector_class_for,
    connector_names,
    connectors_with,
    get_connector_class,
    register_connector,
)

_LAZY = {
    "Connector": "trajvlm.connectors.base",
    "ConnectorOutput": "trajvlm.connectors.base",
    "PoolConnector": "trajvlm.connectors.pool",
    "TrajTokConnector": "trajvlm.connectors.trajtok",
    "ResamplerConnector": "trajvlm.connectors.resampler",
    "trajtok_config_for": "trajvlm.connectors.trajtok",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trajvlm.connectors' has no attribute {name!r}")


__all__ = [
    "CONNECTORS",
    "CONNECTOR_CLASSES",
    "build_connector",
    "connector_class_for",
    "connector_names",
    "connectors_with",
    "get_connector_class",
    "register_connector",
    *_LAZY,
]
