"""``python -m mixtailor_game``: the same as the ``mixtailor-game`` console script."""

import sys

from .cli import main

sys.exit(main())
