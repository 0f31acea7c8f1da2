"""``python -m sim``: run the pool-under-chaos demo (see :mod:`sim._demo`)."""

import sys

from ._demo import main

sys.exit(main())
