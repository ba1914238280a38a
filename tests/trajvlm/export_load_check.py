"""Load an exported model with transformers alone and save what it computes (run in a subprocess by the tests).

    python tests/trajvlm/export_load_check.py --block-project MODEL_DIR INPUTS.pt OUT.pt [MODEL_DIR INPUTS.pt OUT.pt ...]

Each INPUTS.pt holds ``text`` (a rendered prompt with one ``<video>``), ``video`` (uint8 (T, C, H, W)) and
``model_inputs`` (what the project's processor made of them). OUT.pt receives the classes that loaded, the logits,
4 greedy tokens, the processor's ``input_ids`` and the names of any ``trajvlm`` / ``trajtok`` modules imported.
The script imports only torch and transformers; ``--block-project`` also makes ``trajvlm`` and ``trajtok``
unimportable, so it runs as it would where they are not installed. docs/export.md runs it in a real scratch venv.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import sys

PROJECT = ("trajvlm", "trajtok")


class BlockProject(importlib.abc.MetaPathFinder):
    """Makes ``trajvlm`` / ``trajtok`` unimportable, as in an environment without them."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PROJECT:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: simulated scratch environment)", name=name)
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-project", action="store_true")
    parser.add_argument("runs", nargs="+", metavar="MODEL_DIR INPUTS.pt OUT.pt")
    args = parser.parse_args()
    if len(args.runs) % 3:
        parser.error(f"expected MODEL_DIR INPUTS.pt OUT.pt triples, got {len(args.runs)} arguments")
    if args.block_project:
        sys.meta_path.insert(0, BlockProject())
    for i in range(0, len(args.runs), 3):
        check(*args.runs[i : i + 3])
    return 0


def check(model_dir: str, inputs_file: str, out_file: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    data = torch.load(inputs_file)
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, trust_remote_code=True).eval()
    result = {"config_class": type(config).__module__ + "." + type(config).__name__}
    result["model_class"] = type(model).__module__ + "." + type(model).__name__
    if config.model_type != "llava_onevision" or importlib.util.find_spec("torchvision") is not None:
        # upstream's LlavaOnevisionVideoProcessor needs torchvision (no CPU wheel works on the project's machines)
        processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
        result["processor_class"] = type(processor).__module__ + "." + type(processor).__name__
        result["input_ids"] = processor(text=[data["text"]], videos=[data["video"]], return_tensors="pt")["input_ids"]
    result["text_ids"] = AutoTokenizer.from_pretrained(model_dir)(data["text"], return_tensors="pt")["input_ids"]
    inputs = data["model_inputs"]
    with torch.no_grad():
        result["logits"] = model(**inputs).logits
        result["generated"] = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    result["project_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in PROJECT)
    torch.save(result, out_file)


if __name__ == "__main__":
    sys.exit(main())
