"""``python -m regflow``: the ``regflow`` command."""

import sys

from .cli import main

sys.exit(main())
