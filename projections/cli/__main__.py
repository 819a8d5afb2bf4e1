"""``python -m ecomcore_projections.cli``: the ``ecomcore`` command."""

import sys

from ecomcore_projections.cli import main

sys.exit(main())
