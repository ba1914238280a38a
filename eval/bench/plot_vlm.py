"""Plot one or more ``bench_vlm.py --json`` results together (e.g. a tiny and a mid sweep run separately).

    python eval/bench/plot_vlm.py runs/bench_vlm/tiny.json runs/bench_vlm/mid.json --out runs/bench_vlm/bench_vlm.png

Four log-log panels against frames: visual tokens, LLM prefill, time to first token, peak memory; one line per
base config and connector.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_vlm import plot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="JSON files written by bench_vlm.py --json")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    rows = []
    for path in args.results:  # bad input: one error line (parser.error), no traceback
        if not path.is_file():
            parser.error(f"benchmark result not found: {path} (write it with bench_vlm.py --json)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            parser.error(f"{path} is not JSON ({e}): expected the file written by bench_vlm.py --json")
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            parser.error(f"{path} has no list 'rows': expected the JSON written by bench_vlm.py --json")
        rows += data["rows"]
    plot(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
