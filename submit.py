"""Train, cross-validate, blend and write a checked Kaggle submission: ``python submit.py SLUG [options]``."""
import sys

from kitbox.cli import main

if __name__ == "__main__":
    sys.exit(main())
