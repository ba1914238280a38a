# Sourced by scripts/train_deepspeed.sh and scripts/train_torchrun.sh (not run on its own): reads the launchers'
# common arguments NUM_PROCS PRESET.yaml into $nproc and $config, leaves the rest in "$@", and sets $root (the
# repository). Too few arguments: the usage line and status 2.
# shellcheck shell=bash
if [ $# -lt 2 ]; then
    echo "usage: $0 NUM_PROCS PRESET.yaml [key=value ...] [--resume]" >&2
    exit 2
fi
# shellcheck disable=SC2034  # nproc, config and root are read by the launcher that sources this file
nproc="$1"; config="$2"; shift 2
# shellcheck disable=SC2034
root="$(cd "$(dirname "$0")/.." && pwd)"
