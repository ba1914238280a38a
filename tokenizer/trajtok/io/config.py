"""Run configs: a YAML file of dataclass fields plus ``key=value`` overrides, read into the dataclass.

The one loader of the project's training configs (``trajtok train``, ``trajtok coordtok-train``, ``trajvlm train``,
``trajvlm warmup`` ...):

    cfg = load_config(TrainConfig, "presets/smoke.yaml", ["steps=100", "model.num_queries=32"],
                      sections={"model": TrajTokConfig})

- the file is YAML (so JSON too), a mapping of the dataclass's fields; ``sections`` names the fields that are
  mappings of another dataclass's fields, set one key at a time with ``section.key=value``;
- override values are YAML (``steps=100`` an int, ``report_to=[jsonl]`` a list, ``val_split=null`` or
  ``val_split=`` None); numbers YAML 1.1 leaves as text (``lr=3e-3``) become numbers where the field is declared
  a number (:func:`trajtok.checks.check_values`), so a ``str`` field keeps ``run_name=1e3`` as text;
- errors are one line naming the file or the override and the reason: a missing file, a file that is not YAML or
  not a mapping, an override without ``=``, a value that is not YAML, an unknown field (with the valid ones), a
  value of the wrong kind (``lr must be a number, got 'fast'``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from trajtok.checks import check_values

T = TypeVar("T")


def parse_value(text: str) -> Any:
    """A command-line value read as YAML; an empty (or blank) value is None."""
    if not text.strip():
        return None
    return yaml.safe_load(text)


def parse_overrides(
    overrides: list[str] | Mapping[str, Any] | None, sections: tuple[str, ...] | Mapping[str, Any] = ()
) -> dict[str, Any]:
    """``["steps=4", "model.width=32"]`` -> ``{"steps": 4, "model": {"width": 32}}`` (a mapping is copied).

    ``section.key=value`` nests only for the names in ``sections``; any other dotted key stays a key of its own
    (and is then reported as an unknown field).
    """
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return {k: dict(v) if k in sections and isinstance(v, Mapping) else v for k, v in overrides.items()}
    hint = "".join(f"; {s}.<field>=value sets one field of {s}" for s in sections)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override must be key=value{hint}, got {item!r}")
        try:
            value = parse_value(text)
        except yaml.YAMLError as err:
            reason = " ".join(str(err).split())
            raise ValueError(f"override {item!r}: the value {text!r} is not valid YAML ({reason})") from None
        section, dot, field = key.partition(".")
        if dot and section in sections:
            if not field:
                raise ValueError(f"override {item!r}: no field after {section + '.'!r}")
            parsed.setdefault(section, {})[field] = value
        else:
            parsed[key] = value
    return parsed


def read_mapping(path: str | os.PathLike, what: str = "config", syntax: str = "YAML") -> dict[str, Any]:
    """The mapping in the ``syntax`` ("YAML", which reads JSON too, or "JSON") file ``path``; ``what`` names the
    file's kind in errors (``training preset``): a missing file, a file that does not parse, one not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}" + (" (a folder)" if path.is_dir() else ""))
    try:
        text = path.read_text()
        values = (json.loads(text) if syntax == "JSON" else yaml.safe_load(text)) or {}
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as err:
        reason = "not a text file" if isinstance(err, UnicodeDecodeError) else " ".join(str(err).split())
        raise ValueError(f"{path} is not valid {syntax} ({reason})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of {what} fields, got {type(values).__name__}")
    return values


def read_json_mapping(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    """:func:`read_mapping` of a JSON file (a resolved config saved next to a checkpoint)."""
    return read_mapping(path, what, syntax="JSON")


def merge(values: Mapping[str, Any], overrides: Mapping[str, Any], sections: tuple[str, ...] | Mapping = ()) -> dict:
    """``overrides`` on top of ``values`` (copied); a section's keys are merged into the section."""
    out = dict(values)
    for key, value in overrides.items():
        if key in sections and isinstance(value, Mapping):
            base = out.get(key)
            out[key] = {**(base if isinstance(base, Mapping) else {}), **value}
        else:
            out[key] = value
    return out


def unknown_fields(cls: type, values: Mapping[str, Any], source: str = "") -> None:
    """Raise ValueError for keys of ``values`` that are not fields of dataclass ``cls``, listing the valid ones
    (``source``, a file, named when given)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f" in {source}" if source else ""
        raise ValueError(f"unknown {cls.__name__} fields {unknown}{where}; valid fields: {sorted(names)}")


def numbers_from_text(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the text of fields ``cls`` declares numbers read as numbers where it is one (``"2e-3"``,
    ``"NaN"``: YAML 1.1 reads both as text); anything else is left for the checks, which name the field."""
    declared = {f.name: str(f.type).replace(" ", "").split("|") for f in dataclasses.fields(cls)}
    out = dict(values)
    for name, value in values.items():
        kinds = declared.get(name, ())
        if not isinstance(value, str) or not ({"int", "float"} & set(kinds)):
            continue
        for kind in (int, float) if "int" in kinds else (float,):
            try:
                out[name] = kind(value.strip())
                break
            except ValueError:
                continue
    return out


def typed_values(cls: type, values: Mapping[str, Any], sections: Mapping[str, type | None] | None = None) -> dict:
    """``values`` checked against dataclass ``cls``: unknown fields are an error listing the valid ones, and each
    value is checked (numbers written as text become numbers) by :func:`trajtok.checks.check_values`. The text
    values of a section whose dataclass is given become numbers the same way (the section's class checks the rest);
    errors name them ``section.field``."""
    unknown_fields(cls, values)
    out = check_values(cls, numbers_from_text(cls, values))
    for section, section_cls in (sections or {}).items():
        body = out.get(section)
        if section_cls is None or not isinstance(body, Mapping):
            continue
        text = {k: v for k, v in body.items() if isinstance(v, str)}
        known = {f.name for f in dataclasses.fields(section_cls)}
        try:
            checked = check_values(
                section_cls, numbers_from_text(section_cls, {k: text[k] for k in text if k in known})
            )
        except ValueError as e:
            raise ValueError(f"{section}.{e}") from None
        out[section] = {**body, **checked}
    return out


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: list[str] | Mapping[str, Any] | None = None,
    *,
    sections: Mapping[str, type | None] | None = None,
    what: str | None = None,
) -> T:
    """An instance of dataclass ``cls`` from a YAML file of its fields (optional) and ``key=value`` overrides.

    ``sections`` maps the fields that hold another dataclass's fields (``{"model": TrajTokConfig}``) to that
    class (or None: nested overrides, no checking); ``what`` names the file's kind in errors (default: the class
    name + " file").
    """
    sections = dict(sections or {})
    values: dict[str, Any] = {}
    if path is not None:
        values = read_mapping(path, what or f"{cls.__name__} file")
        unknown_fields(cls, values, str(path))
    values = merge(values, parse_overrides(overrides, tuple(sections)), tuple(sections))
    return cls(**typed_values(cls, values, sections))
