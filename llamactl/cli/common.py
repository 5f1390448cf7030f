"""Small rendering helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

JSON_OPTION_HELP = "Print machine-readable JSON instead of a table."


def print_json(data: Any) -> None:
    """Write JSON to stdout verbatim (no rich markup, no wrapping), for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()
