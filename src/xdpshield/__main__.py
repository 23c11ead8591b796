"""python -m xdpshield"""

import sys

from xdpshield.cli import main

if __name__ == "__main__":
    sys.exit(main())
