"""`python -m mwm.bench ...` is `mwm-bench ...`."""

import sys

from .cli import main

sys.exit(main())
