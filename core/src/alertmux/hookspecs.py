"""The hooks a plugin can implement.

Every hook is prefixed ``alertmux_``. Registration hooks are plural nouns and return an iterable of spec objects
(a generator is fine); event hooks are past participles, return nothing, and must be quick, because they run
inside the ingest loop. Hooks evolve additively: a new argument is a minor release, and a plugin may always
declare fewer arguments than the spec offers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from alertmux.specs import AlertSourceSpec, BrokerSpec, FacilitySpec, FollowupStrategySpec, NormalizerSpec
    from alertmux.store import Store

PROJECT = "alertmux"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class AlertmuxSpecs:
    """Hook specifications of alertmux (the plugin manager registers this class)."""

    @hookspec
    def alertmux_alert_sources(self) -> Iterable[AlertSourceSpec]:
        """Register sources of alerts that ``alertmux stream`` and ``alertmux demo`` can send.

        A source yields objects, each with its alerts as ``elasticc.v0_9_1`` records in time order and, when the
        source knows it, the object's truth (class, peak time, redshift) for scoring.

        Returns:
            An iterable of :class:`~alertmux.specs.AlertSourceSpec`. Names must be unique across plugins.

        Example:
            >>> @hookimpl
            ... def alertmux_alert_sources():
            ...     yield AlertSourceSpec(name="simulated", description="...", open=simulate_objects)

        .. versionadded:: 0.1
        """

    @hookspec
    def alertmux_brokers(self) -> Iterable[BrokerSpec]:
        """Register broker consumers: the transports of a broker, its decoders and, optionally, its emulator.

        ``alertmux listen --broker NAME`` consumes the broker's Kafka topics with the core loop and hands every
        raw payload to the spec's decoder; a decoder that raises sends that payload to the dead-letter table.

        Returns:
            An iterable of :class:`~alertmux.specs.BrokerSpec`. The name is what users type after ``--broker``;
            a name registered twice is reported as a conflict and the later one is ignored.

        Example:
            >>> @hookimpl
            ... def alertmux_brokers():
            ...     yield BrokerSpec(name="example", description="...", kafka=KafkaTransport(decode, topics=("t",)))

        .. versionadded:: 0.1
        """

    @hookspec
    def alertmux_classification_normalizers(self) -> Iterable[NormalizerSpec]:
        """Register maps from a native class vocabulary onto ELAsTiCC2 class ids.

        A decoder tags each message with its native ``scheme``; the normalizer registered for that scheme maps
        each label to a class id (or None, outside the taxonomy) and a kind: ``probability``, ``score`` or
        ``context``. The native label is always kept verbatim beside the class id.

        Returns:
            An iterable of :class:`~alertmux.specs.NormalizerSpec`; one per scheme name.

        .. versionadded:: 0.1
        """

    @hookspec
    def alertmux_facilities(self) -> Iterable[FacilitySpec]:
        """Register follow-up facility adapters: validate, submit, status, cancel and fetch data products.

        Returns:
            An iterable of :class:`~alertmux.specs.FacilitySpec`.

        .. versionadded:: 0.1
        """

    @hookspec
    def alertmux_followup_strategies(self) -> Iterable[FollowupStrategySpec]:
        """Register follow-up ranking strategies that ``alertmux followup rank --strategy NAME`` can run.

        A strategy gets every candidate object (its averaged class probabilities, light-curve summary, position and
        spectroscopic exposure times for a 4 m and an 8 m telescope) and returns the ones it picks, best first, each
        with a score and a reason; the core stores the ranking and assigns priorities 1-5 where the strategy left
        them out. The built-in ``near-peak`` and ``uncertainty`` (RESSPECT's uncertainty sampling within a
        telescope-time budget) come through this hook too.

        Returns:
            An iterable of :class:`~alertmux.specs.FollowupStrategySpec`; names must be unique across plugins.

        Example:
            >>> @hookimpl
            ... def alertmux_followup_strategies():
            ...     yield FollowupStrategySpec(name="brightest", description="...", rank=brightest_first)

        .. versionadded:: 0.1
        """

    @hookspec
    def alertmux_register_commands(self, cli: click.Group) -> None:
        """Add subcommands to the ``alertmux`` command line.

        Args:
            cli: the root click group; call ``cli.command()`` or ``cli.add_command()`` on it.

        Example:
            >>> @hookimpl
            ... def alertmux_register_commands(cli):
            ...     @cli.command()
            ...     def hello():
            ...         click.echo("hello")

        .. versionadded:: 0.1
        """

    @hookspec
    def alertmux_classifications_stored(self, store: Store, run_id: str | None, broker: str, count: int) -> None:
        """Called after a batch of classification messages has been committed to the store.

        Runs inside the ingest loop, after the commit and before the Kafka offsets are stored: keep it quick
        (enqueue work, do not do it). An exception is logged and does not stop the loop.

        Args:
            store: the store the batch went to.
            run_id: the harness run, or None for a plain ``listen``.
            broker: the broker plugin name.
            count: messages newly stored (redeliveries that added no row are not counted).

        .. versionadded:: 0.1
        """

    @hookspec
    def alertmux_alerts_recorded(self, store: Store, run_id: str, alerts: list[dict[str, Any]]) -> None:
        """Called after the harness recorded a batch of a source's alerts (truth, photometry) in the store.

        It runs before those alerts are sent; a plugin that needs more of each alert than the core keeps (the
        follow-up plugin keeps each object's position) records it here.

        Args:
            store: the store holding the run.
            run_id: the run the alerts belong to.
            alerts: the alert records as the source yielded them (ELAsTiCC or Rubin shape).

        .. versionadded:: 0.1
        """

    @hookspec
    def alertmux_alerts_sent(self, store: Store, run_id: str, topic: str, alert_ids: list[int]) -> None:
        """Called after the streamer flushed a batch of alerts to Kafka and recorded their sent time.

        Args:
            store: the store holding the run.
            run_id: the streaming run.
            topic: the topic the alerts went to.
            alert_ids: the alerts acknowledged by Kafka in this batch.

        .. versionadded:: 0.1
        """
