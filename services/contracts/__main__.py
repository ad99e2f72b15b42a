"""`python -m services.contracts [--check]`: write the contracts and the clients' constants, or
check them."""

from __future__ import annotations

import argparse
import sys

from services.contracts import stale, write


def main(argv: list[str] | None = None) -> int:
    """Write (or with `--check`, compare) the rendered files; 1 if `--check` finds a difference."""
    parser = argparse.ArgumentParser(prog="python -m services.contracts", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale()
        for path in outdated:
            print(f"{path} is out of date: run `make contracts`", file=sys.stderr)
        return 1 if outdated else 0
    for path in write():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
