"""`python -m refed_dspy.cli`: the `refed` command."""

import sys

from refed_dspy.cli import main

sys.exit(main())
