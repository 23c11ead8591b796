"""python -m xdpshield"""

import sys

from .cli import main

sys.exit(main())
