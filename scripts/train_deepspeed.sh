#!/usr/bin/env bash
# Multi-GPU (or multi-process CPU) training with the DeepSpeed launcher.
#   bash scripts/train_deepspeed.sh NUM_PROCS PRESET.yaml [key=value ...] [--resume]
#   bash scripts/train_deepspeed.sh NUM_PROCS A.yaml --config B.yaml [key=value ...]   # A then B in one launch
#   bash scripts/train_deepspeed.sh 8 trajvlm/presets/stage2_lora.yaml deepspeed=zero3
#   bash scripts/train_deepspeed.sh 2 trajvlm/presets/demo_pool.yaml deepspeed=zero2 use_cpu=true   # CPU, gloo
# The preset's `deepspeed:` field (or a deepspeed=... override) picks the ZeRO JSON (zero2, zero3, *_offload).
# Extra launcher flags go in DS_ARGS, e.g. DS_ARGS="--master_port 29501".
set -euo pipefail
# shellcheck source=scripts/train_args.sh
source "$(dirname "$0")/train_args.sh"  # $nproc, $config, $root; the rest stays in "$@"
DEEPSPEED="${DEEPSPEED:-$(command -v deepspeed || echo "$root/.venv/bin/deepspeed")}"
# --no_local_rank: the LOCAL_RANK environment variable is what the training reads
# shellcheck disable=SC2086
exec "$DEEPSPEED" ${DS_ARGS:-} --no_local_rank --num_gpus "$nproc" --module trajvlm.cli train --config "$config" "$@"
