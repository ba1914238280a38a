"""The main job's presets: YAML files under ``scripts/presets/demo_<name>.yaml`` loaded into :class:`DemoPreset`.

    python scripts/demo.py --preset smoke          # a preset by name
    python scripts/demo.py --preset my_run.yaml    # or any YAML file with the same fields

A preset names the world (``trajtok synth`` options), the shared pretraining (tower, base, TrajTok) and the VLMs to
train: each entry of ``models`` is one connector trained AND evaluated at one frame count (and, for ``pool``, one
pooling stride), so every point of the accuracy-vs-tokens figure is a model trained at its own budget.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trajvlm.connectors.registry import get_connector_class

PRESET_DIR = Path(__file__).resolve().parent / "presets"
# what stage 1 may caption a training video with (``DemoPreset.stage1_captions``): the world's captions by their
# place in ``make_captions`` (cast, timeline, summary), then the view list the main job builds from the record
CAPTION_KINDS = ("cast", "timeline", "summary", "views")


def is_reference(connector: str) -> bool:
    """The connector with its defaults is upstream LLaVA-OneVision's own video path (pool): the reference models."""
    return get_connector_class(connector).upstream_problem({}) is None


def holds_trajtok(connector: str) -> bool:
    """The connector reads a pretrained TrajTok (trajtok): the trajectory-token models the job is about."""
    return get_connector_class(connector).holds_trajtok


@dataclass
class ModelSpec:
    """One VLM of the job: trained and evaluated at ``frames`` frames."""

    # a registered connector name (trajvlm.configuration.CONNECTOR_NAMES)
    connector: str
    # frames sampled per video in every stage (warm-up, stage 1, stage 2) and in evaluation
    frames: int
    # connectors that stride the patch grid (pool): the pooling stride over each frame's patch grid (2 = upstream
    # 2x2; 4 = 16x fewer tokens per frame)
    stride: int | None = None
    # connectors that hold a TrajTok (trajtok): the pretrained TrajTok to read (a key of DemoPreset.tokenizers)
    tokenizer: str | None = None
    # trajtok only: tokens per trajectory (null: the preset's tokens_per_trajectory)
    tokens_per_trajectory: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.connector, str) or not self.connector:
            raise ValueError(f"models: connector must be a connector name, got {self.connector!r}")
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 1:
            raise ValueError(f"models: frames must be an integer >= 1, got {self.frames!r}")
        cls = get_connector_class(self.connector)
        if self.stride is not None and (
            not cls.strides_patch_grid or not isinstance(self.stride, int) or self.stride < 1
        ):
            raise ValueError(
                f"models: stride is a pool option (integer >= 1), got {self.stride!r} for {self.connector}"
            )
        if self.tokenizer is not None and not cls.holds_trajtok:
            raise ValueError(f"models: tokenizer is a trajtok option, got {self.tokenizer!r} for {self.connector}")

    @property
    def holds_trajtok(self) -> bool:
        """The connector reads a pretrained TrajTok (``tokenizer``)."""
        return holds_trajtok(self.connector)

    @property
    def strides_patch_grid(self) -> bool:
        """The connector pools each frame's patch grid by ``stride`` (default 2)."""
        return get_connector_class(self.connector).strides_patch_grid

    @property
    def key(self) -> str:
        """A name for folders and rows: ``trajtok-restart-32f``, ``pool-s4-8f``."""
        parts = [self.connector]
        if self.stride is not None and self.stride != 2:
            parts.append(f"s{self.stride}")
        if self.tokenizer is not None:
            parts.append(self.tokenizer)
        if self.tokens_per_trajectory is not None:
            parts.append(f"t{self.tokens_per_trajectory}")
        return "-".join([*parts, f"{self.frames}f"])

    @property
    def label(self) -> str:
        """The row's label: ``trajtok 32f``, ``pool 8f (stride 4)``, ``trajtok 32f (gated)``."""
        notes = []
        if self.stride is not None and self.stride != 2:
            notes.append(f"stride {self.stride}")
        if self.tokenizer is not None:
            notes.append(self.tokenizer)
        if self.tokens_per_trajectory is not None:
            notes.append(f"{self.tokens_per_trajectory} tok/traj")
        return f"{self.connector} {self.frames}f" + (f" ({', '.join(notes)})" if notes else "")


@dataclass
class DemoPreset:
    """Everything one run of the main job reads besides --seed, --out and --connectors."""

    # one line: what the preset is for and how long it takes
    description: str
    # the world: "long" (hundreds of frames, whole-video questions) or "short" (the earlier short-clip job)
    world: str
    # videos per split; val is what every recipe choice reads, test is evaluated once per reported model
    splits: dict[str, int]
    # further `trajtok synth` options (frames, size, objects, ...)
    synth: list[str]
    # the LLM: "smollm2" (the packaged GGUF), a path, or null for the tiny random LLM of the tests (no tower then)
    llm: str | None
    # `trajvlm pretrain-tower` overrides; null: no tower pretraining (the tiny base's random tower)
    tower_overrides: list[str] | None
    # `trajtok train --config quickstart` overrides shared by every TrajTok
    tokenizer_overrides: list[str]
    # the TrajTok pretrainings: name -> extra overrides (e.g. restart: [model.carry=restart])
    tokenizers: dict[str, list[str]]
    # `trajvlm warmup` / stage 1 / stage 2 overrides, the same for every model
    warmup_overrides: list[str]
    stage1_overrides: list[str]
    stage2_overrides: list[str]
    # the VLMs: each trained at its own frames (and stride)
    models: list[ModelSpec]
    # training samples: stage 1's captions (at most stage1_samples, of the kinds stage1_captions names, see
    # CAPTION_KINDS); stage 2 = QA conversations (same for every model)
    stage1_samples: int = 2000
    stage1_captions: list[str] = dataclasses.field(default_factory=lambda: ["cast"])
    stage2_videos: int = 2000
    stage2_turns: int = 5
    stage2_caption_frac: float = 0.3
    stage2_open_frac: float = 0.15
    # share of stage-2 conversations with a turn asking what is in view at the start, half-way and at the end
    stage2_views_frac: float = 0.0
    # trajtok: tokens per trajectory (1, 2 or 4) unless a model says otherwise
    tokens_per_trajectory: int = 4
    # val videos TrajTok's segmentation is scored on (mIoU, association) after its pretraining
    tokenizer_eval_videos: int = 8
    # val videos whose visual tokens are counted per model (their mean is the x axis)
    token_videos: int = 16
    # "Describe the video." with the first model on this many videos of a fresh world (the run's settings, another
    # seed; 0: skipped)
    describe_videos: int = 0
    # bootstrap resamples of the clustered intervals
    bootstrap_samples: int = 2000
    # lmms-eval batch size
    eval_batch_size: int = 8
    # ask each connector's first model without the video as well (the text-only control)
    controls: bool = True

    def __post_init__(self) -> None:
        if self.world not in ("long", "short"):
            raise ValueError(f"world must be 'long' or 'short', got {self.world!r}")
        if not isinstance(self.splits, dict) or set(self.splits) != {"train", "val", "test"}:
            raise ValueError(f"splits must map train, val and test to video counts, got {self.splits!r}")
        for split, n in self.splits.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"splits.{split} must be an integer >= 1, got {n!r}")
        for name in ("synth", "tokenizer_overrides", "warmup_overrides", "stage1_overrides", "stage2_overrides"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of strings, got {value!r}")
        if self.tower_overrides is not None and not isinstance(self.tower_overrides, list):
            raise ValueError(f"tower_overrides must be a list of strings or null, got {self.tower_overrides!r}")
        if self.tower_overrides is not None and self.llm is None:
            raise ValueError("tower_overrides needs an llm: the tiny random LLM's base builds its own tower")
        if not isinstance(self.tokenizers, dict) or not self.tokenizers:
            raise ValueError(f"tokenizers must map names to override lists, got {self.tokenizers!r}")
        if not isinstance(self.models, list) or not self.models:
            raise ValueError("models must list at least one model (connector, frames)")
        self.models = [m if isinstance(m, ModelSpec) else _model(m) for m in self.models]
        for m in self.models:
            if m.holds_trajtok and m.tokenizer is None:
                m.tokenizer = next(iter(self.tokenizers))
            if m.tokenizer is not None and m.tokenizer not in self.tokenizers:
                raise ValueError(f"models: tokenizer {m.tokenizer!r} is not in tokenizers ({sorted(self.tokenizers)})")
        keys = [m.key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError(f"models: the same model twice ({sorted(k for k in keys if keys.count(k) > 1)[0]})")
        if self.tokens_per_trajectory not in (1, 2, 4):
            raise ValueError(f"tokens_per_trajectory must be 1, 2 or 4, got {self.tokens_per_trajectory!r}")
        kinds = self.stage1_captions
        if not isinstance(kinds, list) or not kinds or any(k not in CAPTION_KINDS for k in kinds):
            raise ValueError(f"stage1_captions must list some of {list(CAPTION_KINDS)}, got {kinds!r}")
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"stage1_captions: a kind twice in {kinds!r}")
        for name in ("stage2_caption_frac", "stage2_open_frac", "stage2_views_frac"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.tokenizer_eval_videos < 1:
            raise ValueError(f"tokenizer_eval_videos must be >= 1, got {self.tokenizer_eval_videos!r}")
        if self.token_videos < 1 or self.bootstrap_samples < 100:
            raise ValueError(
                f"token_videos must be >= 1 and bootstrap_samples >= 100, got {self.token_videos}, "
                f"{self.bootstrap_samples}"
            )

    def select(self, connectors: list[str] | None) -> DemoPreset:
        """The preset with only the models of ``connectors`` (in that order; a connector the preset has no model
        for gets one at the first model's frames)."""
        if not connectors:
            return self
        models = []
        for conn in connectors:
            own = [m for m in self.models if m.connector == conn]
            models += own or [ModelSpec(conn, self.models[0].frames)]
        return dataclasses.replace(self, models=models)

    @property
    def tokenizers_used(self) -> list[str]:
        return list(dict.fromkeys(m.tokenizer for m in self.models if m.tokenizer is not None))


def _model(entry: Any) -> ModelSpec:
    if not isinstance(entry, dict):
        raise ValueError(f"models: each entry must be a mapping (connector, frames, ...), got {entry!r}")
    names = {f.name for f in dataclasses.fields(ModelSpec)}
    unknown = sorted(set(entry) - names)
    if unknown:
        raise ValueError(f"models: unknown key {unknown[0]!r} in {entry!r}; expected {sorted(names)}")
    if "connector" not in entry or "frames" not in entry:
        raise ValueError(f"models: each entry needs connector and frames, got {entry!r}")
    return ModelSpec(**entry)


def preset_names() -> list[str]:
    return sorted(p.stem.removeprefix("demo_") for p in PRESET_DIR.glob("demo_*.yaml"))


def preset_path(name: str) -> Path:
    """A preset's file: a name of ``scripts/presets/demo_<name>.yaml`` or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"--preset {name}: no such file")
        return path
    path = PRESET_DIR / f"demo_{name}.yaml"
    if not path.is_file():
        raise ValueError(f"--preset {name!r}: not a preset name ({', '.join(preset_names())}) or a .yaml file")
    return path


def load_preset(name: str) -> DemoPreset:
    """Read and validate a preset; a wrong key, type or value is a ValueError naming the file and the field."""
    path = preset_path(name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of preset fields, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(DemoPreset)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{path}: unknown field {unknown[0]!r}; expected one of {sorted(names)}")
    required = [
        f.name
        for f in dataclasses.fields(DemoPreset)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in raw]
    if missing:
        raise ValueError(f"{path}: missing field {missing[0]!r}")
    try:
        return DemoPreset(**raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def as_dict(preset: DemoPreset) -> dict[str, Any]:
    """The resolved preset, saved next to the run's results."""
    return dataclasses.asdict(preset)


__all__ = ["DemoPreset", "ModelSpec", "as_dict", "load_preset", "preset_names", "preset_path"]
