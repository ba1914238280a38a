"""Export formats: a pool model as a plain llava_onevision checkpoint, a trajtok model with its code (auto_map).

"Without trajvlm / trajtok installed" is simulated: the loading runs in a subprocess (the project venv's python,
the repository off its path) that first installs a meta-path finder raising ModuleNotFoundError for both names
(tests/trajvlm/export_load_check.py --block-project). A real second venv would take minutes to build; docs/export.md
records the same check run once in a real scratch venv holding only torch + transformers.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

from tests.trajvlm.helpers import random_video, tiny_trajvlm

CHECK_SCRIPT = Path(__file__).with_name("export_load_check.py")
PROMPT = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the video."}]}]


def _perturbed(model, seed: int = 1):
    """The model with every weight moved a little, so an export that wrote the base's weights would be caught."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def _inputs(processor):
    text = processor.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    video = random_video(num_frames=4, height=48, width=40, seed=3)
    return text, video, dict(processor(text=[text], videos=[video]))


def _load_elsewhere(runs: list[tuple[Path, str, torch.Tensor, dict]], tmp_path: Path) -> list[dict]:
    """Run export_load_check.py with trajvlm / trajtok blocked and the repository off the path; its results.

    ``runs``: (model_dir, text, video, model_inputs) per exported model, all loaded by one subprocess."""
    args, outs = [], []
    for k, (model_dir, text, video, model_inputs) in enumerate(runs):
        inputs, out = tmp_path / f"inputs{k}.pt", tmp_path / f"out{k}.pt"
        torch.save({"text": text, "video": video, "model_inputs": model_inputs}, inputs)
        args += [str(model_dir), str(inputs), str(out)]
        outs.append(out)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"), OMP_NUM_THREADS="1")
    cwd = tmp_path / "elsewhere"  # not the repository: it must not be importable from the working directory
    cwd.mkdir()
    cmd = [sys.executable, str(CHECK_SCRIPT), "--block-project", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [torch.load(out) for out in outs]


def test_pool_exports_a_plain_llava_onevision_checkpoint(tiny_base_path, tmp_path):
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, LlavaOnevisionForConditionalGeneration
    from transformers.models.llava_onevision.processing_llava_onevision import LlavaOnevisionProcessor

    from trajvlm.training.export import save_model

    model, processor = tiny_trajvlm(tiny_base_path, connector="pool")
    model = _perturbed(model)
    out = tmp_path / "plain"
    assert save_model(model, processor, out) == "llava_onevision"

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llava_onevision"
    assert config["architectures"] == ["LlavaOnevisionForConditionalGeneration"]
    assert not set(config) & {"connector", "connector_kwargs", "trajtok", "token_mode", "auto_map"}
    assert not list(out.glob("*.py"))
    # the tensor names transformers itself writes for LlavaOnevisionForConditionalGeneration (the tiny base)
    with (
        safe_open(out / "model.safetensors", "pt") as ours,
        safe_open(tiny_base_path / "model.safetensors", "pt") as up,
    ):
        assert set(ours.keys()) == set(up.keys())
    plain, info = LlavaOnevisionForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]

    text, video, batch = _inputs(processor)
    with torch.no_grad():
        want = model(**batch).logits
        got = plain.eval()(**batch).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

    # processor side: tokenizer, chat template, image processor, and upstream's video-token rule on these settings
    assert (out / "chat_template.jinja").read_text() == processor.chat_template
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer(text)["input_ids"] == processor.tokenizer(text)["input_ids"]
    image_processor = AutoImageProcessor.from_pretrained(out)
    assert list(image_processor.image_mean) == processor.image_mean and image_processor.size["height"] == 64
    settings = json.loads((out / "processor_config.json").read_text())
    assert settings["processor_class"] == "LlavaOnevisionProcessor"
    upstream_settings = SimpleNamespace(num_image_tokens=settings["num_image_tokens"], video_token="<video>")
    expanded = LlavaOnevisionProcessor.replace_video_token(upstream_settings, dict(batch), 0)
    assert expanded.count("<video>") == int((batch["input_ids"] == model.config.video_token_id).sum())
    if importlib.util.find_spec("torchvision") is None:
        # AutoProcessor reads the llava-hf files as far as upstream's video processor, whose class needs torchvision
        with pytest.raises(ImportError, match="LlavaOnevisionVideoProcessor requires the Torchvision"):
            AutoProcessor.from_pretrained(out)

    # transformers alone, with trajvlm / trajtok unimportable
    (result,) = _load_elsewhere([(out, text, video, batch)], tmp_path)
    assert result["project_modules"] == []
    assert result["model_class"].endswith("modeling_llava_onevision.LlavaOnevisionForConditionalGeneration")
    torch.testing.assert_close(result["logits"], want, rtol=0, atol=1e-5)
    new_tokens = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert torch.equal(result["generated"][:, batch["input_ids"].shape[1] :], new_tokens)
    assert torch.equal(result["text_ids"], processor.tokenizer(text, return_tensors="pt")["input_ids"])
    if "input_ids" in result:  # where torchvision is installed, upstream's own processor ran
        assert torch.equal(result["input_ids"], batch["input_ids"])


def test_trajtok_model_carries_its_code(tiny_base_path, tmp_path):
    from trajvlm.training.export import save_model
    from trajvlm.training.remote_code import AUTO_MAP

    model, processor = tiny_trajvlm(tiny_base_path, connector="trajtok")
    out = tmp_path / "remote"
    assert save_model(model, processor, out) == "remote_code"
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "trajvlm" and config["auto_map"] == AUTO_MAP
    assert json.loads((out / "processor_config.json").read_text())["auto_map"] == {
        "AutoProcessor": "processing_trajvlm.TrajVLMProcessor"
    }
    files = {p.name for p in out.glob("*.py")}
    assert {
        "configuration_trajvlm.py",
        "modeling_trajvlm.py",
        "processing_trajvlm.py",
        "trajtok_core_modeling.py",
    } <= files
    for path in out.glob("*.py"):  # no absolute import of the project is left, lazy ones included
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] not in ("trajvlm", "trajtok"), f"{path.name}: {node.module}"
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & {"trajvlm", "trajtok"}, path.name

    text, video, batch = _inputs(processor)
    with torch.no_grad():
        want = model(**batch).logits
        new_tokens = model.generate(**batch, max_new_tokens=4, do_sample=False)
    (result,) = _load_elsewhere([(out, text, video, batch)], tmp_path)
    assert result["project_modules"] == []
    for key in ("config_class", "model_class", "processor_class"):
        assert result[key].startswith("transformers_modules."), result[key]  # the folder's code, not the project's
    assert result["model_class"].endswith("modeling_trajvlm.TrajVLMForConditionalGeneration")
    assert torch.equal(result["input_ids"], batch["input_ids"])
    torch.testing.assert_close(result["logits"], want, rtol=0, atol=1e-5)
    assert torch.equal(result["generated"], new_tokens)


def test_export_command_defaults_and_format_errors(tiny_base_path, tmp_path):
    from tests.trajvlm.train_fixtures import make_config
    from trajvlm.cli import main
    from trajvlm.training.export import export, save_model

    # a full-model checkpoint of a pool run (no adapter): the command writes the plain format by default
    model, processor = tiny_trajvlm(tiny_base_path, connector="pool")
    ckpt = tmp_path / "pool_run"
    model.save_pretrained(ckpt)
    processor.save_pretrained(ckpt)
    make_config(tiny_base_path, tmp_path, tmp_path / "unused", connector="pool").save(ckpt)
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "cli")]) == 0
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["model_type"] == "llava_onevision"
    export(ckpt, tmp_path / "kept", format="trajvlm")  # the TrajVLM format on request (what training writes)
    kept = json.loads((tmp_path / "kept" / "config.json").read_text())
    assert kept["model_type"] == "trajvlm" and "auto_map" not in kept and not list((tmp_path / "kept").glob("*.py"))

    with pytest.raises(ValueError, match="unknown export format 'onnx'"):
        export(ckpt, tmp_path / "x", format="onnx")
    trajtok_model, trajtok_processor = tiny_trajvlm(tiny_base_path, connector="trajtok")
    with pytest.raises(ValueError, match="connector is 'trajtok'.*--format remote_code"):
        save_model(trajtok_model, trajtok_processor, tmp_path / "y", format="llava_onevision")
    # pooling upstream does not do: not plain by default, refused when asked for
    averaged, averaged_processor = tiny_trajvlm(tiny_base_path, connector="pool", connector_kwargs={"mode": "average"})
    with pytest.raises(ValueError, match="mode='average'.*upstream pools bilinear with stride 2"):
        save_model(averaged, averaged_processor, tmp_path / "z", format="llava_onevision")
    assert save_model(averaged, averaged_processor, tmp_path / "avg") == "remote_code"
    (tmp_path / "avg" / "user_notes.py").write_text("# not ours\n")
    assert save_model(model, processor, tmp_path / "avg") == "llava_onevision"  # re-exported over it, as plain
    assert [p.name for p in (tmp_path / "avg").glob("*.py")] == ["user_notes.py"]  # the old code went, not theirs


@pytest.mark.slow
def test_other_connectors_carry_their_code(tiny_base_path, tmp_path):
    """resampler, tome, vtok, coordtok and trajvit load from their folders too (vtok / trajvit's default shot
    detection needs opencv, as in the project: the project venv has it)."""
    from trajvlm.training.export import save_model

    connectors = ("resampler", "tome", "vtok", "coordtok", "trajvit")
    runs, wants = [], []
    for connector in connectors:
        model, processor = tiny_trajvlm(tiny_base_path, connector=connector)
        assert save_model(model, processor, tmp_path / connector) == "remote_code"
        text, video, batch = _inputs(processor)
        with torch.no_grad():
            wants.append((model(**batch).logits, model.generate(**batch, max_new_tokens=4, do_sample=False)))
        runs.append((tmp_path / connector, text, video, batch))
    for connector, result, (logits, new_tokens) in zip(connectors, _load_elsewhere(runs, tmp_path), wants, strict=True):
        assert result["project_modules"] == [], connector
        assert result["model_class"].startswith("transformers_modules."), connector
        torch.testing.assert_close(result["logits"], logits, rtol=0, atol=1e-5, msg=connector)
        assert torch.equal(result["generated"], new_tokens), connector


def test_remote_code_rewrites_imports_and_refuses_other_forms(tmp_path):
    from trajvlm.training.remote_code import flat_name, rewrite_source

    source = (
        "from __future__ import annotations\n"
        "from trajtok import TrajTok, TrajTokConfig  # noqa: F401\n"
        "from trajvlm.connectors.registry import CONNECTORS as REGISTRY\n"
        "\n"
        "def lazy():\n"
        "    from trajtok.nn.encoder import TrajectoryEncoder\n"
        "    return TrajectoryEncoder, 'trajvlm.vtok', 'trajvlm.vtok is imported by name'\n"
        "MAP = {'vtok': 'trajvlm.connectors.vtok:VTokConnector', 'x': 'trajvlm.vtok:no class: here'}\n"
    )
    out = rewrite_source("trajvlm.example", source, tmp_path / "example.py")
    assert out.name == "trajvlm_example" and flat_name("trajvlm.modeling") == "modeling_trajvlm"
    body = out.source.splitlines()
    assert body[0].startswith("# Generated by `trajvlm export` from trajvlm.example")
    assert body[1] == "from __future__ import annotations"
    # a package re-export resolves to the defining modules, one line each, the comment kept
    assert body[2] == "from .trajtok_core_modeling import TrajTok"
    assert body[3] == "from .trajtok_core_configuration import TrajTokConfig  # noqa: F401"
    assert body[4] == "from .trajvlm_connectors_registry import CONNECTORS as REGISTRY"
    assert body[7] == "    from .trajtok_nn_encoder import TrajectoryEncoder"
    # a module named by a string: resolved under the folder's package, and listed for transformers to copy
    assert "return TrajectoryEncoder, __package__ + \".trajvlm_vtok\", 'trajvlm.vtok is imported by name'" in body[8]
    assert "    from .trajvlm_vtok import *  # noqa: F401,F403" in body
    # a class named by a "module:Class" string (the connector map) likewise; other strings with colons stay
    assert body[9] == (
        "MAP = {'vtok': __package__ + \".trajvlm_connectors_vtok:VTokConnector\", 'x': 'trajvlm.vtok:no class: here'}"
    )
    assert "    from .trajvlm_connectors_vtok import *  # noqa: F401,F403" in body
    assert out.needs == {
        "trajtok.core.modeling",
        "trajtok.core.configuration",
        "trajvlm.connectors.registry",
        "trajtok.nn.encoder",
    } | {"trajvlm.vtok", "trajvlm.connectors.vtok"}
    for bad, reason in (
        ("import trajtok.io.video\n", "cannot be made relative"),
        ("from trajtok.io.video import *\n", r"import \*` is not supported"),
        ("from trajtok import nn\n", "imports a sub-module"),
        ("x = 1; from trajtok.io.video import load_video\n", "sharing its line"),
    ):
        with pytest.raises(ValueError, match=reason):
            rewrite_source("trajvlm.example", bad, tmp_path / "example.py")
