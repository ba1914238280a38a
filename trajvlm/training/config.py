"""The training configuration: one dataclass that YAML presets fill, validated before any model is built.

    trajvlm validate --config trajvlm/presets/stage2_lora.yaml                 # check a preset, print it resolved
    trajvlm validate trajvlm/presets/demo_pool.yaml max_steps=4 --samples 50   # with key=value overrides

A preset is a flat YAML mapping of :class:`TrainConfig` fields. ``key=value`` overrides (values parsed as YAML)
apply after the file. Relative paths are taken from the current directory; ``deepspeed: zero2`` (a bare name)
means the shipped ``trajvlm/presets/deepspeed/zero2.json``. The resolved config is saved as JSON next to every
checkpoint (:data:`CONFIG_NAME`) and export / resume read it back, so behaviour never depends on a path or a name.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from trajtok import TrajTokConfig
from trajtok.checks import check_field_types, check_frame_count, check_values
from trajtok.io.config import (  # the project's one YAML + key=value loader
    load_config,
    parse_overrides,
    read_json_mapping,
    typed_values,
)
from trajvlm.connectors import build_connector
from trajvlm.connectors.registry import connector_names, connectors_with, get_connector_class
from trajvlm.inference.loading import CONFIG_NAME, PRECISIONS  # the checkpoint side reads them without this module
from trajvlm.modeling import trajvlm_config_for_base
from trajvlm.processing import check_sampling
from trajvlm.training.data import check_samples

logger = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
DEEPSPEED_DIR = PRESET_DIR / "deepspeed"

TOKEN_MODES = ("adaptive", "fixed")
STAGES = ("align", "finetune")
QUANTIZATIONS = ("none", "4bit", "8bit")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
REPORT_TO = ("none", "jsonl", "wandb", "tensorboard")
# report_to sinks that need a package: (modules, any of which will do; the install hint)
LOGGER_PACKAGES = {
    "tensorboard": (("tensorboard", "tensorboardX"), "pip install 'trajvlm[tensorboard]'"),
    "wandb": (("wandb",), "pip install wandb"),
}


@dataclass
class TrainConfig:
    """Everything one training run needs; every shipped preset in ``trajvlm/presets`` fills it."""

    # --- model -------------------------------------------------------------------------------------------------
    # directory of the base checkpoint: a llava-hf LLaVA-OneVision / LLaVA-Video model (the connector is added)
    # or a saved TrajVLM model (trained further as it is)
    base_model: str = ""
    # vision connector in place of patch pooling: "pool" (upstream behaviour), "trajtok" (trajectory tokens), ...
    connector: str = "trajtok"
    # pretrained TrajTok checkpoint directory for the trajtok connector; None = randomly initialised TrajTok
    trajtok: str | None = None
    # trajtok only: "adaptive" (the LLM sequence shrinks with the video's trajectories) or "fixed" (padded budget)
    token_mode: str = "adaptive"
    # most trajectory tokens per video (the fixed-mode length)
    video_token_budget: int = 256
    # trajtok only: tokens each trajectory emits (1, 2 or 4) in training and inference alike; None = TrajTok's own
    # choice (a random one of its configured counts per training step, its inference count in eval)
    tokens_per_trajectory: int | None = None
    # extra keyword arguments for the connector (e.g. {"stride": 2, "mode": "bilinear"} for pool)
    connector_kwargs: dict[str, Any] = field(default_factory=dict)
    # attention kernel of the LLM: "sdpa" (default), "eager", or "flash_attention_2" (needs the flash_attn package)
    attn_implementation: str = "sdpa"
    # dtype of the weights and the autocast: "fp32" (CPU), "bf16" (Ampere+ GPUs; also runs on a CPU, where it pays
    # only with AMX: on an AVX-512 BF16 CPU without it an LLM step took 1.5x as long as in fp32), "fp16" (GPU only)
    precision: str = "fp32"

    # --- what is trained ---------------------------------------------------------------------------------------
    # "align": connector + projector trained, LLM + vision tower frozen (stage 1);
    # "finetune": LoRA on the LLM with connector + projector fully trained, or the whole LLM with full_finetune
    stage: str = "align"
    # finetune only: train every LLM weight instead of LoRA adapters
    full_finetune: bool = False
    # keep the vision tower frozen in every stage (the usual LLaVA recipe); False trains it in finetune
    freeze_vision_tower: bool = True
    # module names (matched as a dotted path component) trained fully in every stage and saved with the adapter
    trainable_modules: list[str] = field(default_factory=lambda: ["multi_modal_projector", "connector"])
    # module names (a dotted path component) kept frozen inside the trainable ones, e.g. [segmenter]: TrajTok's
    # pretrained segmenter keeps its trajectories while the trajectory encoder, projector and LoRA learn
    frozen_modules: list[str] = field(default_factory=list)
    # LoRA rank
    lora_r: int = 16
    # LoRA scaling alpha (the update is scaled by alpha / r)
    lora_alpha: int = 32
    # dropout on the LoRA input
    lora_dropout: float = 0.05
    # LLM linear layers that get LoRA adapters (only inside the language model, never the tower or connector)
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # LLM weight quantisation through bitsandbytes: "none", "4bit" (QLoRA with LoRA) or "8bit"
    quantization: str = "none"
    # 4-bit data type: "nf4" (QLoRA) or "fp4"
    bnb_4bit_quant_type: str = "nf4"
    # quantise the 4-bit scales too (QLoRA's double quantisation)
    bnb_4bit_use_double_quant: bool = True

    # --- data ----------------------------------------------------------------------------------------------------
    # training data: a LLaVA-format JSON list of {"id", "video" | "image", "conversations"}, a JSON-lines file, or a
    # LLaVA-NeXT mixture YAML (datasets: [{json_path, sampling_strategy}]); see docs/data.md
    train_json: str = ""
    # directory the "video" paths of train_json are relative to
    video_root: str = ""
    # directory the "image" paths (still images, trained as one-frame videos) are relative to; None = video_root
    image_root: str | None = None
    # optional evaluation JSON (same format); None = no evaluation
    eval_json: str | None = None
    # directory of eval_json's videos; None = video_root
    eval_video_root: str | None = None
    # frames sampled per video, evenly spaced (LLaVA-Video's force_sample with frames_upbound); None = fps, or the
    # processor's saved setting when fps is None too
    num_frames: int | None = None
    # sample videos at this many frames per second instead (LLaVA-Video's video_fps); exclusive with num_frames
    fps: float | None = None
    # with fps: at most this many frames per video, thinned uniformly (LLaVA-Video's frames_upbound)
    max_frames: int | None = None
    # longest token sequence (after <video> expansion); longer samples are skipped and counted
    max_length: int = 4096
    # the run stops with an error once more than this fraction of the samples failed (missing/corrupt video)
    max_skip_fraction: float = 0.05
    # DataLoader worker processes (0 = load in the training process)
    dataloader_num_workers: int = 0

    # --- optimisation --------------------------------------------------------------------------------------------
    # samples per device per forward pass
    per_device_batch_size: int = 1
    # forward passes accumulated per optimizer step
    gradient_accumulation_steps: int = 1
    # peak learning rate (LoRA adapters / LLM weights)
    learning_rate: float = 2e-4
    # peak learning rate of the connector and projector; None = learning_rate
    connector_learning_rate: float | None = None
    # AdamW weight decay (not applied to biases and norms)
    weight_decay: float = 0.0
    # passes over the training data (ignored when max_steps > 0)
    num_epochs: float = 1.0
    # optimizer steps to run; -1 = num_epochs decides
    max_steps: int = -1
    # fraction of the steps with a linear warm-up
    warmup_ratio: float = 0.03
    # learning-rate schedule after warm-up (a transformers SchedulerType name: cosine, linear, constant, ...)
    lr_scheduler: str = "cosine"
    # gradient clipping norm
    max_grad_norm: float = 1.0
    # optimizer (a transformers OptimizerNames value: adamw_torch, adamw_torch_fused, paged_adamw_8bit, ...)
    optim: str = "adamw_torch"
    # seed of weight initialisation (new connector), data order and dropout
    seed: int = 42
    # recompute activations in the backward pass (less memory, about 30% slower)
    gradient_checkpointing: bool = False

    # --- distributed ---------------------------------------------------------------------------------------------
    # DeepSpeed JSON: a path or a shipped name (zero2, zero2_offload, zero3, zero3_offload); None = no DeepSpeed
    deepspeed: str | None = None
    # run on CPU even where a GPU exists (needed for multi-process CPU runs with torchrun / deepspeed)
    use_cpu: bool = False

    # --- outputs -------------------------------------------------------------------------------------------------
    # run directory: checkpoints (checkpoint-N), metrics.jsonl, adapter/ and final/
    output_dir: str = "runs/trajvlm"
    # save a checkpoint every this many optimizer steps
    save_steps: int = 500
    # keep at most this many checkpoints (oldest deleted first); None = keep all
    save_total_limit: int | None = 2
    # evaluate every this many steps when eval_json is set
    eval_steps: int = 500
    # log metrics every this many steps
    logging_steps: int = 10
    # metric sinks besides stdout: "jsonl" (output_dir/metrics.jsonl), "wandb", "tensorboard"
    report_to: list[str] = field(default_factory=lambda: ["jsonl"])
    # LoRA runs: at the end merge output_dir/adapter into output_dir/final (a standalone model + processor);
    # the other stages always save their final model there
    export_final: bool = True
    # equal-time comparisons: when training has run this many wall seconds (the step ending nearest to it), save the
    # model as it is then to output_dir/snapshot (merged into snapshot/final like final/ at the end), with
    # snapshot/snapshot.json recording the step and the seconds; None = no snapshot. Time counts from the start of
    # this invocation's training loop (a resumed run starts its clock again).
    snapshot_at_seconds: float | None = None

    def __post_init__(self) -> None:
        def choice(name: str, options: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in options:
                raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")

        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        # every field holds its declared kind (numbers finite; no list where a number belongs), named when not
        check_field_types(self)
        if not self.base_model:
            raise ValueError("base_model is required: the directory of a llava-hf LLaVA-OneVision or TrajVLM model")
        if not self.train_json:
            raise ValueError("train_json is required: a LLaVA-format JSON list of conversations")
        choice("connector", connector_names())
        choice("token_mode", TOKEN_MODES)
        if self.tokens_per_trajectory not in (None, 1, 2, 4):
            raise ValueError(f"tokens_per_trajectory must be 1, 2, 4 or null, got {self.tokens_per_trajectory!r}")
        choice("stage", STAGES)
        choice("quantization", QUANTIZATIONS)
        choice("precision", PRECISIONS)
        choice("attn_implementation", ATTN_IMPLEMENTATIONS)
        choice("bnb_4bit_quant_type", ("nf4", "fp4"))
        for sink in self.report_to:
            if sink not in REPORT_TO:
                raise ValueError(f"report_to entries must be in {list(REPORT_TO)}, got {sink!r}")
            if sink in LOGGER_PACKAGES and not any(importlib.util.find_spec(m) for m in LOGGER_PACKAGES[sink][0]):
                raise ValueError(  # a setting this machine cannot honour: one error line, before any model loads
                    f"report_to lists {sink!r} but {LOGGER_PACKAGES[sink][0][0]} is not installed; "
                    f"{LOGGER_PACKAGES[sink][1]}, or remove {sink!r} from report_to (e.g. report_to=[jsonl])"
                )
        if any(
            isinstance(getattr(self, n), str) for n in ("trainable_modules", "lora_target_modules", "frozen_modules")
        ):
            raise ValueError("trainable_modules, frozen_modules and lora_target_modules must be YAML lists of names")
        positive: tuple[str, ...] = (
            "lora_r",
            "lora_alpha",
            "per_device_batch_size",
            "gradient_accumulation_steps",
            "max_length",
        )
        positive += ("video_token_budget", "save_steps", "eval_steps", "logging_steps")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.snapshot_at_seconds is not None and not float(self.snapshot_at_seconds) > 0:
            raise ValueError(f"snapshot_at_seconds must be > 0 or null, got {self.snapshot_at_seconds!r}")
        if self.num_frames is not None:
            check_frame_count("num_frames", self.num_frames)
        self._check_sampling()
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0.0 <= self.max_skip_fraction <= 1.0:
            raise ValueError(f"max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate <= 0 or (self.connector_learning_rate is not None and self.connector_learning_rate <= 0):
            lrs = (self.learning_rate, self.connector_learning_rate)
            raise ValueError(f"learning rates must be positive, got learning_rate, connector_learning_rate = {lrs}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(
                f"max_steps must be a positive number of steps or -1 (num_epochs decides), got {self.max_steps}"
            )
        if self.max_steps == -1 and self.num_epochs <= 0:
            raise ValueError(f"num_epochs must be > 0 when max_steps is -1, got num_epochs={self.num_epochs}")
        for name in ("weight_decay", "max_grad_norm", "num_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.dataloader_num_workers < 0:
            raise ValueError(f"dataloader_num_workers must be >= 0, got {self.dataloader_num_workers}")
        if self.save_total_limit is not None and self.save_total_limit <= 0:
            raise ValueError(f"save_total_limit must be positive or null (keep all), got {self.save_total_limit}")
        # incompatible combinations
        if self.trajtok is not None and not get_connector_class(self.connector).holds_trajtok:
            raise ValueError(
                f"trajtok={self.trajtok!r} is set but connector is {self.connector!r}, which holds no TrajTok; use "
                f"connector: {' or '.join(connectors_with('holds_trajtok'))}"
            )
        if self.stage == "align" and self.full_finetune:
            raise ValueError("full_finetune needs stage: finetune (stage 'align' keeps the LLM frozen)")
        if self.quantization != "none" and self.full_finetune:
            raise ValueError(
                f"quantization={self.quantization!r} cannot be combined with full_finetune: quantised weights do not "
                "train; use LoRA (full_finetune: false) for QLoRA, or quantization: none"
            )
        if self.quantization != "none" and self.stage == "finetune" and not self.freeze_vision_tower:
            raise ValueError("freeze_vision_tower: false is not supported with quantization (LoRA targets the LLM)")
        if self.quantization != "none" and self.precision == "fp16":
            raise ValueError("quantization with precision fp16 is unstable; use bf16 (GPU) or fp32 (CPU)")
        if self.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
            raise ValueError(
                "attn_implementation 'flash_attention_2' needs the flash_attn package, which is not installed; "
                "install it with pip install 'trajvlm[gpu]' (CUDA only) or use attn_implementation: sdpa"
            )
        if self.deepspeed is not None:
            self.deepspeed = str(resolve_deepspeed(self.deepspeed))
            stage = deepspeed_zero_stage(self.deepspeed)
            if stage == 3 and self.quantization != "none":
                raise ValueError(
                    f"DeepSpeed ZeRO-3 ({self.deepspeed}) cannot shard bitsandbytes-quantised weights "
                    f"(quantization={self.quantization!r}); use a ZeRO-2 config for QLoRA"
                )

    def _check_sampling(self) -> None:
        """fps / max_frames / num_frames: one sampling rule, and batches whose videos share a frame count."""

        check_sampling(self.num_frames, self.fps, self.max_frames)
        if self.num_frames is not None and self.fps is not None:
            raise ValueError(
                f"give num_frames (evenly spaced) or fps (frames per second), not both; got num_frames="
                f"{self.num_frames}, fps={self.fps}"
            )
        if self.max_frames is not None and self.fps is None:
            raise ValueError(
                f"max_frames={self.max_frames} caps fps sampling; set fps too, or use num_frames alone for a fixed "
                "count (LLaVA-Video's force_sample)"
            )
        if self.fps is not None and self.per_device_batch_size > 1:
            raise ValueError(
                f"fps={self.fps} gives every video its own frame count, but the videos of one batch need the same "
                f"count: use per_device_batch_size: 1 (gradient_accumulation_steps for a larger batch), got "
                f"{self.per_device_batch_size}, or num_frames"
            )

    # ---------------------------------------------------------------------------------------------------------
    # properties

    @property
    def uses_lora(self) -> bool:
        """True when the LLM is trained through LoRA adapters (stage finetune without full_finetune)."""
        return self.stage == "finetune" and not self.full_finetune

    # ---------------------------------------------------------------------------------------------------------
    # I/O

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error that lists them with the valid field names, numbers
        written as text (YAML 1.1 reads ``2e-3`` as a string) become numbers where the field is one."""
        return cls(**typed_values(cls, values))

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
        """Read a YAML preset and apply ``key=value`` overrides (values parsed as YAML; numbers written as text
        become numbers where the field is one): the loader every training config of the project uses."""
        return load_config(cls, path, overrides, what="training preset")

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """Read the resolved config saved next to a checkpoint (a file, or the directory holding CONFIG_NAME)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"training config not found: {path} (checkpoints hold {CONFIG_NAME})")
        return cls.from_dict(read_json_mapping(path, "training config"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, directory: str | Path) -> Path:
        """Write the resolved config as ``directory/CONFIG_NAME``; returns the file path."""
        out = Path(directory) / CONFIG_NAME
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return out

    def check_files(self) -> None:
        """Raise FileNotFoundError for the first input path that does not exist (base model, data, TrajTok)."""
        base = Path(self.base_model)
        if not (base / "config.json").is_file():
            raise FileNotFoundError(f"base_model has no config.json: {base} (expected a saved model directory)")
        if self.trajtok is not None and not Path(self.trajtok).is_dir():
            raise FileNotFoundError(f"trajtok checkpoint directory not found: {self.trajtok}")
        for name in ("train_json", "eval_json"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise FileNotFoundError(f"{name} not found: {value}")
        for name in ("video_root", "eval_video_root", "image_root"):
            value = getattr(self, name)
            if value and not Path(value).is_dir():
                raise FileNotFoundError(f"{name} is not a directory: {value}")

    def check_data(self, strict: bool = False) -> dict[str, int]:
        """Read train_json / eval_json and check every row without decoding videos; returns samples per split.

        Raises ValueError naming the file for malformed JSON, an empty list, rows without ``conversations`` and
        videos missing under the video root: with ``strict`` for any such row, else when they are more than
        ``max_skip_fraction`` of the file (fewer are logged; training skips them).
        """

        fraction = 0.0 if strict else self.max_skip_fraction
        kwargs: dict[str, Any] = {"max_skip_fraction": fraction, "image_root": self.image_root, "seed": self.seed}
        counts = {"train": check_samples(self.train_json, self.video_root, **kwargs)}
        if self.eval_json is not None:
            root = self.eval_video_root or self.video_root
            counts["eval"] = check_samples(self.eval_json, root, **kwargs)
        return counts

    def model_config(self) -> Any:
        """The config of the model training builds (the base's with the configured connector); no weights read."""

        base = Path(self.base_model)
        if json.loads((base / "config.json").read_text()).get("model_type") == "trajvlm":
            config = AutoConfig.from_pretrained(base)
            if config.connector != self.connector:
                raise ValueError(
                    f"{base} is a TrajVLM model with connector {config.connector!r}, but the config asks for "
                    f"{self.connector!r}; set connector: {config.connector} to continue training it"
                )
        else:
            trajtok: Any = None
            if self.trajtok is not None:
                trajtok = TrajTokConfig.load(self.trajtok)
            config = trajvlm_config_for_base(
                base,
                connector=self.connector,
                trajtok=trajtok,
                token_mode=self.token_mode,
                video_token_budget=self.video_token_budget,
                tokens_per_trajectory=self.tokens_per_trajectory,
                connector_kwargs=self.connector_kwargs or None,
            )
        return config

    def check_connector(self) -> str:
        """Build the configured connector on the base model's config (no weights are read); returns its class name.

        Catches connector settings that only fail when the model is built (a TrajTok config transformers rejects,
        bad ``connector_kwargs``, a TrajTok checkpoint that does not fit).
        """

        config = self.model_config()
        try:
            with torch.device("meta"):  # shapes only: no memory for the weights, no initialisation cost
                connector = build_connector(config)
        except (TypeError, KeyError, AttributeError) as err:  # transformers' own failures on a bad sub-config
            raise ValueError(f"the {self.connector!r} connector cannot be built from this config: {err}") from err
        return type(connector).__name__


def config_from_overrides(cls: type, overrides: list[str] | dict[str, Any] | None) -> Any:
    """A dataclass config (``TowerConfig``, ``WarmupConfig``, ...) from ``key=value`` overrides: values parsed as
    YAML, number fields written as text (``lr=2e-3``) read as numbers, an unknown key an error naming the valid ones."""
    values = parse_overrides(overrides)
    names = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"bad override {unknown[0]!r}: expected key=value with key in {names}")
    return cls(**check_values(cls, values))


def resolve_deepspeed(value: str | Path) -> Path:
    """A DeepSpeed JSON path, or a shipped config name (``zero2``, ``zero3_offload``, ...) -> existing file path."""
    path = Path(value)
    if path.is_file():
        return path
    shipped = DEEPSPEED_DIR / (path.name if path.suffix == ".json" else f"{path.name}.json")
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in DEEPSPEED_DIR.glob("*.json"))
    raise FileNotFoundError(f"DeepSpeed config not found: {value} (not a file; shipped configs: {names})")


def deepspeed_zero_stage(path: str | Path) -> int:
    """Parse a DeepSpeed JSON (ValueError with the parser's message when malformed) and return its ZeRO stage."""
    try:
        ds = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"DeepSpeed config {path} is not valid JSON: {err}") from err
    if not isinstance(ds, dict):
        raise ValueError(f"DeepSpeed config {path} must hold a JSON object, got {type(ds).__name__}")
    return int(ds.get("zero_optimization", {}).get("stage", 0))
