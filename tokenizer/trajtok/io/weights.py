"""Strict weight loading shared by every model of the package: mismatches go into the exception text."""

from __future__ import annotations

from torch import Tensor, nn


def load_strict(module: nn.Module, state: dict[str, Tensor], source: str, what: str) -> None:
    """Load ``state`` into ``module`` or raise a ValueError listing missing keys, unexpected keys and shape
    mismatches; ``source`` names where the weights came from, ``what`` the config they failed to match."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        raise ValueError(
            f"{source} does not match the {what} config: missing keys {missing}, unexpected keys {unexpected}, "
            f"shape mismatches {shapes}"
        )
    module.load_state_dict(state, strict=True)
