"""alertmux: a plugin-based adapter framework between alert brokers, science collaborations and telescopes.

The public API is what a plugin needs: the ``hookimpl`` marker and the spec objects it returns.
"""

from __future__ import annotations

from alertmux.errors import AlertmuxError, DecodeError
from alertmux.hookspecs import hookimpl
from alertmux.specs import (
    AlertSourceSpec,
    BrokerMessage,
    BrokerSpec,
    Delivery,
    EmulatorContext,
    EmulatorSpec,
    FacilitySpec,
    KafkaTransport,
    NormalizedLabel,
    NormalizerSpec,
    SamplePayload,
    SimulatedTruth,
    SourceObject,
)

__version__ = "0.1.0"

__all__ = [
    "AlertSourceSpec",
    "AlertmuxError",
    "BrokerMessage",
    "BrokerSpec",
    "DecodeError",
    "Delivery",
    "EmulatorContext",
    "EmulatorSpec",
    "FacilitySpec",
    "KafkaTransport",
    "NormalizedLabel",
    "NormalizerSpec",
    "SamplePayload",
    "SimulatedTruth",
    "SourceObject",
    "__version__",
    "hookimpl",
]
