"""``python -m recorder ARGS``: mitmdump with the recorder addon loaded (what ``replay record`` runs)."""

from __future__ import annotations

import sys
from pathlib import Path

from mitmproxy.tools.main import mitmdump


def main() -> None:
    addon = Path(__file__).with_name("addon.py")
    mitmdump(["-s", str(addon), *sys.argv[1:]])


if __name__ == "__main__":
    main()
