"""``python -m wakd``: the ``wakd`` command (also what ``torchrun -m wakd`` runs on every rank)."""

import sys

from wakd.cli import main

sys.exit(main())
