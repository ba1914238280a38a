#!/usr/bin/env bash
# Installs flash-attn (the `gpu` extra) into the project's environment, the only way it installs: built from source
# against the torch already there, so after torch and without build isolation, under the lock:
#   bash scripts/install_flash_attn.sh                 # what `make install-gpu` runs (after `make install`)
#   PYTHON=/opt/venv/bin/python MAX_JOBS=8 bash scripts/install_flash_attn.sh
# flash-attn has no wheel for every torch/CUDA pair and builds only with a CUDA build of torch and the CUDA
# compiler (nvcc) of a matching major version; on a machine without them this script refuses with one
# `error: ...` line and exit status 2, before anything is downloaded. Models then use attn_implementation="sdpa".
# The build compiles CUDA kernels for a long time (tens of minutes); MAX_JOBS bounds its parallel jobs (memory).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$root/.venv/bin/python}"
CONSTRAINTS="$(realpath "${CONSTRAINTS:-$root/constraints.txt}")"
SPEC="${FLASH_ATTN_SPEC:-flash-attn>=2.6}"

fail() {
    echo "error: $*" >&2
    exit 2
}

[ -x "$PYTHON" ] || fail "no python at $PYTHON; run \`make install\` first or set PYTHON=/path/to/venv/bin/python"
torch_info="$("$PYTHON" -c 'import torch; print(torch.__version__, torch.version.cuda or "none")' 2>/dev/null)" \
    || fail "torch is not importable with $PYTHON; install torch first (flash-attn builds against it)"
read -r torch_version torch_cuda <<<"$torch_info"
if [ "$torch_cuda" = "none" ]; then
    fail "torch $torch_version is a CPU build (torch.version.cuda is None): flash-attn needs a CUDA build of torch" \
        "and a CUDA GPU; on this machine use attn_implementation=\"sdpa\" (the default) and skip the gpu extra"
fi
nvcc="$(command -v nvcc || true)"
if [ -z "$nvcc" ] && [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then
    nvcc="$CUDA_HOME/bin/nvcc"
fi
[ -n "$nvcc" ] || fail "no CUDA compiler: nvcc is not on PATH and CUDA_HOME/bin/nvcc does not exist; install the" \
    "CUDA toolkit $torch_cuda (torch $torch_version's CUDA) and set CUDA_HOME"
nvcc_cuda="$("$nvcc" --version | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p' | head -1)"
if [ "${nvcc_cuda%%.*}" != "${torch_cuda%%.*}" ]; then
    fail "nvcc $nvcc is CUDA ${nvcc_cuda:-unknown} but torch $torch_version was built with CUDA $torch_cuda; put a" \
        "CUDA $torch_cuda toolkit first on PATH (or CUDA_HOME)"
fi

echo "[install-gpu] torch $torch_version (CUDA $torch_cuda), nvcc $nvcc (CUDA $nvcc_cuda)"
export PIP_CONSTRAINT="$CONSTRAINTS"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export MAX_JOBS="${MAX_JOBS:-4}"
# without build isolation the build requirements must already be in the environment
"$PYTHON" -m pip install -q packaging ninja wheel psutil
"$PYTHON" -m pip install --no-build-isolation "$SPEC"
"$PYTHON" -c 'import flash_attn; print("[install-gpu] flash-attn", flash_attn.__version__)'
