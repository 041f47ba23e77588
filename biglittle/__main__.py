"""`python -m biglittle`: the same as the `biglittle` command."""

import sys

from .cli import main

sys.exit(main())
