"""``python -m mixtailor_game.verify theorem1 | theorem2 | proposition1``."""

import sys

from .cli import main

sys.exit(main())
