"""``python -m gluon_ssd.cli`` runs the ``gluon-ssd`` command."""
import sys

from . import main

sys.exit(main())
