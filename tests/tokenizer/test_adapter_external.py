"""TrajAdapter over a TrajTok with backbone="external" (no image model: ``features`` is None)."""

import torch

from trajtok import TrajTok, TrajTokConfig
from trajtok.adapter import TrajAdapter


def test_trajadapter_of_an_external_backbone_tokenizer_trains():
    torch.manual_seed(0)
    source = TrajTok(TrajTokConfig.tiny(backbone="external", external_dim=24, output_dim=32))
    adapter = TrajAdapter.from_pretrained_tokenizer(source, feature_dim=24, num_classes=3)
    assert adapter.trajtok.features is None
    adapter.train()  # the frozen segmenter stays in eval mode; there is no image model to switch
    assert adapter.training and adapter.pool.training and not adapter.trajtok.segmenter.training
    logits, tokens = adapter(torch.randn(2, 2, 4, 4, 24), torch.rand(2, 2, 3, 32, 32))
    assert logits.shape == (2, 3) and tokens.shape == (2,) and (tokens > 0).all()
