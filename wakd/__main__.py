"""``python -m wakd`` and the ``wakd`` console script (also what ``torchrun -m wakd`` runs on every rank)."""

import logging
import os
import sys

from wakd.cli import main
from wakd.utils import UNCLOSABLE_HDF5


def entry() -> None:
    """:func:`wakd.cli.main`, then exit with its status. After a full disk left an HDF5 file that cannot be closed
    (HDF5 crashes closing it: exit 139 at interpreter exit), the process ends at once with the status already
    reported, its streams flushed (the temporary is already removed)."""
    rc = main()
    if UNCLOSABLE_HDF5:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    entry()
