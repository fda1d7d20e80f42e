"""The fill window, pure: is filling allowed at this local time, and when does it open?

Open Connect appliances fill off-peak, inside a window the ISP chooses in local time
(e.g. ``02:00-14:00``). A window may wrap midnight (``22:00-06:00``); ``00:00-00:00``
or ``always`` means all day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from vcdn.errors import ConfigError

_WINDOW_RE: Final = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DAY: Final = 24 * 60


@dataclass(frozen=True, slots=True)
class FillWindow:
    """Minutes after local midnight; `start == end` means always open."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> FillWindow:
        if text.strip().lower() in ("always", "any", "*"):
            return cls(0, 0)
        m = _WINDOW_RE.match(text)
        if not m:
            raise ConfigError(
                f"Fill window {text!r} is not of the form HH:MM-HH:MM (local time), "
                "e.g. 02:00-14:00."
            )
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1 == 24 and m1) or (h2 == 24 and m2):
            raise ConfigError(f"Fill window {text!r} has an hour or minute out of range.")
        return cls((h1 * 60 + m1) % _DAY, (h2 * 60 + m2) % _DAY)

    @property
    def always(self) -> bool:
        return self.start == self.end

    def is_open(self, when: datetime) -> bool:
        if self.always:
            return True
        minute = when.hour * 60 + when.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # wraps midnight

    def seconds_until_open(self, when: datetime) -> float:
        """0 when open; else seconds to the next opening (for the fill loop's sleep)."""
        if self.is_open(when):
            return 0.0
        midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
        opening = midnight + timedelta(minutes=self.start)
        if opening <= when:
            opening += timedelta(days=1)
        return (opening - when).total_seconds()

    def __str__(self) -> str:
        if self.always:
            return "always"
        (h1, m1), (h2, m2) = divmod(self.start, 60), divmod(self.end, 60)
        return f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"
