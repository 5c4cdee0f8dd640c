"""`python -m apps`: the command line over the task apps."""

import sys

from apps.cli import defer_imports, main

if __name__ == "__main__":
    defer_imports()  # before the apps' modules are imported
    from apps import APP_NAMES, get_app

    sys.exit(main(APP_NAMES, get_app))
