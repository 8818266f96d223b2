"""A small, deliberate override of Faust's Kafka consumer: the fetch wait, the crash
safety of its commits, and two trips through the event loop per record that upstream
takes where nothing has to wait.

Faust hard-codes `fetch_max_wait_ms=1500` for its worker consumer and no setting
changes it. Apache Kafka answers a fetch as soon as data arrives, but Tansu holds
every fetch for the whole wait, so each agent hop would cost up to 1.5 s there
(measured: p50 503 ms per hop with 1500, 6.8 ms with 5). A short wait, though, makes
an idle consumer ask 100 times a second, and Tansu spends CPU on each (measured: the
idle stack burnt a whole core). So the wait follows the traffic: the short
`CONSUMER_FETCH_MAX_WAIT_MS` while records flow, the long
`CONSUMER_FETCH_IDLE_WAIT_MS` once a poll found nothing for a second; the first
record after a quiet spell may wait that long on Tansu (on Apache Kafka it costs
nothing: the broker answers as soon as data arrives).

Every override below exists because a test showed upstream get it wrong; each is named
with that test (tests/unit unless said otherwise):

| override | what upstream does wrong | test |
|---|---|---|
| `_ConsumerThread._create_worker_consumer`, `.pace` | fetch wait hard-coded to 1500 ms | `test_fetch_wait.py`; bench/chain_bench.py (latency, idle CPU) |
| `_ConsumerThread._highwaters` | table recovery stops at the end offset the broker reports, which on Tansu is the base of the last batch: the last state writes of a partition are lost | tests/e2e `test_table_recovery.py::test_a_worker_killed_with_bursts_open_answers_each_whole_after_recovering_its_tables`; tests/integration `test_changelog_end.py` |
| `_Consumer._new_offset`, `_add_gap`, `_accept_gap` | commits skip one unacked offset and fill "gaps" | `test_skipped_acks.py::test_offsets_that_hold_no_record_do_not_block_the_commit`, `::test_an_ack_repeated_after_a_seek_back_does_not_block_the_commit` |
| `_Consumer.ack`, `release` | a stream skips *and acks* events held at a rebalance | `test_skipped_acks.py::test_an_event_skipped_while_flow_is_suspended_is_released_but_not_done`, `::test_an_event_of_an_older_generation_is_not_done`, `::test_an_event_one_of_two_agents_skipped_in_a_rebalance_is_not_done` |
| `_Consumer.perform_seek`, `seek`, `_seek_done` | partitions resume before the seek to committed offsets; a partition with nothing committed is not sought at all | `test_skipped_acks.py::test_nothing_is_committed_before_the_generation_s_seek_to_committed_is_done`, `::test_the_seek_to_committed_marks_its_generation_and_supersedes_pending_rereads`, `::test_a_partition_with_nothing_committed_is_read_again_from_its_start_after_the_seek`; tests/e2e `test_handoff.py::test_a_worker_killed_mid_post_posts_again_with_the_same_delivery_id_and_then_never` |
| `ReadOffsets` (Faust's `_read_offset`) | one number means "delivered" and "sought to" | `test_read_offsets.py` |
| `_Consumer._drain_messages`, `_seek_back` | records dropped at a flow suspension or jumped over after a seek | tests/e2e `test_sigkill_mid_stream_loses_no_reply_and_sends_none_twice`, bench/crash_soak.py |
| `_Consumer._delivers_at_once` (in `_drain_messages`) | a task and a wait per record, even when the conductor has nothing to wait for: one or two trips through the loop per record | `test_loop_trips.py::test_a_record_the_predicate_lets_through_is_delivered_without_a_trip` and the three `..._is_waited_for`; bench/chain_bench.py (replies/s at 200 msgs/s) |
| `FastFetchApp.maybe_start_producer` | three trips through the loop for every record sent (`stampede`), so table writes queue behind a busy loop | `test_loop_trips.py::test_a_started_producer_is_returned_without_a_trip_through_the_loop`, `::test_a_changelog_record_reaches_the_producer_without_a_trip_through_the_loop` |
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, cast
from weakref import WeakKeyDictionary, WeakSet

import faust
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock
from mode.utils.futures import StampedeWrapper, notify

from processors import metrics
from processors.changelog_end import true_ends
from processors.changelog_reader import changelog_consumer
from zapstream.metrics import PartitionLag, aiokafka_lag

log = logging.getLogger(__name__)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    fetch_max_wait_ms: int = 10
    fetch_idle_wait_ms: int = 500
    _idle: bool = False

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        """The end offsets table recovery reads up to, read past the last batch's base
        where the broker reports that instead of the end (Tansu; see
        `processors.changelog_end`)."""
        ends: dict[Any, int] = dict(await super()._highwaters(partitions))
        if self.consumer.in_transaction or not any(ends.values()):
            return ends  # last stable offsets (not this case), or nothing to read
        probe = changelog_consumer(self.app, "changelog-end", fetch_max_wait_ms=100)
        try:
            await probe.start()
            try:
                return await true_ends(probe, ends)
            finally:
                # aiokafka's stop() raises CancelledError when its first loop iteration
                # has not run yet (its coordinator's task was never started)
                await asyncio.sleep(0)
                await probe.stop()
        except Exception as exc:  # recover as upstream would, rather than not at all
            log.warning(
                "could not read the changelogs' last batches (%s: %s); recovering up to "
                "the end offsets the broker reported",
                type(exc).__name__,
                exc,
            )
            return ends

    def pace(self, idle: bool) -> None:
        """Long fetches while idle, short ones while records flow. aiokafka's Fetcher
        reads `_fetch_max_wait_ms` each time it builds a fetch request."""
        if idle == self._idle:
            return
        fetcher = getattr(self._ensure_consumer(), "_fetcher", None)
        if fetcher is not None:
            fetcher._fetch_max_wait_ms = self.fetch_idle_wait_ms if idle else self.fetch_max_wait_ms
            self._idle = idle


MAX_REREADS = 3


class ReadOffsets(defaultdict[Any, int | None]):
    """Faust's `_read_offset` map, which knows the next offset to deliver.

    Faust writes a partition's *last delivered* offset here after each delivery, but
    the offset *sought to* (the next one to read) after a seek: the same number means
    two different things. Telling them apart by value alone once skipped a record:
    after a rebalance sought a partition back to its last delivered, never-acked
    offset, that record looked delivered and its reply waited for the next rebalance.
    So every write from Faust (a seek) sets `next` to the offset written, and our fetch
    loop records deliveries through `delivered()`.
    """

    def __init__(self) -> None:
        super().__init__(lambda: None)
        self.next: dict[Any, int] = {}  # tp -> next offset to deliver, where known

    def __setitem__(self, tp: Any, offset: int | None) -> None:  # a seek
        super().__setitem__(tp, offset)
        if offset is None:
            self.next.pop(tp, None)  # sought to the start, or nothing committed yet
        else:
            self.next[tp] = offset

    def __delitem__(self, tp: Any) -> None:
        super().__delitem__(tp)
        self.next.pop(tp, None)

    def pop(self, tp: Any, *default: Any) -> Any:
        self.next.pop(tp, None)
        return super().pop(tp, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for tp, offset in dict(*args, **kwargs).items():
            self[tp] = offset

    def delivered(self, tp: Any, offset: int) -> None:
        super().__setitem__(tp, offset)
        self.next[tp] = offset + 1


class _Consumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """Commits only offsets whose every predecessor was handled.

    Faust fills "gaps" in a partition's offsets as if they were done (meant for
    compacted topics and transaction markers) and lets a commit skip one unacked
    offset (`min(acked) - committed > 1`). Around a crash and restart (prefetched
    records racing a seek) that committed offsets of records no agent had seen, and
    replies were lost (measured on Apache Kafka). Our topics have no gaps: an offset
    that was not acknowledged is not done, and the commit waits for it.
    """

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        if offset_to >= offset_from:
            self.log.warning(
                "offsets %s..%s of %s were not delivered; not committing past them",
                offset_from,
                offset_to,
                tp,
            )

    def _accept_gap(self, tp: Any, start: int, end: int) -> None:
        """Offsets start..end-1 hold no record (compaction, transaction markers): count
        them as done so the strict commit can pass them. (Faust's own gap bookkeeping
        is not consulted by `_new_offset` below.)"""
        committed = self._committed_offset[tp]
        index = self._acked_index[tp]
        for offset in range(start, end):
            if offset not in index and (committed is None or offset >= committed):
                index.add(offset)
                self._acked[tp].append(offset)

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        if not acked or not self._seek_done():
            return None  # nothing done, or the committed offset is not known yet
        acked.sort()
        committed = self._committed_offset[tp]
        if committed is not None and acked[0] < committed:
            # acknowledged again after a seek back: already committed, not a blocker
            stale = [o for o in acked if o < committed]
            del acked[: len(stale)]
            self._acked_index[tp].difference_update(stale)
            if not acked:
                return None
        if committed is not None and acked[0] != committed:
            return None  # the next offset to commit has not been handled yet
        run = [acked[0]]
        for offset in acked[1:]:
            if offset != run[-1] + 1:
                break
            run.append(offset)
        del acked[: len(run)]
        self._acked_index[tp].difference_update(run)
        return run[-1] + 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset: ReadOffsets = ReadOffsets()
        # tp -> offset to read again from, once the flow is back (see _drain_messages)
        self._redeliver: dict[Any, int] = {}
        # the consumer generation whose seek to the committed offsets has completed
        self._sought_generation: int | None = None
        # message -> how many agents got it (mark_received): several agents may read
        # one topic (converse and media-pick both read the inbound topic)
        self.received: WeakKeyDictionary[Any, int] = WeakKeyDictionary()
        self.guards: WeakSet[Any] = WeakSet()  # the agents' in_order.InOrder guards (describe)

    def ack(self, message: Any) -> bool:
        """Faust's stream *skips* an event it fetched before a rebalance (flow
        suspended, or an older consumer generation) and then acks it, so that shutdown
        does not wait for it. Counted as done, that offset was committed and its
        message lost (measured: a reply missing after a worker SIGKILL). An event no
        agent received is therefore released but not counted as done: the partition is
        sought back to its committed offset at the assignment, and it comes again.
        Where several agents read the topic, the final ack may come from the one that
        skipped it after another handled it: it is done only if every agent got it."""
        if self._skipped_by_stream(message) and self.received.get(message, 0) < self._readers(
            message
        ):
            self.release(message)
            self.log.info(
                "offset %s of %s skipped during a rebalance; it will be read again",
                message.offset,
                message.tp,
            )
            return False
        self.received.pop(message, None)
        return bool(super().ack(message))

    def _readers(self, message: Any) -> int:
        """How many agents' channels the conductor delivers this partition to (the
        references it gave the message)."""
        index = cast(Any, self.app.topics)._tp_index
        return max(1, len(index.get(message.tp, ())))

    async def perform_seek(self) -> None:
        """Faust's seek of every assigned partition to its committed offset, after a
        rebalance's recovery. Until it completes, `_committed_offset` is stale (empty
        in a restarted worker) while the partitions are already resumed: records
        handed to the agents in that window met in-order guards and a strict commit
        that did not know where the partition starts, so a commit could pass records
        no agent had handled (measured: after a worker SIGKILL on Kafka, a user's
        first nine replies missing, the tenth sent). So nothing is delivered or
        committed for a generation until its seek is done."""
        generation = self.app.consumer_generation_id
        try:
            await super().perform_seek()
            # Records fetched while the seek was under way were held back, and a fetch
            # already in flight can land after it: read every partition again from
            # its committed offset once the seek is done. A partition with nothing
            # committed (Faust keeps a committed 0 as None too) is read again from its
            # start: aiokafka's seek to committed does not move it, and records that
            # Faust fetched and dropped before the seek stayed skipped. (Traced after a
            # worker SIGKILL on Tansu: recovery pauses the changelogs while the stream
            # partitions are still paused, emptying the live set of active partitions
            # that a waiting fetch holds; aiokafka reads an empty set as "every
            # partition" and returns the stream records, which Faust's getmany drops
            # as not active. The restarted worker never read the handoff's `opened`
            # event, in a partition with no commit yet.) Offset 0 before the log start
            # is reset to the earliest record (auto_offset_reset="earliest").
            changelogs = self.app.tables.changelog_topics
            for tp in self.assignment():
                if tp.topic not in changelogs:
                    self._redeliver[tp] = self._committed_offset.get(tp) or 0
        finally:
            # also when cut short (a timeout): the old behaviour beats a stalled worker
            if generation == self.app.consumer_generation_id:
                self._sought_generation = generation

    def _seek_done(self) -> bool:
        return self._sought_generation == self.app.consumer_generation_id

    async def seek(self, partition: Any, offset: int) -> None:
        """A seek sets where reading restarts: it supersedes a re-read still pending
        for that partition (which could otherwise jump forward past the seek)."""
        self._redeliver.pop(partition, None)
        await super().seek(partition, offset)

    def release(self, message: Any) -> None:
        """Let go of a message an agent will not handle (a repeat, or one that came
        before its predecessor): it no longer holds up a rebalance, and it does not
        count as done."""
        with ack_lock:
            message.acked = True
            self._unacked_messages.discard(message)
            self.received.pop(message, None)
            notify(self._waiting_for_ack)

    def describe(self) -> str:
        """One line per assigned partition: where committing, delivery and the agents'
        guards stand. Printed on SIGUSR1 (with the task stacks) to see why a partition
        does not move."""
        in_flight = self._in_flight()
        nxt = self._read_offset.next
        lines = [
            f"consumer generation {self.app.consumer_generation_id} "
            f"(sought: {self._sought_generation}), "
            f"flow {'on' if self.app.flow_control.is_active() else 'suspended'}"
        ]
        for tp in sorted(self.assignment()):
            acked = sorted(self._acked.get(tp, ()))
            guards = [g.expected.get(tp) for g in list(self.guards)]
            lines.append(
                f"{tp.topic}[{tp.partition}] committed={self._committed_offset.get(tp)} "
                f"next={nxt.get(tp)} acked={acked[:5]}{'…' if len(acked) > 5 else ''} "
                f"in_flight={sorted(in_flight.get(tp, ()))[:5]} "
                f"redeliver={self._redeliver.get(tp)} guards={guards} "
                f"highwater={self._safe(self.highwater, tp)} "
                f"fetch_position={self._safe(self._fetch_position, tp)}"
                f"{' PAUSED' if self._safe(self._paused, tp) is True else ''}"
            )
        return "\n".join(lines)

    def lag(self) -> list[PartitionLag]:
        """Records behind per assigned partition (`zapstream_consumer_lag`), read from
        aiokafka's bookkeeping without a request: cheap enough for every scrape."""
        return aiokafka_lag(self._thread._ensure_consumer(), self.assignment())

    def _in_flight(self) -> dict[Any, set[int]]:
        """tp -> offsets handed to the agents and not yet acknowledged."""
        in_flight: dict[Any, set[int]] = {}
        for m in list(self._unacked_messages):
            if not m.acked:
                in_flight.setdefault(m.tp, set()).add(m.offset)
        return in_flight

    def _fetch_position(self, tp: Any) -> Any:
        aiokafka_consumer = self._thread._ensure_consumer()
        return aiokafka_consumer._subscription.subscription.assignment.state_value(tp).position

    def _paused(self, tp: Any) -> bool:
        return tp in self._thread._ensure_consumer().paused()

    @staticmethod
    def _safe(read: Any, tp: Any) -> Any:
        try:
            return read(tp)
        except Exception as exc:  # a diagnostic must not fail
            return repr(exc)

    def _skipped_by_stream(self, message: Any) -> bool:
        app = self.app
        # the same test as faust.Stream's, made at the same moment (it acks at once)
        return bool(
            not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id
        )

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs a broker
        """Faust's fetch loop, changed so that no record is skipped:

        - a record whose delivery was cut short by a flow suspension (a rebalance racing
          the fetch, e.g. right after a restarted worker is assigned its partitions) is
          read again: Faust advanced past it and never delivered it;
        - no record is handed to the agents while the app's flow control is suspended:
          Faust clears the agents' queues when it resumes, and a record handed over in
          that window was silently dropped (traced after a worker SIGKILL: fetched and
          delivered during recovery, never received by the agent);
        - a jump in offsets (records prefetched before a seek arriving after it) is not
          taken for a "gap" that counts as done: the partition is sought back to the
          first offset not yet delivered. A jump that persists after a few re-reads is a
          real gap (compaction, transaction markers) and is accepted as Faust would.
        Replies went missing after a worker crash without this; handling is idempotent,
        so a record read twice is harmless.
        """
        redeliver = self._redeliver
        redeliver.clear()
        changelogs = frozenset(self.app.tables.changelog_topics)
        rereads: dict[tuple[Any, int], int] = {}
        callback = self.callback
        read_offset = self._read_offset
        app_flowing = self.app.flow_control.is_active
        stopped = cast(Any, self)._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (stopped() or fetcher_stopped()):
                if redeliver and self.flow_active and app_flowing():
                    await self._seek_back(redeliver, changelogs)
                self.diag.set_flag(faust_consumer.CONSUMER_FETCHING)
                ait = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                got = False
                async for tp, message in ait:
                    got = True
                    offset = message.offset
                    nxt = read_offset.next.get(tp)
                    if tp in redeliver or (nxt is not None and offset < nxt):
                        continue  # read again after the seek (or already delivered)
                    if nxt is not None and offset > nxt:
                        tries = rereads.get((tp, nxt), 0)
                        if tries < MAX_REREADS:
                            rereads[(tp, nxt)] = tries + 1
                            redeliver.setdefault(tp, nxt)
                            continue
                        self.log.warning(
                            "offsets %s..%s of %s do not exist; skipping them", nxt, offset - 1, tp
                        )
                        self._accept_gap(tp, nxt, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if not app_flowing() or (tp.topic not in changelogs and not self._seek_done()):
                        # Faust's agents' queues are cleared when the app's flow resumes
                        # (after a rebalance's recovery): a record handed over now would
                        # be dropped there. And before the seek to the committed offsets
                        # the guards cannot tell a record's place (see perform_seek);
                        # the tables' changelogs are read before that seek (recovery).
                        # Read it again once the flow is back and the seek done.
                        redeliver.setdefault(tp, offset)
                        continue
                    if tp.topic in changelogs:
                        # A table's changelog goes to the recovery buffer, never to an
                        # agent's queue: nothing clears it, so no race to watch for. (A
                        # task and a wait per record cost most of a recovery's time.)
                        await callback(message)
                    elif self._delivers_at_once(tp):
                        # Nothing for the delivery to wait on: call it inline. (A task
                        # and a wait per record cost a trip or two through a busy event
                        # loop each, and capped the worker at a few hundred records/s.)
                        await callback(message)
                        if not app_flowing():  # it waited after all: as below
                            redeliver.setdefault(tp, offset)
                            continue
                    else:
                        delivery = asyncio.ensure_future(callback(message))
                        await self.wait_first(delivery, self.suspend_flow.wait())
                        if not delivery.done() or delivery.cancelled():
                            redeliver.setdefault(tp, offset)
                            continue
                    read_offset.delivered(tp, offset)
                    if rereads:  # the jump before this offset is over: forget its count
                        rereads.pop((tp, offset), None)
                cast(_ConsumerThread, self._thread).pace(idle=not got)
                self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)

    def _delivers_at_once(self, tp: Any) -> bool:
        """Would the conductor hand this partition's next record to its agents
        without waiting? It waits only for a suspended flow, a producer buffer over
        its limit, or a full agent queue (`faust.transport.conductor`)."""
        app = self.app
        if not app.flow_control.is_active():
            return False
        buffer = app.producer.buffer
        if buffer.size > buffer.max_messages:
            return False
        channels = cast(Any, app.topics)._tp_index.get(tp, ())
        return not any(chan.queue.full() for chan in channels)

    async def _seek_back(self, redeliver: dict[Any, int], changelogs: frozenset[str]) -> None:
        assigned = self.assignment()
        seek_done = self._seek_done()
        for tp, offset in list(redeliver.items()):
            if not seek_done and tp.topic not in changelogs:
                continue  # after Faust's seek to the committed offsets (perform_seek)
            del redeliver[tp]
            if tp not in assigned:
                continue  # revoked: its new owner starts from the committed offset
            start = self._committed_offset.get(tp) or 0  # read again after every rebalance
            if offset != start:
                self.log.info(
                    "reading %s again from offset %s (delivery was interrupted)", tp, offset
                )
            try:
                await self.seek(tp, offset)
            except Exception as exc:  # a rebalance in between: the assignment seeks anyway
                self.log.warning("could not seek %s back to %s: %r", tp, offset, exc)

    def _new_consumer_thread(self) -> _ConsumerThread:
        thread = _ConsumerThread(self, loop=self.loop, beacon=self.beacon)
        thread.fetch_max_wait_ms = getattr(self.app, "zapstream_fetch_max_wait_ms", 10)
        thread.fetch_idle_wait_ms = getattr(self.app, "zapstream_fetch_idle_wait_ms", 500)
        return thread


def mark_received(event: Any) -> None:
    """Note that an agent received `event` (see `_Consumer.ack`). Every agent of the
    worker and the sink calls it first thing for each event."""
    metrics.consumed.inc(event.message.topic)
    received = getattr(event.app.consumer, "received", None)
    if received is not None:
        received[event.message] = received.get(event.message, 0) + 1


class _Transport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer = _Consumer


_FAUST_MAYBE_START_PRODUCER = faust.App.__dict__["maybe_start_producer"].__wrapped__


class FastFetchApp(faust.App):  # type: ignore[misc]
    """faust.App whose worker consumer uses `fetch_max_wait_ms` from our settings,
    and whose running producer is reached without a trip through the event loop."""

    zapstream_fetch_max_wait_ms: int = 10
    zapstream_fetch_idle_wait_ms: int = 500
    _producer_starter: StampedeWrapper | None = None

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    async def maybe_start_producer(self) -> Any:
        """The started producer, at once. Faust's is wrapped in `mode`'s `stampede`,
        which yields to the event loop three times per call, and every record sent
        calls it (`Topic.publish_message`): the producer buffer that carries every
        table write then drains one record per three trips through a busy loop
        (measured: ~400 records/s, durable ledger writes waiting 0.3-2.5 s at
        200 msgs/s). Only the first call, which starts the producer, needs the
        stampede guard."""
        producer = self.producer
        if not self.in_transaction and producer.started:
            return producer
        # Faust's own, guarded against concurrent starts. Not through `super()`: the
        # `stampede` descriptor would store its wrapper on the instance under this
        # method's name, and every later call would bypass this one.
        if self._producer_starter is None:
            self._producer_starter = StampedeWrapper(_FAUST_MAYBE_START_PRODUCER, self)
        return await self._producer_starter()
