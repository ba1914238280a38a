"""from_llava with a pretrained TrajTok directory: only a connector that holds a TrajTok can take its weights."""

import pytest

from trajtok import TrajTok, TrajTokConfig
from trajvlm.modeling import TrajVLMForConditionalGeneration


def test_pretrained_trajtok_with_a_connector_without_one_is_refused(tiny_base_path, tmp_path):
    TrajTok(TrajTokConfig.tiny(num_queries=16)).save_pretrained(tmp_path / "trajtok")
    with pytest.raises(ValueError, match=r"trajtok=.*connector 'pool' holds none"):
        TrajVLMForConditionalGeneration.from_llava(tiny_base_path, connector="pool", trajtok=tmp_path / "trajtok")
