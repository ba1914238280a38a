#!/usr/bin/env bash
# Multi-GPU (or multi-process CPU) training with torchrun (DDP, or DeepSpeed when the preset names a ZeRO JSON).
#   bash scripts/train_torchrun.sh NUM_PROCS PRESET.yaml [key=value ...] [--resume]
#   bash scripts/train_torchrun.sh NUM_PROCS A.yaml --config B.yaml [key=value ...]   # A then B in one launch
#   bash scripts/train_torchrun.sh 8 trajvlm/presets/stage2_lora.yaml
#   bash scripts/train_torchrun.sh 2 trajvlm/presets/demo_pool.yaml use_cpu=true    # CPU, gloo
# Extra torchrun flags go in TORCHRUN_ARGS, e.g. TORCHRUN_ARGS="--master_port 29501" or multi-node settings.
set -euo pipefail
# shellcheck source=scripts/train_args.sh
source "$(dirname "$0")/train_args.sh"  # $nproc, $config, $root; the rest stays in "$@"
TORCHRUN="${TORCHRUN:-$(command -v torchrun || echo "$root/.venv/bin/torchrun")}"
# shellcheck disable=SC2086
exec "$TORCHRUN" ${TORCHRUN_ARGS:-} --nproc_per_node "$nproc" -m trajvlm.cli train --config "$config" "$@"
