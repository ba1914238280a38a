"""Loading a model for inference: a saved TrajVLM, a llava-hf base with a connector, or a LoRA checkpoint.

A LoRA checkpoint of ``trajvlm train`` records how it was trained in :data:`CONFIG_NAME` (the resolved training
config as JSON). Loading reads the few fields that rebuild its base (``base_model``, the connector recipe,
``precision``, ``seed``) straight from that JSON and merges the adapter with peft's own API; nothing here imports
the Trainer stack. Training builds its base model through :func:`build_base` too, so a checkpoint is rebuilt
exactly as it was trained.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from trajtok.io.config import read_json_mapping
from trajvlm.modeling import TrajVLMForConditionalGeneration
from trajvlm.processing import TrajVLMProcessor, check_sampling

logger = logging.getLogger(__name__)

# file name of the resolved training config saved next to every checkpoint and final model
CONFIG_NAME = "trajvlm_train_config.json"
# the training config's precision names (and their long forms) -> torch dtypes
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
PRECISIONS = ("fp32", "bf16", "fp16")
# what build_base needs from a saved training config
RECIPE_FIELDS = (
    "base_model",
    "connector",
    "trajtok",
    "token_mode",
    "video_token_budget",
    "tokens_per_trajectory",
    "connector_kwargs",
    "attn_implementation",
    "precision",
    "seed",
)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> the first CUDA GPU if there is one, else the CPU. A CUDA device that does not exist raises
    ValueError (torch itself fails later with an AssertionError or a CUDA error)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r} ({e}); expected cpu, cuda, cuda:N, mps") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {device!r} requested but {why}; use --device cpu (or leave it unset)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` / ``"auto"`` -> bfloat16 on GPU, float32 on CPU; names like ``bf16``, ``float16`` are accepted."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)} or 'auto'")
    return DTYPES[dtype]


def is_adapter_checkpoint(path: str | Path) -> bool:
    """True when ``path`` holds a peft adapter (``adapter_config.json``)."""
    return (Path(path) / "adapter_config.json").is_file()


def read_recipe(checkpoint: str | Path) -> dict[str, Any]:
    """The fields of :data:`RECIPE_FIELDS` from the training config saved in ``checkpoint`` (a directory)."""
    path = Path(checkpoint) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path} (checkpoints hold {CONFIG_NAME})")
    values = read_json_mapping(path, "training config")
    missing = [name for name in RECIPE_FIELDS if name not in values]
    if missing:
        raise ValueError(f"{path} lacks the fields {missing}; it was not written by `trajvlm train`")
    if values["precision"] not in PRECISIONS:
        raise ValueError(f"{path}: precision must be one of {list(PRECISIONS)}, got {values['precision']!r}")
    return {name: values[name] for name in RECIPE_FIELDS}


def build_base(
    base_model: str | Path,
    *,
    connector: str,
    trajtok: str | None,
    token_mode: str,
    video_token_budget: int,
    tokens_per_trajectory: int | None,
    connector_kwargs: dict[str, Any] | None,
    attn_implementation: str,
    precision: str,
    seed: int,
    quantization_config: Any = None,
) -> TrajVLMForConditionalGeneration:
    """Load ``base_model`` as a ``TrajVLMForConditionalGeneration``, the way training builds it.

    A llava-hf LLaVA-OneVision directory gets ``connector`` (``from_llava``, seeded with ``seed`` so that a new
    connector starts the same on every rank and again on export); a saved TrajVLM model (``model_type: trajvlm``)
    loads as it is and must already use ``connector``. ``quantization_config``: bitsandbytes, for QLoRA training.
    """
    base = Path(base_model)
    config_file = base / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"base_model has no config.json: {base}")
    kwargs: dict[str, Any] = {"dtype": DTYPES[precision], "attn_implementation": attn_implementation}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    model_type = json.loads(config_file.read_text()).get("model_type")
    torch.manual_seed(seed)
    if model_type == "trajvlm":
        model = TrajVLMForConditionalGeneration.from_pretrained(base, **kwargs)
        if model.config.connector != connector:
            raise ValueError(
                f"{base} is a TrajVLM model with connector {model.config.connector!r}, but the config asks for "
                f"{connector!r}; set connector: {model.config.connector} to continue training it"
            )
        return model
    return TrajVLMForConditionalGeneration.from_llava(
        base,
        connector=connector,
        trajtok=trajtok,
        token_mode=token_mode,
        video_token_budget=video_token_budget,
        tokens_per_trajectory=tokens_per_trajectory,
        connector_kwargs=connector_kwargs or None,
        **kwargs,
    )


def load_trained(checkpoint: str | Path, *, merge: bool = False, precision: str | None = None):
    """A trained model from a checkpoint directory: the PeftModel (``merge=False``) or the merged model.

    ``precision`` overrides the saved config's (``fp32``, ``bf16``, ``fp16``). The base is built unquantised (a
    QLoRA adapter merges into full-precision weights, as QLoRA intends).
    """
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {ckpt}")
    recipe = read_recipe(ckpt)
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        recipe["precision"] = precision
    if not is_adapter_checkpoint(ckpt):
        return TrajVLMForConditionalGeneration.from_pretrained(ckpt, dtype=DTYPES[recipe["precision"]]).eval()
    try:  # peft is in the optional `train` extra; importing it pulls in all its tuners
        from peft import PeftModel
    except ImportError as e:
        raise ImportError(f"{ckpt} is a LoRA checkpoint; loading it needs peft: pip install 'trajvlm[train]'") from e

    base = build_base(**recipe)
    model = PeftModel.from_pretrained(base, ckpt).eval()
    return model.merge_and_unload() if merge else model


def load_model(
    path: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    connector: str | None = None,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    **kw: Any,
):
    """Load ``(model, processor)`` for inference from a model directory.

    ``path`` is a saved TrajVLM (``model_type: trajvlm``), a llava-hf LLaVA-OneVision / LLaVA-Video checkpoint
    (``connector`` is attached: default ``pool``, i.e. the unmodified model) or a LoRA checkpoint of ``trajvlm
    train`` (merged into the base on load). ``connector`` given for a saved TrajVLM replaces its connector.
    ``num_frames`` / ``fps`` / ``max_frames`` override the processor's saved video sampling. Other ``kw`` go to
    ``TrajVLMForConditionalGeneration.from_llava`` (``trajtok=``, ``token_mode=``, ``video_token_budget=``, ...).

    Raises:
        FileNotFoundError: ``path`` is not a directory with a ``config.json`` (or an adapter checkpoint).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"model directory not found: {path} (expected a TrajVLM or llava-hf LLaVA-OneVision checkpoint directory)"
        )
    check_tokenizer_checkpoint(path)
    check_sampling(num_frames, fps, max_frames)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    processor_dir = path
    if is_adapter_checkpoint(path):  # a LoRA checkpoint of `trajvlm train`
        model = load_trained(path, merge=True)
        if not (path / "processor_config.json").is_file():
            processor_dir = Path(read_recipe(path)["base_model"])
    elif not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no config.json in {path}: expected a TrajVLM or llava-hf LLaVA-OneVision checkpoint directory"
        )
    else:
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except json.JSONDecodeError as e:
            raise ValueError(f"{path / 'config.json'} is not valid JSON ({e})") from e
        if model_type == "trajvlm" and (connector is None or _saved_connector(path) == connector) and not kw:
            model = TrajVLMForConditionalGeneration.from_pretrained(path, dtype=torch_dtype)
        else:
            chosen = connector or (_saved_connector(path) if model_type == "trajvlm" else "pool")
            model = TrajVLMForConditionalGeneration.from_llava(path, connector=chosen, dtype=torch_dtype, **kw)
            if model_type != "trajvlm" and any(True for _ in model.model.connector.parameters()):
                logger.warning("the %r connector on %s is newly initialised (untrained)", chosen, path)
    model = model.to(device=device, dtype=torch_dtype).eval()
    processor = TrajVLMProcessor.from_pretrained(processor_dir).for_model(model.config)
    if num_frames is not None or fps is not None:
        processor.num_frames, processor.fps = num_frames, fps
    if max_frames is not None:
        processor.max_frames = max_frames
    processor.tokenizer.padding_side = "left"
    logger.info(
        "loaded %s (connector %r, %s, %s)", path, model.config.connector, device, str(torch_dtype).split(".")[-1]
    )
    return model, processor


def check_tokenizer_checkpoint(path: str | Path) -> None:
    """Raise ValueError when ``path`` is a TrajTok tokenizer checkpoint (or training run) given where a VLM is expected."""
    path = Path(path)
    config = path / "config.json"
    run_dir = (path / "train_config.json").is_file() and (path / "checkpoints").is_dir()
    tokenizer = False
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{config} is not valid JSON ({e})") from e
        tokenizer = isinstance(data, dict) and "model_type" not in data and "num_queries" in data
    if tokenizer or run_dir:
        raise ValueError(
            f"{path} is a TrajTok tokenizer checkpoint{' (training run)' if run_dir else ''}, not a vision-language "
            "model: use it with `trajtok tokenize VIDEO --checkpoint PATH`, or as the trajtok connector's weights "
            "(`trajtok: PATH` in a trajvlm training preset); --model / pretrained= expect a TrajVLM or llava-hf "
            "LLaVA-OneVision directory"
        )


def _saved_connector(path: Path) -> str:
    return json.loads((path / "config.json").read_text()).get("connector", "pool")


__all__ = [
    "CONFIG_NAME",
    "DTYPES",
    "PRECISIONS",
    "build_base",
    "check_tokenizer_checkpoint",
    "is_adapter_checkpoint",
    "load_model",
    "load_trained",
    "read_recipe",
    "resolve_device",
    "resolve_dtype",
]
