"""Train TrajVLM with HF ``Trainer``: stage 1 (align) and stage 2 (LoRA / QLoRA / full fine-tune), DeepSpeed ZeRO.

    trajvlm train --config trajvlm/presets/demo_trajtok.yaml                    # quick start, CPU, minutes
    trajvlm train --config trajvlm/presets/stage2_lora.yaml max_steps=100       # key=value overrides
    trajvlm train --config trajvlm/presets/stage2_lora.yaml --resume            # continue from the last checkpoint
    bash scripts/train_deepspeed.sh 8 trajvlm/presets/stage2_lora.yaml deepspeed=zero3

The recipe, top to bottom:

1. :class:`~trajvlm.training.config.TrainConfig` from the preset (validated before anything is built).
2. :func:`build_model`: the base checkpoint with the connector added (``from_llava``), bitsandbytes-quantised
   LLM for QLoRA (tower, projector, connector and ``lm_head`` stay unquantised).
3. :func:`setup_trainable`: stage ``align`` trains ``trainable_modules`` (connector + projector) only; stage
   ``finetune`` adds LoRA adapters to the LLM's linear layers (peft; the modules of ``trainable_modules`` go in
   ``modules_to_save`` so they are trained fully and saved with the adapter), or trains the whole LLM with
   ``full_finetune``. The vision tower stays frozen unless ``freeze_vision_tower: false``.
4. :class:`~trajvlm.training.data.LlavaVideoDataset` + :class:`~trajvlm.training.data.DataCollator`.
5. :class:`TrajVLMTrainer` (HF ``Trainer`` with a separate connector learning rate), so DeepSpeed, resume,
   gradient accumulation and mixed precision are the ones users already know.
6. Every checkpoint holds the adapter (or the full model), the processor and the resolved config
   (``trajvlm_train_config.json``); the end writes ``output_dir/adapter`` (LoRA) and ``output_dir/final``: a
   standalone model (LoRA merged, see :mod:`trajvlm.training.export`) that ``from_pretrained`` loads. With
   ``snapshot_at_seconds``, ``output_dir/snapshot`` holds the same outputs as they were after that much training
   (equal-time comparisons of a slower model, from the one run).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import BitsAndBytesConfig, Trainer, TrainerCallback, TrainingArguments
from transformers.integrations.deepspeed import unset_hf_deepspeed_config
from transformers.trainer import TRAINER_STATE_NAME

from trajtok.checks import (
    DiskWriteError,
    atomic_directory,
    disk_error_message,
    is_disk_error,
    reading_weights,
    replace_directory,
)
from trajvlm.inference.loading import DTYPES, RECIPE_FIELDS, build_base
from trajvlm.modeling import TrajVLMModel
from trajvlm.training.config import CONFIG_NAME, TrainConfig, deepspeed_zero_stage
from trajvlm.training.data import DataCollator, config_datasets, load_processor
from trajvlm.training.export import export, record_encoder_training

logger = logging.getLogger(__name__)

# modules never quantised (paths in TrajVLMForConditionalGeneration): the vision side and the output head
SKIP_QUANTIZATION = ["model.vision_tower", "model.multi_modal_projector", "model.connector", "lm_head"]


# ---------------------------------------------------------------------------------------------------------------
# model


def quantization_config(cfg: TrainConfig):
    """The bitsandbytes ``BitsAndBytesConfig`` of ``cfg.quantization`` (None for ``none``)."""
    if cfg.quantization == "none":
        return None

    # transformers matches these from the start of a module path (or as a suffix), so they are full paths
    skip = sorted(set(SKIP_QUANTIZATION) | {f"model.{name}" for name in cfg.trainable_modules})
    if cfg.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=DTYPES[cfg.precision],
        bnb_4bit_quant_storage=DTYPES[cfg.precision],
        llm_int8_skip_modules=skip,
    )


def build_model(cfg: TrainConfig, *, quantize: bool = True):
    """Load ``cfg.base_model`` as a ``TrajVLMForConditionalGeneration`` (quantised when ``quantize`` and configured).

    A llava-hf LLaVA-OneVision directory gets the configured connector (``from_llava``); a saved TrajVLM model
    (``model_type: trajvlm`` in its config.json) loads as it is and keeps its own connector. Loading a checkpoint
    for inference rebuilds its base through the same :func:`~trajvlm.inference.loading.build_base`.
    """
    return build_base(
        **{name: getattr(cfg, name) for name in RECIPE_FIELDS},
        quantization_config=quantization_config(cfg) if quantize else None,
    )


def _has_component(name: str, components: list[str] | tuple[str, ...]) -> bool:
    parts = name.split(".")
    return any(c in parts for c in components)


def lora_target_regex(cfg: TrainConfig) -> str:
    """peft ``target_modules`` regex: the configured linear layers inside ``language_model`` only.

    A plain list of names would also put adapters on the SigLIP tower (it has ``q_proj``/``k_proj``/``v_proj``)
    and on the connector's attention layers.
    """
    names = "|".join(re.escape(n) for n in cfg.lora_target_modules)
    return rf"^(?:.*\.)?language_model\.(?:.*\.)?(?:{names})$"


def present_trainable_modules(model: nn.Module, cfg: TrainConfig) -> list[str]:
    """The names of ``cfg.trainable_modules`` that exist in ``model`` (e.g. the pool connector has no weights)."""
    found = []
    for target in cfg.trainable_modules:
        if any(n.split(".")[-1] == target and any(True for _ in m.parameters()) for n, m in model.named_modules()):
            found.append(target)
    if not found:
        raise ValueError(
            f"none of trainable_modules {cfg.trainable_modules} is a module with weights in the model; "
            "expected e.g. multi_modal_projector and connector"
        )
    return found


def setup_trainable(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """Freeze / unfreeze / wrap with LoRA for ``cfg.stage``; returns the model to train (a PeftModel for LoRA)."""
    modules = present_trainable_modules(model, cfg)
    if cfg.quantization != "none":
        from peft import prepare_model_for_kbit_training  # optional (`train` extra), loaded only when used

        # casts the unquantised weights to fp32 and freezes everything (LoRA / modules below re-enable training)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if cfg.uses_lora:
        from peft import LoraConfig, get_peft_model  # optional (`train` extra), loaded only when used

        model.requires_grad_(False)
        save = list(modules) + ([] if cfg.freeze_vision_tower else ["vision_tower"])
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=lora_target_regex(cfg),
            modules_to_save=save,
            bias="none",
        )
        model = get_peft_model(model, lora)
    else:
        model.requires_grad_(cfg.stage == "finetune")  # full fine-tune: everything; align: nothing yet
        for name, param in model.named_parameters():
            if _has_component(name, modules):
                param.requires_grad_(True)
            elif cfg.freeze_vision_tower and _has_component(name, ("vision_tower",)):
                param.requires_grad_(False)
    frozen = [p for n, p in model.named_parameters() if p.requires_grad and _has_component(n, cfg.frozen_modules)]
    if cfg.frozen_modules and not frozen:  # e.g. [segmenter] with the pool connector: one recipe for every connector
        logger.warning("frozen_modules %s matched no trainable parameter of this model", cfg.frozen_modules)
    for param in frozen:
        param.requires_grad_(False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"stage {cfg.stage!r} left no trainable parameter; check trainable_modules")
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    logger.info(
        "stage %s: training %d tensors, %.2fM of %.2fM parameters",
        cfg.stage,
        len(trainable),
        n_train / 1e6,
        n_all / 1e6,
    )
    return model


def gather_connector_parameters_under_zero3(model: nn.Module) -> int:
    """Registers the parameters a connector's own modules hold (not those of plain torch layers) as external
    parameters of the TrajVLM model around it, so DeepSpeed ZeRO-3 gathers them for the backward pass; returns the
    count.

    ZeRO-3 gathers a module's own parameters for its backward through hooks on the tensors its forward returns. A
    connector returns a ``ConnectorOutput`` (TrajTok a dataclass too), which DeepSpeed does not look into, so a tensor
    such as the resampler's queries or vtok's query was still released (0 elements) when autograd needed it: ``The
    size of tensor a (0) must match ...``. The TrajVLM model returns plain tensors; connectors are small next to the
    LLM, so keeping these gathered through the model's forward and backward costs little memory.
    """
    import deepspeed  # optional (`train` extra): only ZeRO-3 runs get here

    count = 0
    for owner in model.modules():
        if not isinstance(owner, TrajVLMModel):
            continue
        for module in owner.connector.modules():  # with LoRA: the trained copy inside peft's wrapper too
            if type(module).__module__.startswith("torch."):
                continue
            for param in module.parameters(recurse=False):
                deepspeed.zero.register_external_parameter(owner, param)
                count += 1
    return count


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that require grad (what the optimizer updates)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


# ---------------------------------------------------------------------------------------------------------------
# trainer


class TrajVLMTrainer(Trainer):
    """HF ``Trainer`` whose optimizer gives the connector + projector their own learning rate."""

    def __init__(self, *args: Any, connector_modules: list[str], connector_lr: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connector_modules = list(connector_modules)
        self.connector_lr = connector_lr

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.connector_lr is None or self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        assert opt_model is not None  # the Trainer was built with its model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, param in opt_model.named_parameters():
            if param.requires_grad:
                key = (_has_component(name, self.connector_modules), name in decay)
                groups.setdefault(key, []).append(param)
        # typed PreTrainedModel upstream, which passes any nn.Module here too (a PEFT wrapper, for one)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)  # type: ignore[arg-type]
        param_groups = [
            {
                "params": params,
                "weight_decay": self.args.weight_decay if is_decay else 0.0,
                "lr": self.connector_lr if is_connector else self.args.learning_rate,
            }
            for (is_connector, is_decay), params in sorted(groups.items())
        ]
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer


class JsonlLogger(TrainerCallback):
    """Appends every log record (loss, learning rate, grad norm, step, epoch, time) to ``output_dir/metrics.jsonl``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.start = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record = {"step": state.global_step, "epoch": state.epoch, "time_s": round(time.time() - self.start, 2)}
            record.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str))})
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


class SaveConfigCallback(TrainerCallback):
    """Writes the resolved :class:`TrainConfig` into every ``checkpoint-N`` directory (rank 0)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.cfg.save(Path(args.output_dir) / f"checkpoint-{state.global_step}")


class SnapshotCallback(TrainerCallback):
    """Saves the model once, at the optimizer step that ends nearest to ``seconds`` of training (wall clock from
    ``on_train_begin``), to ``save(step, elapsed)``: the equal-time point of a slower model without a second run."""

    def __init__(self, seconds: float, save: Callable[[int, float], None]) -> None:
        self.seconds = float(seconds)
        self.save = save
        self.start = self.last = 0.0
        self.done = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        step_s, self.last = now - self.last, now
        # nearest: stop here unless the next step (as long as this one) would end closer to the target
        if not self.done and now - self.start + step_s / 2 >= self.seconds:
            self.done = True
            self.save(state.global_step, now - self.start)
            self.last = time.perf_counter()  # the save's time is not the next step's


def _has_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or (xpu is not None and xpu.is_available()) or torch.backends.mps.is_available()


def training_arguments(cfg: TrainConfig) -> TrainingArguments:
    """The HF ``TrainingArguments`` of a config.

    On a machine without a GPU, ``precision=bf16`` trains on the CPU (the Trainer refuses bf16 there unless told
    ``use_cpu``), and ``precision=fp16`` is refused with a clear message (the Trainer has no fp16 on CPU).
    """
    hf_report = [r for r in cfg.report_to if r in ("wandb", "tensorboard")] or "none"
    has_eval = cfg.eval_json is not None
    cpu_only = cfg.use_cpu or not _has_accelerator()
    if cpu_only and cfg.precision == "fp16":
        raise ValueError("precision fp16 needs a GPU; on the CPU use fp32, or bf16 where the CPU supports it")
    return TrainingArguments(
        output_dir=cfg.output_dir,
        per_device_train_batch_size=cfg.per_device_batch_size,
        per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        deepspeed=cfg.deepspeed,
        use_cpu=cfg.use_cpu or (cpu_only and cfg.precision == "bf16"),
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps if has_eval else None,
        logging_steps=cfg.logging_steps,
        report_to=hf_report,
        remove_unused_columns=False,  # the collator's keys are the model's inputs
        label_names=["labels"],
        prediction_loss_only=True,  # evaluation reports the loss; never gathers (B, L, vocab) logits
        dataloader_num_workers=cfg.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available() and not cfg.use_cpu,
        ddp_find_unused_parameters=False,
    )


def checkpoint_is_complete(path: Path) -> bool:
    """A ``checkpoint-N`` the Trainer finished: its state (written after the weights and the optimizer) and the
    resolved config (written after the state) are there. A save cut short (a full disk, a kill) lacks them."""
    return (path / TRAINER_STATE_NAME).is_file() and (path / CONFIG_NAME).is_file()


def resume_checkpoint(out: Path) -> str | None:
    """The newest complete ``checkpoint-N`` of ``out`` for ``--resume``; None (start again, with a warning) when
    every checkpoint there is incomplete; FileNotFoundError when there is none at all."""
    found = sorted(
        (p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    if not found:
        raise FileNotFoundError(f"--resume: no checkpoint-N directory in {out}; train without --resume first")
    complete = [p for p in found if checkpoint_is_complete(p)]
    for p in found:
        if p not in complete:
            logger.warning("--resume: skipping %s: incomplete (its save was cut short), nothing read from it", p)
    if not complete:
        logger.warning("--resume: no complete checkpoint in %s; training from the start", out)
        return None
    return str(complete[-1])


def train(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Run the recipe; returns the output directory (holding ``final/`` when ``export_final``)."""
    cfg.check_files()
    cfg.check_data()  # malformed JSON, empty lists, broken rows, missing videos: before the model is built
    out = Path(cfg.output_dir)
    checkpoint = None
    if resume:
        checkpoint = resume_checkpoint(out)
        if checkpoint is not None:
            _warn_config_changes(cfg, TrainConfig.from_json(checkpoint))
            logger.info("resuming from %s", checkpoint)
    args = training_arguments(cfg)  # first: it sets up the distributed state DeepSpeed ZeRO-3 loading needs
    if cfg.deepspeed is not None:
        import deepspeed  # optional (`train` extra): only DeepSpeed runs get here

        # attaches DeepSpeed's comm layer to the process group (on CPU runs the Trainer does not), so ZeRO-3
        # partitions the weights across ranks while they load (zero.Init sees the real world size)
        deepspeed.init_distributed()
    with reading_weights(cfg.base_model, "base_model", also=(cfg.trajtok,)):
        model = build_model(cfg)
    processor = load_processor(cfg, model.config)
    model = setup_trainable(model, cfg)
    if cfg.deepspeed is not None and deepspeed_zero_stage(cfg.deepspeed) == 3:
        gather_connector_parameters_under_zero3(model)
    datasets = config_datasets(cfg, processor)
    callbacks: list[TrainerCallback] = [SaveConfigCallback(cfg)]
    if "jsonl" in cfg.report_to:
        callbacks.append(JsonlLogger(out / "metrics.jsonl"))
    trainer = TrajVLMTrainer(
        model=model,
        args=args,
        data_collator=DataCollator(processor.tokenizer),
        train_dataset=datasets["train"],
        eval_dataset=datasets.get("eval"),
        processing_class=processor,
        callbacks=callbacks,
        connector_modules=present_trainable_modules(model, cfg),
        connector_lr=cfg.connector_learning_rate,
    )
    snapshot = out / "snapshot"
    if cfg.snapshot_at_seconds is not None:

        def save_snapshot(step: int, elapsed: float) -> None:
            save_outputs(trainer, model, processor, cfg, snapshot / ("adapter" if cfg.uses_lora else "final"))
            if trainer.is_world_process_zero():
                record = {"step": step, "train_s": round(elapsed, 2), "target_s": cfg.snapshot_at_seconds}
                (snapshot / "snapshot.json").write_text(json.dumps(record, indent=1) + "\n")
                logger.info("snapshot at step %d after %.1f s of training: %s", step, elapsed, snapshot)

        trainer.add_callback(SnapshotCallback(cfg.snapshot_at_seconds, save_snapshot))
    result = trainer.train(resume_from_checkpoint=checkpoint)
    logger.info("training done: %s", {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))})
    skipped = datasets["train"].num_skipped
    if skipped:
        logger.warning(
            "%d of %d training samples were skipped (see the warnings above)", skipped, len(datasets["train"])
        )
    save_dir = out / ("adapter" if cfg.uses_lora else "final")
    save_outputs(trainer, model, processor, cfg, save_dir)
    if cfg.uses_lora and cfg.export_final and trainer.is_world_process_zero():
        unset_hf_deepspeed_config()  # rank 0 alone rebuilds the model: no ZeRO-3 partitioning while it loads
        kept = f"{out / 'final'} was left as it was; {save_dir} holds the trained adapter"
        with atomic_directory(out / "final", kept=kept) as tmp:  # renamed once complete: never final/ without weights
            export(save_dir, tmp)
        if (snapshot / "adapter").is_dir():
            with atomic_directory(snapshot / "final") as tmp:
                export(snapshot / "adapter", tmp)
    trainer.accelerator.wait_for_everyone()
    return out


def save_outputs(trainer: Trainer, model, processor, cfg: TrainConfig, save_dir: Path) -> None:
    """The trained weights (the adapter for LoRA runs), the processor and the config, into ``save_dir``.

    Written to ``.tmp_<name>`` beside it and renamed once complete, so ``save_dir`` is never left half-written (a
    full disk used to leave ``final/`` without weights and no message): an earlier ``save_dir`` stays as it was and
    a disk error says so (:class:`~trajtok.checks.DiskWriteError`)."""
    unwrapped = model.get_base_model() if hasattr(model, "get_base_model") else model
    record_encoder_training(unwrapped.config, cfg)
    main = trainer.is_world_process_zero()
    tmp = save_dir.parent / f".tmp_{save_dir.name}"
    try:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        trainer.accelerator.wait_for_everyone()
        trainer.save_model(str(tmp))  # every rank: ZeRO-3 gathers the weights for rank 0
        if main:
            cfg.save(tmp)
            processor.save_pretrained(tmp)
    except OSError as e:
        if not is_disk_error(e):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise DiskWriteError(e.errno, f"{disk_error_message(e)} while saving {save_dir}; it was left as it was") from e
    trainer.accelerator.wait_for_everyone()
    if main:
        replace_directory(tmp, save_dir)
    trainer.accelerator.wait_for_everyone()


def _warn_config_changes(cfg: TrainConfig, saved: TrainConfig) -> None:
    now = cfg.to_dict()
    for key, old in saved.to_dict().items():
        if now[key] != old:
            logger.warning("resume: %s was %r in the checkpoint, now %r", key, old, now[key])
