"""`pytest-chaos` / `python -m pytest_chaos`: the command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: pytest-chaos COMMAND [options]

commands:
  serve    run the engine, a drop-in for toxiproxy-server (pytest-chaos serve --help)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        from pytest_chaos.engine.cli import run

        return run(rest)
    print(f"pytest-chaos: unknown command {command!r}\n{USAGE}", file=sys.stderr, end="")
    return 2


if __name__ == "__main__":
    sys.exit(main())
