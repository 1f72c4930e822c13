"""``python -m saew``: the same command line as the ``saew`` script."""
import sys

from saew.cli.main import main

sys.exit(main())
