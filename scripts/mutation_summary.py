"""Killed and survived mutants of the last `make mutate` run, per file, from mutmut's records in mutants/.

Usage: python scripts/mutation_summary.py [--survivors]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code


def main() -> int:
    records = sorted(Path("mutants").rglob("*.py.meta"))
    if not records:
        print("no mutation results: run `make mutate` first", file=sys.stderr)
        return 2
    totals: Counter = Counter()
    survivors = []
    for record in records:
        exit_codes = json.loads(record.read_text())["exit_code_by_key"]
        if not exit_codes:
            continue
        counts = Counter(status_by_exit_code[code] for code in exit_codes.values())
        totals += counts
        survivors += [name for name, code in exit_codes.items() if status_by_exit_code[code] == "survived"]
        source = record.relative_to("mutants").with_suffix("")
        print(f"{source}: {len(exit_codes)} mutants, " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print(f"total: {sum(totals.values())} mutants, " + ", ".join(f"{n} {s}" for s, n in sorted(totals.items())))
    if "--survivors" in sys.argv:
        print("\n".join(["survivors (`mutmut show NAME` prints the change):", *sorted(survivors)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
