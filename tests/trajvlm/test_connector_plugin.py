"""A connector from outside the project: one ``register_connector`` call makes it a full TrajVLM connector.

The toy connectors live in a module written to ``tmp_path`` (on ``sys.path``), as a third party's package would;
nothing else in the project is touched. Also here: every entry of the map imports and is a ``Connector``, the map
reads without torch, and no module outside ``trajvlm/connectors/`` compares a connector's name.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from tests.trajvlm.connector_checks import (
    batch,
    check_generate_with_cache,
    check_round_trip,
    check_two_step_training,
)
from tests.trajvlm.train_fixtures import train_data  # noqa: F401
from trajvlm.connectors import registry
from trajvlm.connectors.base import Connector
from trajvlm.connectors.registry import CONNECTOR_CLASSES, connector_names, get_connector_class, register_connector

ROOT = Path(__file__).resolve().parents[2]

TOY_SOURCE = '''
import torch
from torch import nn

from trajvlm.connectors.base import Connector, ConnectorOutput
from trajvlm.token_budget import finish_tokens


class FrameTokens(Connector):
    """``per_frame`` tokens per frame from the frame's mean patch feature: a count the processor knows."""

    name = "frame_tokens"
    expands_in_processor = True

    @classmethod
    def tokens_per_video(cls, num_frames, *, grid, connector_kwargs):
        return num_frames * int(connector_kwargs.get("per_frame", 2))

    def __init__(self, config):
        super().__init__(config)
        self.per_frame = int(self.kwargs.get("per_frame", 2))
        self.proj = nn.Linear(self.hidden, self.hidden * self.per_frame)

    def forward(self, features, pixel_values_videos, num_frames, *, newline=None):
        num_videos = self._check(features, pixel_values_videos, num_frames)
        x = self.proj(features.mean(1))  # (V*T, D*k)
        x = x.reshape(num_videos, num_frames * self.per_frame, self.hidden)  # (V, T*k, D)
        return ConnectorOutput(tokens=list(x.unbind(0)), num_tokens=[x.shape[1]] * num_videos, extra={"stacked": x})


class BrightFrames(Connector):
    """One token per frame at least as bright as the video's (lower) median frame: a count only the content
    decides; in fixed token mode padded / truncated to the budget."""

    name = "bright_frames"

    def __init__(self, config):
        super().__init__(config)
        self.proj = nn.Linear(self.hidden, self.hidden)
        self.token_mode, self.budget = config.token_mode, int(config.video_token_budget)

    def forward(self, features, pixel_values_videos, num_frames, *, newline=None):
        num_videos = self._check(features, pixel_values_videos, num_frames)
        frames = self.proj(features.mean(1)).reshape(num_videos, num_frames, -1)  # (V, T, D)
        brightness = pixel_values_videos.float().mean(dim=(2, 3, 4))  # (V, T)
        keep = brightness >= brightness.median(dim=1, keepdim=True).values
        tokens = [frames[v][keep[v]] for v in range(num_videos)]
        return finish_tokens(self.name, tokens, self.token_mode, self.budget, {"keep": keep})


class NotAConnector:
    pass
'''


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """The name of a fresh module holding the toy connectors, importable; the map is restored afterwards."""
    module = f"toy_connectors_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(TOY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = dict(CONNECTOR_CLASSES)
    yield module
    CONNECTOR_CLASSES.clear()
    CONNECTOR_CLASSES.update(saved)
    sys.modules.pop(module, None)


def _build(base, connector: str, **config):
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor

    torch.manual_seed(0)
    model = TrajVLMForConditionalGeneration.from_llava(base, connector=connector, **config).eval()
    return model, TrajVLMProcessor.from_pretrained(base).for_model(model.config)


def _check_fresh_layers(model) -> None:
    """The connector's layers (all in a sub-module) got nn.Linear's fresh initialisation, not the memory that
    loading on the meta device allocated for them: |w| <= 1 / sqrt(fan_in)."""
    proj = model.model.connector.proj
    bound = proj.in_features**-0.5
    assert proj.weight.abs().max() <= bound and proj.bias.abs().max() <= bound
    assert proj.weight.std() > bound / 4  # not zeros either


def _training_step(model, inputs) -> float:
    """One SGD step on the connector with the LM loss; returns the loss and checks the connector's weights moved."""
    model.train()
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    params = list(model.model.connector.parameters())
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=1.0)
    out = model(**inputs, labels=labels)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    optimizer.step()
    assert all(not torch.equal(a, p.detach()) for a, p in zip(before, params, strict=True))
    model.eval()
    return float(out.loss.detach())


def test_a_registered_connector_builds_trains_counts_and_is_benchmarked(tiny_base_path, plugin, tmp_path, load_script):
    from trajvlm import configuration

    register_connector("frame_tokens", f"{plugin}:FrameTokens")  # the only step a third party takes

    assert "frame_tokens" in connector_names() and "frame_tokens" in configuration.CONNECTOR_NAMES
    model, proc = _build(tiny_base_path, "frame_tokens", connector_kwargs={"per_frame": 3})
    _check_fresh_layers(model)
    assert type(model.model.connector).__name__ == "FrameTokens" and not model.config.expands_in_model
    inputs = batch(proc, num_frames=5)
    # the processor wrote T * per_frame placeholders per video, and the model filled exactly those
    assert (inputs["input_ids"] == proc.video_token_id).sum(-1).tolist() == [5 * 3, 5 * 3]
    with torch.no_grad():
        out = model(**inputs)
    assert out.visual_token_counts == [15, 15]
    loss = _training_step(model, batch(proc, num_frames=5, side="right"))
    assert loss == loss and loss > 0  # finite and positive
    assert check_generate_with_cache(model, proc) == [6 * 3, 6 * 3]
    check_round_trip(model, proc, tmp_path / "saved")  # from_pretrained finds it through the map
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["connector_kwargs"] == {"per_frame": 3}
    # the benchmark's rows list it, after the upstream reference
    rows = load_script("eval/bench/bench_vlm.py").connector_rows()
    assert "frame_tokens" in rows and rows.index("frame_tokens") > 0
    with pytest.raises(ValueError, match="unknown connector 'nope'; valid connectors: pool, .*frame_tokens"):
        configuration.TrajVLMConfig(connector="nope")


def test_a_registered_connector_whose_count_only_the_content_decides(tiny_base_path, plugin):
    register_connector("bright_frames", f"{plugin}:BrightFrames")

    model, proc = _build(tiny_base_path, "bright_frames")
    _check_fresh_layers(model)
    assert model.config.expands_in_model
    videos = [torch.full((6, 3, 32, 32), 0, dtype=torch.uint8) for _ in range(2)]
    for t in range(6):
        videos[0][t] += 40 * t  # video 0 brightens frame by frame: frames 2..5 reach its lower median (frame 2)
    videos[1][2:4] = 200  # video 1: 4 dark frames and 2 bright ones: the median is dark, all 6 stay
    proc.tokenizer.padding_side = "left"
    inputs = proc(text=["<video>\nWhat?", "<video>\nWhat?"], videos=videos)
    assert (inputs["input_ids"] == proc.video_token_id).sum(-1).tolist() == [1, 1]  # one per video, adaptive
    with torch.no_grad():
        out = model(**inputs)
    assert out.visual_token_counts == [4, 6]
    proc.tokenizer.padding_side = "right"
    _training_step(model, proc(text=["<video>\nWhat?", "<video>\nWhat?"], videos=videos))
    # fixed mode: the processor writes the budget, the model pads the rest
    model, proc = _build(tiny_base_path, "bright_frames", token_mode="fixed", video_token_budget=5)
    inputs = proc(text=["<video>\nWhat?", "<video>\nWhat?"], videos=videos)
    assert (inputs["input_ids"] == proc.video_token_id).sum(-1).tolist() == [5, 5]
    with torch.no_grad():
        assert model(**inputs).visual_token_counts == [4, 5]


def test_two_step_training_of_a_registered_connector(tiny_base_path, train_data, tmp_path, plugin):  # noqa: F811
    register_connector("frame_tokens", f"{plugin}:FrameTokens")
    check_two_step_training(tiny_base_path, train_data, tmp_path, "frame_tokens", {"per_frame": 2})


def test_registration_errors_name_the_input(plugin):
    with pytest.raises(ValueError, match="must be 'module:Class'.*got 'no_colon'"):
        register_connector("mine", "no_colon")
    with pytest.raises(ValueError, match="connector 'pool' is already registered as 'trajvlm.connectors.pool:Pool"):
        register_connector("pool", f"{plugin}:FrameTokens")
    register_connector("pool", CONNECTOR_CLASSES["pool"])  # the same target again is fine
    register_connector("plain", f"{plugin}:NotAConnector")
    with pytest.raises(TypeError, match="connector 'plain': .*NotAConnector is not a .*Connector subclass"):
        get_connector_class("plain")
    register_connector("missing_class", f"{plugin}:Nowhere")
    with pytest.raises(ImportError, match=f"module {plugin} has no Nowhere"):
        get_connector_class("missing_class")
    register_connector("missing_module", "no_such_module_here:Thing")
    with pytest.raises(ImportError, match="cannot import no_such_module_here"):
        get_connector_class("missing_module")
    with pytest.raises(ValueError, match="unknown connector 'nope'; valid connectors: pool, trajtok"):
        get_connector_class("nope")


def test_every_map_entry_imports_and_is_a_connector():
    assert set(registry.CONNECTORS) == set(CONNECTOR_CLASSES)
    for name in connector_names():
        cls = get_connector_class(name)
        assert issubclass(cls, Connector) and cls.name == name, (name, cls)
        assert registry.CONNECTORS[name] is cls
        if cls.expands_in_processor:  # it must count its tokens for the processor
            assert cls.tokens_per_video(4, grid=8, connector_kwargs={}) > 0, name


def test_the_map_reads_without_torch():
    code = (
        "import sys\n"
        "import trajvlm.connectors as c\n"
        "from trajvlm.connectors.registry import connector_names\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(','.join(connector_names()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(",") == list(CONNECTOR_CLASSES)


# ---------------------------------------------------------------------------------------------------------------
# no name comparisons outside trajvlm/connectors/

SCANNED = ("trajvlm", "eval", "scripts")
# Comparisons with a string that happens to equal a connector name but is not one: (file, compared expression).
NOT_CONNECTOR_NAMES = {
    ("eval/bench/bench_trajvit2.py", "enc"): "a TrajViT2 encoder kind (trajtok or trajvit), not a VLM connector",
    ("eval/bench/bench_coordtok.py", "model_cfg['kind']"): "a CoordTok model kind, not a VLM connector",
    ("eval/bench/bench_coordtok.py", "r['kind']"): "a CoordTok model kind, not a VLM connector",
}
EQUALITY = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)
MEMBERSHIP = (ast.In, ast.NotIn)


def _name(node: ast.AST, names: set[str]) -> str | None:
    return node.value if isinstance(node, ast.Constant) and node.value in names else None


def name_comparisons(source: str, names: set[str]) -> list[tuple[int, str, str]]:
    """(line, the compared expression, the name) of every comparison of ``source`` with a connector name:
    ``x == "pool"``, ``x != "pool"``, ``"pool" in x``, ``x in ("pool", "tome")`` (a collection of names only)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            if isinstance(op, EQUALITY):
                for a, b in ((left, right), (right, left)):
                    if (name := _name(b, names)) is not None:
                        found.append((node.lineno, ast.unparse(a), name))
            elif isinstance(op, MEMBERSHIP):
                if (name := _name(left, names)) is not None:
                    found.append((node.lineno, ast.unparse(right), name))
                elif isinstance(right, (ast.Tuple, ast.List, ast.Set)) and right.elts:
                    hits = [_name(e, names) for e in right.elts]
                    if all(hits):
                        found.append((node.lineno, ast.unparse(left), ", ".join(hits)))
    return found


def test_the_name_scan_finds_each_form_of_comparison():
    names = set(CONNECTOR_CLASSES)
    source = (
        "if config.connector == 'pool': pass\n"
        "if 'trajtok' != spec['connector']: pass\n"
        "if 'tome' in chosen: pass\n"
        "if cfg.connector not in ('pool', 'resampler'): pass\n"
        "if mode == 'bilinear' or m in ('connector', 'trajtok', 'encoder') or x is None: pass\n"
    )
    assert name_comparisons(source, names) == [
        (1, "config.connector", "pool"),
        (2, "spec['connector']", "trajtok"),
        (3, "chosen", "tome"),
        (4, "cfg.connector", "pool, resampler"),
    ]


def test_no_module_outside_connectors_compares_a_connector_name():
    names = set(CONNECTOR_CLASSES)
    offenders, allowed_seen = [], set()
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("trajvlm/connectors/"):
                continue
            for line, expr, name in name_comparisons(path.read_text(encoding="utf-8"), names):
                if (rel, expr) in NOT_CONNECTOR_NAMES:
                    allowed_seen.add((rel, expr))
                    continue
                offenders.append(f"{rel}:{line}: {expr} against {name!r}")
    assert not offenders, "ask the connector class for a capability instead:\n" + "\n".join(offenders)
    assert allowed_seen == set(NOT_CONNECTOR_NAMES), "stale NOT_CONNECTOR_NAMES entries"
