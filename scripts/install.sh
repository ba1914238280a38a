#!/usr/bin/env bash
# Creates (or reuses) the virtual environment at .venv and installs trajtok + trajvlm with the CPU stack.
#   bash scripts/install.sh            # what `make demo` / `make test` call
# Order matters: torch==2.13.0 first (local CPU build), then everything else under constraints.txt, or pip
# resolves the newest torch with several GB of CUDA wheels. torchvision, timm and open_clip are never installed
# here (they break imports on this CPU build). lmms-eval goes in with --no-deps: its own pins pull torchvision
# and av<16; the runtime dependencies it needs for local tasks are listed below instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
export PIP_CONSTRAINT="$root/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv/bin/python ]; then
    echo "[install] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
# pip install, quiet; drops the "Location ... is ignored" lines some pip configurations print per package
pipi() {
    .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v "is ignored" || true; }
    return "${PIPESTATUS[0]}"
}

# Re-install only when the dependency declarations change.
stamp=.venv/.trajvlm-install-stamp
want="$(cat constraints.txt pyproject.toml tokenizer/pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

echo "[install] torch (CPU build) ..."
pipi "torch==2.13.0"
echo "[install] trajtok + trajvlm [train,dev] ..."
pipi -e "./tokenizer[pseudolabel,plot]" -e ".[train,dev]"
# PySceneDetect (key-frame detection) depends on the GUI OpenCV; install it without deps beside the headless one
pipi --no-deps "scenedetect>=0.6" platformdirs click
echo "[install] lmms-eval (no deps) + its runtime dependencies ..."
pipi --no-deps "lmms-eval==0.7.3"
pipi matplotlib datasets evaluate loguru jsonlines pytablewriter sacrebleu tenacity httpx aiohttp numexpr \
    pybind11 scikit-learn ftfy sentencepiece zstandard sympy jinja2 openpyxl pydantic packaging protobuf \
    python-dotenv tqdm-multiprocess openai tiktoken
for bad in torchvision timm open_clip_torch; do
    if .venv/bin/python -m pip show "$bad" >/dev/null 2>&1; then
        echo "[install] removing $bad (breaks imports on the CPU torch build)"
        .venv/bin/python -m pip uninstall -q -y "$bad"
    fi
done
.venv/bin/python -c "import torch, transformers, trajtok, trajvlm; print(f'[install] ok: torch {torch.__version__}, transformers {transformers.__version__}')"
echo "$want" > "$stamp"
