"""What counts as a whole number or a number in a config value.

Python's bool is an int, so `every_n_steps=true` would pass an `isinstance(..., int)` check as 1;
and a string from the command line (`every_minutes=ten`) compared with a number raises a
TypeError deep in a constructor instead of the one-line refusal. Checks use these first.
"""

from __future__ import annotations

from typing import Any


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
