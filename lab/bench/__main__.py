"""`python -m lab.bench ...`: the same as `sanlab bench ...` (usable before the verb is wired into sanlab)."""

from __future__ import annotations

import argparse
import sys

from lab.bench.cli import add_arguments, cmd_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sanlab bench", description="sanlab target vs tgtd, alternating rounds"
    )
    add_arguments(parser)
    return cmd_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
