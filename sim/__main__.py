"""``python -m trio_tarantool.sim``: the pool under an hour of chaos (:func:`.demo.chaos_main`)."""

import sys

from .demo import chaos_main

sys.exit(chaos_main())
