"""``python -m restore ...`` is ``restore ...`` (also what ``torchrun -m restore train ...`` starts)."""

import sys

from restore.cli import main

sys.exit(main())
