"""Build a small LLaVA-OneVision-compatible base model in code and save it like a llava-hf checkpoint.

    trajvlm build-base --out runs/base-tiny                 # tests, quick start (a few MB)
    trajvlm build-base --out runs/base-mid --size mid       # benchmark: SigLIP 384 px / 14 -> 27x27, 10-layer LLM
    trajvlm build-base --out runs/base --vocab-from data/synth   # add the words of a `trajtok synth` dataset
    trajvlm build-base --out runs/base --llm smollm2 --tower runs/tower   # a real LLM + a pretrained tower

No weights can be downloaded here, so the quick start and the tests build a random SigLIP tower + Qwen2 LLM,
wrap them in ``LlavaOnevisionForConditionalGeneration`` and save them with ``save_pretrained``, next to a tokenizer
trained locally on the synthetic world's words and a :class:`~trajvlm.processing.TrajVLMProcessor`. Everything
downstream then loads the directory with ``from_pretrained``, the same path a real llava-hf checkpoint takes.

``--llm`` puts any causal LM in place of the random Qwen2 (a Hugging Face folder, a GGUF file, or ``smollm2``: see
:mod:`trajvlm.llm`): its weights, tokenizer and chat template are kept, the ``<image>`` / ``<video>`` placeholders
are added (embedding rows initialised to the mean of the existing ones), and ``--tower`` takes the SigLIP tower
trained by ``trajvlm pretrain-tower`` instead of a random one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipVisionConfig,
)

from trajtok.synth.events import SIDES
from trajtok.synth.world import COLOURS, SHAPES
from trajvlm.llm import adapt_tokenizer, load_llm
from trajvlm.processing import TrajVLMProcessor, check_sampling
from trajvlm.training.tower import load_tower

logger = logging.getLogger(__name__)

# Special tokens take the first ids, in this order (Qwen2 ChatML names + the llava-hf placeholders).
SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")

# Qwen-style ChatML. Message content is either a string or a list of {"type": "text"|"video"|"image", ...} parts
# (the llava-hf processor format); media parts render as their placeholder on its own line, before the text.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Sentences in the style of the synthetic world's captions and questions; with the colour / shape / side names
# from trajtok.synth they make the tokenizer's training corpus, so common words are single tokens.
_BUILTIN_TEXT = """
Describe the video. Describe what happens in the video in detail.
How many different objects appear in the video? How many distinct objects are shown?
Which of these objects appeared first in the video? In which order did these objects first appear?
Through which side of the frame did the object leave the first time?
What colour was the object that entered the frame from the left? What shape was the object that suddenly vanished?
What colour was the object that left the frame through the right side? stopped for a while. suddenly appeared.
Which object collided with the circle? Which object did the square collide with first?
Which of these happened first? How many times did the star enter the frame? leave the frame? stop?
collide with another object. What colour did the ring turn into? Which object changed its colour?
Answer with the option's letter from the given choices directly. A. B. C. D. A B C D
The answer is A. The answer is B. The answer is C. The answer is D. Yes. No.
zero one two three four five six seven eight nine ten eleven twelve 0 1 2 3 4 5 6 7 8 9 10 11 12
objects move over a gradient background. A striped background with moving objects. On a checkered background,
a mottled background. A single object moves over a plain background. a striped a dotted an solid that
moves in a straight line, glides steadily across the scene, bounces around, bounces off the edges of the frame,
moves and stops again and again, moves in fits and starts, keeps changing direction, turns now and then.
At the start, the red circle and the blue square are visible. The video starts with an empty scene.
Then Next After that Later Soon after Finally, the scene cuts to a new view. collide. passes in front of
enters from the left. leaves through the bottom. appears. vanishes. turns green. stops for a moment.
Nothing else happens; the objects keep moving. The camera stays still. The camera pans slowly across the scene.
The camera slowly zooms in and out. The camera pans and zooms while three objects move; there are two collisions,
one exit from the frame, one colour change and one hard scene cut. collided entered left appeared vanished
what which who where when why how is are was were did does do the a an of in on at to from through with and or
then first last before after left right top bottom middle center video frame scene object objects clip camera
user assistant system You are a helpful assistant.
"""


def vocabulary_corpus(extra_texts: Iterable[str] | None = None) -> list[str]:
    """Lines the tokenizer is trained on: built-in caption/QA phrases, the synthetic world's names, extra texts."""

    lines = [line for line in _BUILTIN_TEXT.strip().splitlines() if line]
    names = [f"the {c} {s}" for c in COLOURS for s in SHAPES]
    lines += [" ".join(names[i : i + 8]) for i in range(0, len(names), 8)]
    lines += [" ".join(f"turned {c}. {c}" for c in COLOURS), " ".join(f"{s}s {s}" for s in SHAPES)]
    lines += [" ".join(f"the {s} side, {s}" for s in SIDES)]
    if extra_texts is not None:
        lines += [str(t) for t in extra_texts if str(t).strip()]
    return lines


def texts_from_dataset(root: str | Path) -> list[str]:
    """All human/gpt turns of a ``trajtok synth`` dataset's ``{split}/captions.json`` and ``{split}/qa.json``."""
    root = Path(root)
    files = sorted(root.glob("*/captions.json")) + sorted(root.glob("*/qa.json"))
    if not files:
        raise FileNotFoundError(f"no */captions.json or */qa.json under {root} (expected a `trajtok synth --out` dir)")
    texts = []
    for path in files:
        for sample in json.loads(path.read_text()):
            texts += [turn["value"].replace("<video>", "") for turn in sample.get("conversations", [])]
    return texts


def build_tokenizer(vocab_texts: Iterable[str] | None = None, vocab_size: int = 1024):
    """A byte-level BPE tokenizer (no unknown tokens) with ChatML specials, as a ``PreTrainedTokenizerFast``."""

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(vocabulary_corpus(vocab_texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<image>", "<video>"],
        padding_side="left",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def base_config(
    tokenizer,
    *,
    image_size: int = 64,
    patch_size: int = 8,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    llm_hidden: int = 64,
    llm_layers: int = 2,
    llm_intermediate: int | None = None,
    llm_heads: int | None = None,
):
    """``LlavaOnevisionConfig`` with a SigLIP tower and a Qwen2 LLM of the given sizes (llava-hf defaults otherwise)."""

    if image_size < patch_size:
        raise ValueError(f"image_size {image_size} must be at least patch_size {patch_size}")
    v_heads = max(1, vision_hidden // 64)
    t_heads = llm_heads or max(2, llm_hidden // 64)
    if llm_hidden % t_heads or vision_hidden % v_heads:
        raise ValueError(f"hidden sizes ({vision_hidden}, {llm_hidden}) must divide by heads ({v_heads}, {t_heads})")
    vision = SiglipVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * 4,
        num_hidden_layers=vision_layers,
        num_attention_heads=v_heads,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=llm_hidden,
        intermediate_size=llm_intermediate or llm_hidden * 3,
        num_hidden_layers=llm_layers,
        num_attention_heads=t_heads,
        num_key_value_heads=max(1, t_heads // 2),
        max_position_embeddings=32768,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    return llava_config(vision, text, tokenizer, tie_word_embeddings=False)


def llava_config(vision, text, tokenizer, *, tie_word_embeddings: bool):
    """The ``LlavaOnevisionConfig`` of a base: tower + LLM configs, the tokenizer's media tokens, full features."""

    side = vision.image_size
    # anyres pinpoints as multiples of the tower's size, like llava-hf's 384..2304 grid (images only; videos
    # always take one tile per frame).
    pinpoints = [[side * a, side * b] for a in range(1, 4) for b in range(1, 4)]
    return LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=pinpoints,
        tie_word_embeddings=tie_word_embeddings,
    )


SIZES: dict[str, dict] = {
    # tests and the quick start: a few MB, a forward pass in milliseconds
    "tiny": {},
    # the benchmark: the real tower geometry (384 px, patch 14 -> 27x27 = 729 patches per frame) with narrow layers,
    # so the relative prefill cost of pooling vs trajectory tokens is honest; about 100M parameters
    "mid": {
        "image_size": 384,
        "patch_size": 14,
        "vision_hidden": 256,
        "vision_layers": 4,
        "llm_hidden": 768,
        "llm_layers": 10,
        "llm_intermediate": 2048,
        "llm_heads": 12,
    },
}


def build_tiny_base(
    out_dir: str | Path,
    *,
    image_size: int = 64,
    patch_size: int = 8,
    vision_hidden: int = 64,
    llm_hidden: int = 64,
    llm_layers: int = 2,
    vocab_texts: Iterable[str] | None = None,
    seed: int = 0,
    vision_layers: int = 2,
    llm_intermediate: int | None = None,
    llm_heads: int | None = None,
    num_frames: int = 8,
) -> Path:
    """Build a random LLaVA-OneVision model + tokenizer + processor and save them to ``out_dir``; returns the path.

    The directory loads with ``LlavaOnevisionForConditionalGeneration.from_pretrained`` (config ``model_type``
    ``llava_onevision``), ``TrajVLMProcessor.from_pretrained`` and ``AutoTokenizer.from_pretrained``.
    ``num_frames`` is the processor's default number of frames sampled per video.
    """

    check_sampling(num_frames, None, None)  # before anything is written
    out = Path(out_dir)
    tokenizer = build_tokenizer(vocab_texts)
    config = base_config(
        tokenizer,
        image_size=image_size,
        patch_size=patch_size,
        vision_hidden=vision_hidden,
        vision_layers=vision_layers,
        llm_hidden=llm_hidden,
        llm_layers=llm_layers,
        llm_intermediate=llm_intermediate,
        llm_heads=llm_heads,
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor = TrajVLMProcessor(
        tokenizer=tokenizer,
        image_size=image_size,
        patch_size=patch_size,
        num_frames=num_frames,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("saved a %.1fM-parameter LLaVA-OneVision base to %s", n_params / 1e6, out)
    return out


def build_llm_base(
    out_dir: str | Path,
    llm: str | Path,
    *,
    tower: str | Path | None = None,
    image_size: int = 64,
    patch_size: int = 8,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    num_frames: int = 8,
    seed: int = 0,
) -> Path:
    """A LLaVA-OneVision base around a causal LM (``llm``: see :func:`trajvlm.llm.resolve_llm`); returns the path.

    The tower is ``tower`` (a ``trajvlm pretrain-tower`` output) or a random SigLIP of the given geometry; the
    projector is random (stage 1 trains it). The LLM's weights are copied strictly (missing or unexpected keys
    raise) and its tokenizer gets the media placeholders (:func:`trajvlm.llm.adapt_tokenizer`).
    """

    lm, tokenizer, source = load_llm(llm)
    tokenizer = adapt_tokenizer(tokenizer)
    vision_model = None
    if tower is not None:
        vision_model = load_tower(tower)
        vision = vision_model.config
    else:
        vision = SiglipVisionConfig(
            hidden_size=vision_hidden,
            intermediate_size=vision_hidden * 4,
            num_hidden_layers=vision_layers,
            num_attention_heads=max(1, vision_hidden // 64),
            image_size=image_size,
            patch_size=patch_size,
            vision_use_head=False,
        )
    text = lm.config.to_dict()
    text.pop("quantization_config", None)  # GGUF weights are de-quantised on load
    text_config = type(lm.config)(**text)
    tie = bool(getattr(lm.config, "tie_word_embeddings", False))
    config = llava_config(vision, text_config, tokenizer, tie_word_embeddings=tie)
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    missing, unexpected = model.model.language_model.load_state_dict(lm.model.state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(f"LLM weights of {source.describe()} do not fit: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        model.lm_head.weight.copy_(lm.get_output_embeddings().weight)
    if vision_model is not None:
        model.model.vision_tower.load_state_dict(vision_model.state_dict(), strict=True)
    if tie:
        model.tie_weights()
    old = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) != old:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = getattr(lm.generation_config, "bos_token_id", None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor = TrajVLMProcessor(
        tokenizer=tokenizer,
        image_size=vision.image_size,
        patch_size=vision.patch_size,
        num_frames=num_frames,
        chat_template=tokenizer.chat_template,
    )
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("saved a %.1fM-parameter LLaVA-OneVision base around %s to %s", n_params / 1e6, source.describe(), out)
    return out
