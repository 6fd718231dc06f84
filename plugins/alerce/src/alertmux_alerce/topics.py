r"""ALeRCE's daily Kafka topics: ``lc_classifier_<classifier>_YYYYMMDD``, one per classifier per day.

ALeRCE's pipeline names them with ``DailyTopicStrategy(topic_format="..._%s", date_format="%Y%m%d")``
(alercebroker/pipeline ``libs/apf/apf/core/topic_management.py``); the DESC TOM found them by listing topics and
keeping those matching ``^lc_classifier_.*_(\d{8})$`` whose date lay in [today-36, today+2] days (tom_desc
``_brokerconsumer.py`` ``AlerceConsumer``, production offset -36).

librdkafka subscribes by regex when a subscription starts with ``^`` and re-reads metadata every few seconds, so a
new day's topic inside the window is picked up by itself; as days pass, ``alertmux listen`` re-evaluates
:func:`window_pattern` and re-subscribes, so the window itself moves.
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


DAYS_AHEAD = 2
"""The DESC TOM's window end: topics dated up to two days ahead (time zones, topics created early)."""


def window_pattern(start: date | None = None, days_back: int = DAYS_BACK, days_ahead: int = DAYS_AHEAD,
                   prefix: str = PREFIX) -> str:
    """The subscription regex for daily topics dated [start - days_back, start + days_ahead] (start: today).

    The dates are listed one by one (39 alternatives by default), exact at both ends and in the POSIX-extended
    syntax librdkafka understands; ``alertmux listen`` calls this again as time passes (``moving_pattern``) and
    re-subscribes when the day changes, so the window moves.
    """
    first = start or today()
    days = [(first + timedelta(days=d)).strftime(DATE_FORMAT) for d in range(-days_back, days_ahead + 1)]
    return f"^{prefix}.*_({'|'.join(days)})$"
