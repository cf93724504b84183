"""``python -m layerfs``: the ``layerfs`` command."""

import sys

from .cli import main

sys.exit(main())
