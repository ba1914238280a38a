"""Every TrajTok parameter is at least 1-dim (DeepSpeed ZeRO's broadcast cannot view a 0-dim tensor), and
checkpoints saved while the segmenter's scale and carry gate were 0-dim still load."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from trajtok import TrajTok, TrajTokConfig
from trajtok.core.modeling import tiny_model
from trajtok.nn.segmenter import SCALAR_PARAMETERS, upgrade_scalar_parameters

CONFIGS = {
    "tiny": lambda: TrajTokConfig.tiny(),
    "tiny-extent-external": lambda: TrajTokConfig.tiny(extent_encoding=True, external_dim=48, output_dim=32),
    "paper": lambda: TrajTokConfig.paper(),
    "release": lambda: TrajTokConfig.release(carry="restart"),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_no_trajtok_parameter_is_0_dim(name):
    with torch.device("meta"):  # shapes only: the paper and release sizes build in no time
        model = TrajTok(CONFIGS[name](), load_backbone_weights=False)
    zero_dim = [n for n, p in model.named_parameters() if p.dim() == 0]
    assert not zero_dim, f"0-dim parameters break DeepSpeed ZeRO: {zero_dim}"
    assert sum(1 for _ in model.parameters()) > 10


def _old_checkpoint(tmp_path):
    """A tiny TrajTok saved, then its scale and gate rewritten 0-dim, as checkpoints were before they became (1,)."""
    model = tiny_model(seed=0).eval()
    with torch.no_grad():  # values other than the initial ones, so a re-initialised parameter would show
        model.segmenter.logit_scale.fill_(1.7)
        model.segmenter.carry_gate.fill_(-0.4)
    model.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    state = load_file(str(path))
    for name in SCALAR_PARAMETERS:
        assert state[f"segmenter.{name}"].shape == (1,)
        state[f"segmenter.{name}"] = state[f"segmenter.{name}"].reshape(())
    save_file(state, str(path))
    return model, state


def test_checkpoint_with_0_dim_scale_and_gate_loads(tmp_path):
    model, state = _old_checkpoint(tmp_path)
    loaded = TrajTok.from_pretrained(tmp_path)
    assert loaded.segmenter.logit_scale.shape == (1,) and loaded.segmenter.carry_gate.shape == (1,)
    assert loaded.segmenter.logit_scale.item() == pytest.approx(1.7)
    assert loaded.segmenter.carry_gate.item() == pytest.approx(-0.4)
    video = torch.rand(1, 4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(video).tokens, model(video).tokens, rtol=0, atol=0)

    # the module's own hook: plain load_state_dict on the segmenter (no TrajTok loader in between)
    fresh = tiny_model(seed=1).segmenter
    own = {k.removeprefix("segmenter."): v for k, v in state.items() if k.startswith("segmenter.")}
    assert own["logit_scale"].dim() == 0
    fresh.load_state_dict(own, strict=True)
    assert fresh.logit_scale.shape == (1,) and fresh.logit_scale.item() == pytest.approx(1.7)
    assert own["logit_scale"].dim() == 0  # the caller's dict is left as it was


def test_upgrade_reshapes_only_0_dim_scalars():
    state = {"s.logit_scale": torch.tensor(2.0), "s.carry_gate": torch.tensor([0.5]), "s.other": torch.tensor(1.0)}
    assert upgrade_scalar_parameters(state, "s.") == ["s.logit_scale"]
    assert state["s.logit_scale"].shape == (1,) and state["s.carry_gate"].shape == (1,)
    assert state["s.other"].dim() == 0  # not a segmenter scalar: left for the strict loader to report
