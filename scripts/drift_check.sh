#!/usr/bin/env bash
# Drift check (not part of CI): what would a fresh, unlocked install get today, and does it still pass?
#   make drift                       # = bash scripts/drift_check.sh
#   make drift ARGS="tests/trajvlm"  # pytest arguments (default: the whole suite)
# Resolves the newest versions the declared ranges allow (uv, --upgrade), prints every package that moved against
# constraints.txt, installs them into a scratch environment (DRIFT_DIR, default /tmp/trajvlm-drift) exactly as
# scripts/install.sh installs the lock, runs the tests there and prints what broke. Move the lock forward on purpose:
# fix what broke (or narrow a range in a pyproject.toml), then `make lock`.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
dir="${DRIFT_DIR:-/tmp/trajvlm-drift}"
mkdir -p "$dir"
newest="$dir/newest.txt"
LOCK_OUT="$newest" bash scripts/lock.sh --upgrade || exit 2

echo "== packages that moved (lock -> newest allowed) =="
python3 - constraints.txt "$newest" <<'PY'
import re, sys
def pins(path):
    out = {}
    for line in open(path):
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out
old, new = pins(sys.argv[1]), pins(sys.argv[2])
rows = [(n, old.get(n, "-"), new.get(n, "-")) for n in sorted(set(old) | set(new)) if old.get(n) != new.get(n)]
for name, a, b in rows:
    print(f"  {name:32s} {a:>14s} -> {b}")
print(f"  {len(rows)} of {len(set(old) | set(new))} packages moved")
PY

VENV="$dir/venv" CONSTRAINTS="$newest" bash scripts/install.sh || { echo "== the newest versions do not install =="; exit 1; }
echo "== tests on the newest versions =="
log="$dir/pytest.log"
"$dir/venv/bin/python" -m pytest -n 2 --dist loadfile -q -p no:cacheprovider "${@:-tests}" 2>&1 | tee "$log" | tail -n 3
status="${PIPESTATUS[0]}"
if [ "$status" -ne 0 ]; then
    echo "== what broke (full log: $log) =="
    grep -E "^(FAILED|ERROR) " "$log" | sed 's/^/  /' | head -50
fi
exit "$status"
