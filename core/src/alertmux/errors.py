"""Errors a user can cause. The CLI turns them into one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations


class AlertmuxError(Exception):
    """Base class of every error alertmux reports to a user."""

    exit_code = 1


class UsageError(AlertmuxError):
    """Bad input: an unknown name, an unreadable file, a bad option combination."""

    exit_code = 2


class ConfigError(AlertmuxError):
    """The configuration file or environment is invalid."""

    exit_code = 2


class KafkaUnavailable(AlertmuxError):
    """Kafka did not answer within the connect timeout."""

    exit_code = 3


class DecodeError(AlertmuxError):
    """A payload is not what its decoder expects; the ingest loop dead-letters it."""

