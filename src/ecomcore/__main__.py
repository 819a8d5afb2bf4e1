"""``python -m ecomcore``: the ``ecomcore`` command.

The command lives in the outer layer (``ecomcore_projections.cli``), which the core never
imports; it is found here as the package declares it, through its ``ecomcore`` entry point.
"""

import sys
from importlib.metadata import entry_points


def _command() -> int:
    for script in entry_points(group="console_scripts", name="ecomcore"):
        if script.dist is None or script.dist.name == "ecomcore":
            return int(script.load()())
    print("error [missing_command]: the ecomcore command is not installed (pip install ecomcore)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_command())
