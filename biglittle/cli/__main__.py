"""`python -m biglittle.cli`: the same as the `biglittle` command."""

import sys

from . import main

sys.exit(main())
