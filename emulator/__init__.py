"""An emulator of Adobe Target's profile APIs (bulk, single update, batch status, fetch).

Stands in for Target in tests and in the local demo; see docs/emulator.md. ``EmulatorApp``
is the WSGI application, ``emulator.server`` serves it, ``emulator.client.EmulatorControl``
drives its ``/_emulator/`` test controls.
"""

from emulator.app import DropConnection, EmulatorApp
from emulator.config import EmulatorConfig

__all__ = ["DropConnection", "EmulatorApp", "EmulatorConfig"]
