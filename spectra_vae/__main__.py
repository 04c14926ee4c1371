"""`python -m spectra_vae`: the command line (`spectra_vae.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
