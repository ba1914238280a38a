"""trajtok's layout: no import cycles, layers that only import downwards, nothing from the packages that use it, the
old module paths alive as warned aliases, and the shared config loader's results and errors."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import sys
import warnings
from dataclasses import dataclass, field

import pytest

from tests.import_graph import all_imports, find_cycle, import_graph, module_files
from trajtok.cli import COMMANDS
from trajtok.io.config import load_config, parse_overrides

# old module path -> the module it moved to (the old path is an alias for one release)
MOVED = {
    "trajtok.modeling": "trajtok.core.modeling",
    "trajtok.configuration": "trajtok.core.configuration",
    "trajtok.losses": "trajtok.core.losses",
    "trajtok.video": "trajtok.io.video",
    "trajtok.videowriter": "trajtok.io.writer",
    "trajtok.labels": "trajtok.io.labels",
    "trajtok.weights": "trajtok.io.weights",
    "trajtok.release": "trajtok.io.release",
    "trajtok.coordtok": "trajtok.baselines.coordtok",
    "trajtok.coordtok_train": "trajtok.baselines.coordtok_train",
    "trajtok.train": "trajtok.training.train",
    "trajtok.evaluate": "trajtok.training.evaluate",
    "trajtok.tokenize": "trajtok.cli.tokenize",
}

# Function-level imports are kept only for optional dependencies (the ``pseudolabel`` and ``sam2`` extras) and
# where ``trajtok --help`` must not import torch (the dispatcher imports ``checks``); each says so in a comment.
OPTIONAL = {"cv2", "skimage", "sam2"}
LAZY_ALLOWED = {("trajtok.checks", "torch")}

# The layers, lowest first: a module imports only from its own layer or lower ones (docs/architecture.md).
LAYERS: list[tuple[str, ...]] = [
    # files in and out, the checks every layer uses
    (
        "trajtok.checks",
        "trajtok.io.video",
        "trajtok.io.writer",
        "trajtok.io.labels",
        "trajtok.io.weights",
        "trajtok.io.config",
        "trajtok.io.checkpoints",
    ),  # fmt: skip
    ("trajtok.nn",),  # the model's building blocks
    ("trajtok.core", "trajtok.io.release"),  # the model; the release's weights converted into one
    ("trajtok.data", "trajtok.synth", "trajtok.viz"),  # datasets, the synthetic world, drawings of labels
    ("trajtok.pseudolabel", "trajtok.trajvit2", "trajtok.adapter", "trajtok.baselines.coordtok"),
    ("trajtok.training", "trajtok.baselines.coordtok_train"),  # the trainers
    ("trajtok.cli", "trajtok.synth.cli", "trajtok.pseudolabel.cli"),  # the command line
]


def layer_of(module: str) -> int | None:
    """The layer of ``module`` by its longest matching prefix (None: the package itself or an old-path alias)."""
    best: tuple[int, int] | None = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank)
    return None if best is None else best[1]


def test_trajtok_has_no_import_cycle():
    graph = import_graph("trajtok")  # lazy (function-level) imports included
    assert "trajtok.io.checkpoints" in graph and "trajtok.training.train" in graph  # the graph is the new layout
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_every_module_has_a_layer_and_imports_only_downwards():
    graph = import_graph("trajtok")
    aliases = set(MOVED) | {"trajtok", "trajtok.core", "trajtok.io", "trajtok.baselines", "trajtok.training"}
    upward = []
    for module, targets in sorted(graph.items()):
        if module in aliases:
            continue
        rank = layer_of(module)
        assert rank is not None, f"{module} is in no layer of LAYERS (add it where it belongs)"
        for target in sorted(targets):
            target_rank = layer_of(target)
            assert target not in MOVED, f"{module} imports the old path {target} (use {MOVED.get(target)})"
            if target_rank is not None and target_rank > rank:
                upward.append(f"{module} (layer {rank}) imports {target} (layer {target_rank})")
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_trajtok_imports_nothing_from_the_packages_that_use_it():
    users = ("trajvlm", "eval", "scripts", "tests")
    found = [
        f"{i.module}:{i.line} imports {i.target}" for i in all_imports("trajtok") if i.target.split(".")[0] in users
    ]
    assert not found, "\n".join(found)
    # the dispatcher imports its commands by name: those names are trajtok modules too
    assert all(module.startswith("trajtok.") for module, _ in COMMANDS.values())


def test_imports_sit_at_the_top_of_every_module():
    lazy = [
        f"{i.module}:{i.line} imports {i.target} inside a function"
        for i in all_imports("trajtok")
        if i.lazy and i.target.split(".")[0] not in OPTIONAL and (i.module, i.target.split(".")[0]) not in LAZY_ALLOWED
    ]
    assert not lazy, "\n".join(lazy)


def test_commands_live_in_the_cli_layer_only():
    """``add_arguments`` / ``run`` (a command's two functions) are defined by command-line modules, not the library."""
    cli = len(LAYERS) - 1
    misplaced = []
    for module, path in module_files("trajtok").items():
        if module in MOVED or layer_of(module) == cli:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        misplaced += [f"{module}.{name}" for name in sorted(names & {"add_arguments", "run"})]
    assert not misplaced, f"command functions outside trajtok.cli: {misplaced}"
    for module, _ in COMMANDS.values():
        command = importlib.import_module(module)
        assert layer_of(module) == cli and callable(command.add_arguments) and callable(command.run)


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_paths_import_the_same_module_and_warn(old, new):
    target = importlib.import_module(new)
    saved = sys.modules.pop(old, None)  # the alias runs again only when it is not imported yet
    try:
        with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
            module = importlib.import_module(old)
        assert module is target  # the same object: monkeypatching either name patches both
        assert sys.modules[old] is target
    finally:
        if saved is not None:
            sys.modules[old] = saved


def test_new_paths_import_without_deprecation_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for new in MOVED.values():
            importlib.import_module(new)


# ------------------------------------------------------------------------------------------------ the loader


@dataclass
class Inner:
    width: int = 8
    scale: float = 1.0
    name: str = "x"


@dataclass
class Outer:
    steps: int = 10
    lr: float = 1e-3
    run_name: str = "run"
    split: str | None = "val"
    tags: list[str] = field(default_factory=list)
    model: dict = field(default_factory=dict)


SECTIONS = {"model": Inner}


def test_loader_reads_yaml_then_overrides_with_typed_values(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("steps: 5\nlr: 1e-4\nmodel:\n  width: 16\n  name: keep\n")
    cfg = load_config(
        Outer,
        preset,
        ["lr=3e-3", "run_name=1e3", "split=", "tags=[a, b]", "model.scale=2e-1", "model.width=32"],
        sections=SECTIONS,
    )
    # YAML 1.1 reads 1e-4 / 3e-3 / 2e-1 as text: number fields make them numbers, a str field keeps its text
    assert (cfg.steps, cfg.lr, cfg.run_name, cfg.split, cfg.tags) == (5, 3e-3, "1e3", None, ["a", "b"])
    assert cfg.model == {"width": 32, "name": "keep", "scale": 0.2}  # section keys merged into the file's
    assert isinstance(cfg.lr, float) and isinstance(cfg.model["scale"], float)
    assert load_config(Outer, None, {"steps": 3}) == Outer(steps=3)  # no file; a mapping of overrides
    assert dataclasses.asdict(load_config(Outer, preset)) == dataclasses.asdict(
        Outer(steps=5, lr=1e-4, model={"width": 16, "name": "keep"})
    )


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (["stpes=3"], ValueError, r"unknown Outer fields \['stpes'\]; valid fields: \[.*'steps'"),
        (["steps=many"], ValueError, r"steps must be an integer, got 'many'"),
        (["lr=fast"], ValueError, r"lr must be a number, got 'fast'"),
        (["model.scale=big"], ValueError, r"model\.scale must be a number, got 'big'"),
        (["steps"], ValueError, r"override must be key=value.*got 'steps'"),
        (["=3"], ValueError, r"override must be key=value.*got '=3'"),
        (["tags=[a,"], ValueError, r"override 'tags=\[a,': the value '\[a,' is not valid YAML"),
        (["model.=3"], ValueError, r"override 'model\.=3': no field after 'model\.'"),
    ],
)
def test_loader_errors_name_the_override(overrides, error, match):
    with pytest.raises(error, match=match):
        load_config(Outer, None, overrides, sections=SECTIONS)


def test_loader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run preset not found: .*missing\.yaml"):
        load_config(Outer, tmp_path / "missing.yaml", what="run preset")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ValueError, match=r"bad\.yaml is not valid YAML"):
        load_config(Outer, bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match=r"list\.yaml: expected a mapping of Outer file fields, got list"):
        load_config(Outer, listed)
    typo = tmp_path / "typo.yaml"
    typo.write_text("stesp: 3\n")
    with pytest.raises(ValueError, match=r"unknown Outer fields \['stesp'\] in .*typo\.yaml"):
        load_config(Outer, typo)


def test_parse_overrides_nests_only_declared_sections():
    assert parse_overrides(["a.b=1", "model.width=2", "c="], ("model",)) == {"a.b": 1, "model": {"width": 2}, "c": None}


def test_trajtok_train_and_coordtok_train_use_the_loader(tmp_path):
    from trajtok.baselines.coordtok_train import load_config as load_coordtok
    from trajtok.training.train import load_config as load_train

    cfg = load_train("smoke", ["lr=2e-3", "model.num_queries=7", "val_split=null"])
    assert (cfg.lr, cfg.model["num_queries"], cfg.val_split) == (2e-3, 7, None)
    with pytest.raises(ValueError, match=r"lr must be a number, got 'fast'"):
        load_train("smoke", ["lr=fast"])
    ct = load_coordtok(None, ["lr=5e-4", "model.image_size=32", "model.tubelet_size=8", "model.patch_size=8"])
    assert (ct.lr, ct.model["image_size"]) == (5e-4, 32)
    with pytest.raises(FileNotFoundError, match=r"coordtok-train config not found: .*nope\.yaml"):
        load_coordtok(tmp_path / "nope.yaml", [])


def test_saved_json_configs_errors_name_the_file(tmp_path):
    from trajtok.core.configuration import TrajTokConfig

    with pytest.raises(FileNotFoundError, match=r"TrajTok config not found: .*config\.json"):
        TrajTokConfig.load(tmp_path)
    saved = tmp_path / "config.json"
    saved.write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        TrajTokConfig.load(tmp_path)
    saved.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config\.json: expected a mapping of TrajTok config fields, got list"):
        TrajTokConfig.load(tmp_path)
    TrajTokConfig.tiny(width=32).save(saved)
    assert TrajTokConfig.load(tmp_path) == TrajTokConfig.tiny(width=32)
