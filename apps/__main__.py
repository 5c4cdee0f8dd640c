"""`python -m apps`: the command line over the task apps."""

import sys

from apps import APP_NAMES, get_app
from apps.cli import main

if __name__ == "__main__":
    sys.exit(main(APP_NAMES, get_app))
