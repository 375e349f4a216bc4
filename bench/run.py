"""``make bench``: every figure of issue 10 with its target, then one summary.

    python bench/run.py [--quick]

``--quick`` uses 20,000 people instead of 1,000,000 and fewer rounds (a smoke run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import compare  # noqa: E402
import http_verifies  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    began = time.monotonic()
    quick = ["--rounds", "3", "--batch", "60", "--million", "20000"] if args.quick else []
    figures = compare.main(quick)
    print()
    figures += http_verifies.main(["--seconds", "3"] if args.quick else [])
    print()
    print(f"summary ({time.monotonic() - began:.0f} s):")
    for what, value, met in figures:
        print(f"  {'met    ' if met else 'NOT met'}  {what}: {value}")
    missed = sum(not met for *_, met in figures)
    print(f"{len(figures) - missed} of {len(figures)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
