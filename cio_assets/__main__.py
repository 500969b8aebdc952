"""`python -m cio_assets <command>`: the project's commands.

doctor    what the pipeline will make of the shop, before the first sync (cio_assets/doctor.py)
"""

from __future__ import annotations

import sys

COMMANDS = ("doctor",)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    from cio_assets.doctor import main as doctor

    return doctor(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
