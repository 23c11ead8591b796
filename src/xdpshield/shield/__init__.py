"""The shield: load, configure, attach, pin, reopen and unload it; its maps
and codecs (datapath), the cookie reference."""

from xdpshield.shield.core import *  # noqa: F403 (the public API of the shield)
from xdpshield.shield.core import __all__ as __all__
