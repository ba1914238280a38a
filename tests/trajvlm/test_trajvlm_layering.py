"""trajvlm's layering: no import cycles, serving never loads the Trainer stack, imports point one way
(cli -> training -> inference -> model), library modules hold no command, and the old module paths still work."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings

import pytest

from tests.import_graph import all_imports, find_cycle, import_graph, module_files, reachable

GRAPH = import_graph("trajvlm")
# the model itself: what an exported model folder holds (plus the connectors it builds)
CORE = ("trajvlm.configuration", "trajvlm.modeling", "trajvlm.processing", "trajvlm.token_budget", "trajvlm.llm")
# old module path -> where it moved (the old path aliases the new module for one release)
MOVED = {
    "trajvlm.train_config": "trajvlm.training.config",
    "trajvlm.train": "trajvlm.training.trainer",
    "trajvlm.data": "trajvlm.training.data",
    "trajvlm.export": "trajvlm.training.export",
    "trajvlm.remote_code": "trajvlm.training.remote_code",
    "trajvlm.base": "trajvlm.training.base",
    "trajvlm.tower": "trajvlm.training.tower",
    "trajvlm.warmup": "trajvlm.training.warmup",
    "trajvlm.chat": "trajvlm.cli.chat",
    "trajvlm.serve.cli": "trajvlm.cli.serve",
}
# function-level imports allowed in trajvlm: optional dependencies (extras) that are heavy or absent by default
OPTIONAL = ("deepspeed", "bitsandbytes", "peft", "lmms_eval", "fastapi", "uvicorn", "matplotlib", "datasets", "pyarrow")
# project modules that import an optional dependency at their top (so they are imported lazily too)
OPTIONAL_MODULES = {"trajvlm.serve.app": "fastapi", "trajvlm.serve.server": "uvicorn"}


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_import_graph_reads_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import a\nimport os\n")
    graph = import_graph("pkg", pkg)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": set(), "pkg.b": {"pkg.sub.c"}, "pkg.sub": set(), "pkg.sub.c": {"pkg.a"}}
    assert import_graph("pkg", pkg, lazy=False)["pkg.b"] == set()
    assert find_cycle(graph) is None
    (pkg / "a.py").write_text("from pkg.b import f\n")
    assert find_cycle(import_graph("pkg", pkg)) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]


def test_no_import_cycle():
    assert len(GRAPH) > 30, sorted(GRAPH)  # the package was found and read
    assert find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(find_cycle(GRAPH) or [])}"


def test_imports_point_one_way():
    """cli -> training -> inference -> the model; serve sits beside training (on inference). Lazy imports count."""
    problems = []
    for module, targets in GRAPH.items():
        if module in MOVED:  # the deprecated aliases point at wherever their module went
            continue
        for target in targets:
            if _under(target, "trajvlm.cli") and not _under(module, "trajvlm.cli"):
                problems.append(f"{module} imports the command line {target}")
            if _under(target, "trajvlm.training") and _under(module, "trajvlm.inference", "trajvlm.serve", *CORE):
                problems.append(f"{module} imports training code {target}")
            if _under(target, "trajvlm.inference", "trajvlm.serve") and _under(module, *CORE, "trajvlm.connectors"):
                problems.append(f"{module} (the model) imports {target}")
    for module in ("trajvlm.serve.app", "trajvlm.inference"):
        assert not {m for m in reachable(GRAPH, module) if _under(m, "trajvlm.training", "trajvlm.cli")}
    assert not problems, "\n".join(problems)


def test_nothing_from_eval_or_scripts():
    tops = {"eval", "scripts", "tests"}
    bad = [f"{i.module}:{i.line} imports {i.target}" for i in all_imports("trajvlm") if i.target.split(".")[0] in tops]
    assert not bad, bad


def test_library_modules_hold_no_command():
    """A command's argparse lives in trajvlm/cli/<command>.py; library modules have no add_arguments / run."""
    import ast

    files = module_files("trajvlm")

    def functions(module: str) -> set[str]:
        tree = ast.parse(files[module].read_text(encoding="utf-8"))
        return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}

    commands = importlib.import_module("trajvlm.cli").COMMANDS
    assert len(commands) >= 8, sorted(commands)
    for name, (module, _) in commands.items():
        assert module.startswith("trajvlm.cli."), (name, module)
        assert {"add_arguments", "run"} <= functions(module), module
    for module in files:
        if not _under(module, "trajvlm.cli") and module not in MOVED:
            assert not functions(module) & {"add_arguments", "run"}, f"{module} holds a command's add_arguments / run"


def test_imports_sit_at_the_top():
    """Function-level imports only for optional dependencies, so that a module's top is its dependency list.
    (The connectors, which import their optional pseudo-labelling and key-frame code lazily, are checked by their own
    tests.)"""
    lazy = [
        f"{i.module}:{i.line} {i.target}"
        for i in all_imports("trajvlm")
        if i.lazy
        and i.target.split(".")[0] not in OPTIONAL
        and i.target not in OPTIONAL_MODULES
        and not _under(i.module, "trajvlm.connectors")
    ]
    assert not lazy, "imports inside functions:\n" + "\n".join(lazy)


@pytest.mark.parametrize("module", ["trajvlm.serve.app", "trajvlm.inference"])
def test_serving_never_loads_the_trainer_stack(module):
    """A fresh interpreter that imports the serving side: no trajvlm.training, no HF Trainer, no DeepSpeed, no peft
    (a LoRA checkpoint imports peft when it loads one, not before)."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert module in loaded and "trajvlm.modeling" in loaded  # it did import the model
    heavy = [
        m
        for m in loaded
        if _under(m, "trajvlm.training", "trajvlm.cli", "transformers.trainer", "deepspeed", "peft", "bitsandbytes")
    ]
    assert not heavy, heavy


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_paths_alias_the_moved_modules(old):
    new = importlib.import_module(MOVED[old])
    sys.modules.pop(old, None)  # import the alias afresh so that its warning is raised here
    parent, _, child = old.rpartition(".")
    if getattr(sys.modules[parent], child, None) is not None:
        delattr(sys.modules[parent], child)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        alias = importlib.import_module(old)
    assert alias is new  # one module object: monkeypatching either path patches both
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert importlib.import_module(old) is new  # imported once, warned once
