r"""ALeRCE's daily Kafka topics: ``lc_classifier_<classifier>_YYYYMMDD``, one per classifier per day.

ALeRCE's pipeline names them with ``DailyTopicStrategy(topic_format="..._%s", date_format="%Y%m%d")``
(alercebroker/pipeline ``libs/apf/apf/core/topic_management.py``); the DESC TOM found them by listing topics and
keeping those matching ``^lc_classifier_.*_(\d{8})$`` whose date lay in [today-36, today+2] days (tom_desc
``_brokerconsumer.py`` ``AlerceConsumer``, production offset -36).

librdkafka subscribes by regex when a subscription starts with ``^`` and re-reads metadata every few seconds, so a
pattern that accepts every date from the start of the window on picks up each new day's topic by itself, for as
long as the consumer runs: :func:`window_pattern` builds it, in the POSIX-extended syntax librdkafka understands
(no ``\d``, no look-arounds).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

PREFIX = "lc_classifier_"
DATE_FORMAT = "%Y%m%d"
DAYS_BACK = 36
"""The DESC TOM's production window start (ALERTCE_TOPIC_RELDATEOFFSET=-36)."""


def today() -> date:
    """The UTC date ALeRCE's topics are named after."""
    return datetime.now(UTC).date()


def daily_topic(classifier: str, day: date, tag: str = "") -> str:
    """``lc_classifier_<classifier>[_<tag>]_YYYYMMDD``; the tag keeps a harness run's topics apart."""
    return f"{PREFIX}{classifier}{'_' + tag if tag else ''}_{day.strftime(DATE_FORMAT)}"


def topic_date(topic: str) -> date | None:
    """The date at the end of a daily topic's name, or None when it has none."""
    stem, _, stamp = topic.rpartition("_")
    if not stem.startswith(PREFIX.rstrip("_")) or len(stamp) != 8 or not stamp.isdigit():
        return None
    try:
        return datetime.strptime(stamp, DATE_FORMAT).date()
    except ValueError:
        return None


def at_least(number: str) -> str:
    """A POSIX ERE alternation matching every digit string of ``number``'s length that is >= it."""
    alternatives = [number]
    for i, digit in enumerate(number):
        if digit != "9":
            low = int(digit) + 1
            alternatives.append(number[:i] + (f"[{low}-9]" if low < 9 else "9") + "[0-9]" * (len(number) - i - 1))
    return "(" + "|".join(alternatives) + ")"


def window_pattern(start: date | None = None, days_back: int = DAYS_BACK, prefix: str = PREFIX) -> str:
    """The subscription regex for daily topics dated ``days_back`` days before ``start`` (default today) or later."""
    first = (start or today()) - timedelta(days=days_back)
    return f"^{prefix}.*_{at_least(first.strftime(DATE_FORMAT))}$"
