"""The product apart from the lab: a plain install (no ``lab`` extra) imports
no scapy, no matplotlib and no lab module, and its command runs."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import contextlib, importlib, io, json, pkgutil, sys
import xdpshield
def walk(path, prefix):
    # not pkgutil.walk_packages: it imports every package it walks into
    for m in pkgutil.iter_modules(path, prefix):
        if m.name == "xdpshield.lab":
            continue
        yield m.name
        if m.ispkg:
            yield from walk(importlib.import_module(m.name).__path__, m.name + ".")
product = list(walk(xdpshield.__path__, "xdpshield."))
for name in product:
    importlib.import_module(name)
from xdpshield.cli import main
with contextlib.redirect_stdout(io.StringIO()) as help_text:
    try:
        main(["--help"])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({
    "product": product,
    "help_rc": code,
    "help": help_text.getvalue(),
    "loaded": sorted(m for m in sys.modules
                     if m.split(".")[0] in ("scapy", "matplotlib")
                     or (m.startswith("xdpshield.lab.") )),
}))
"""


def test_product_imports_nothing_of_the_lab() -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    # Every product layer was imported, the command printed its help ...
    for layer in ("xdpshield.ebpf", "xdpshield.shield", "xdpshield.policy", "xdpshield.ops"):
        assert any(m.startswith(layer) for m in got["product"]), layer
    assert got["help_rc"] == 0
    assert "load" in got["help"] and "bench" in got["help"]
    # ... and neither the lab nor its extra was loaded.
    assert got["loaded"] == []


def test_lab_command_without_the_extra_says_how_to_get_it() -> None:
    """With scapy unimportable, a lab command names the extra (a blocked
    import stands in for an install without it)."""
    code = (
        "import sys; sys.modules['scapy'] = None\n"
        "from xdpshield.cli import main\n"
        "sys.exit(main(['flood', 'syn', '--count', '1', '--duration', '0.1']))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 1, r.stderr
    assert "pip install 'xdpshield[lab]'" in r.stderr
    assert "Traceback" not in r.stderr
