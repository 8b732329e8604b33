"""The synchronous decision API's shell: follow the decisions topic, publish a request, wait for
its decision (bounded), answer a repeat with the same decision and refuse a conflicting one.

Any worker can answer: its follower reads every partition of the decisions topic (no consumer
group, from the end at start), so it sees the decision of a request it published whichever worker
decided it. Decisions from before the worker started come from the projection when this worker
projects; otherwise the caller polls a worker that does, or publishes again (an identical request
is decided once: the decide agent answers a repeat with the decision it already made).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from aiokafka import AIOKafkaConsumer, TopicPartition

import schemas
from streams.core.decision import differing_facts
from streams.core.explain import explained
from streams.core.inbound import LineProblems, TimeBounds, parse_event_line, timestamps_to_ms
from streams.runtime.kafka_auth import aiokafka_options
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.settings import KafkaConnection
from streams.runtime.upstream import avro_json_by_name

log = logging.getLogger(__name__)

# Decisions remembered for repeats and polls: about 200 bytes each, so ~40 MB at most.
DECISIONS_REMEMBERED_MAX = 200_000
# The follower's fetch wait: a decision is seen within this much of being written (the broker
# answers at once when there is data); a short wait costs a few idle fetches a second.
FOLLOW_FETCH_WAIT_MS = 10
# Longest one poll of the follower blocks, so stopping it is prompt.
FOLLOW_POLL_MS = 500
# A request body: one event of the publish format, well under a kilobyte in practice.
BODY_BYTES_MAX = 16 * 1024


class ApiProblem(Exception):
    """A request the API refuses: the HTTP status and the message naming what is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_event(body: bytes, record_name: str, now_ms: int) -> dict:
    """A JSON body of the publish format as the datum of `record_name` (timestamps in ms);
    ApiProblem 400 naming every bad field."""
    if len(body) > BODY_BYTES_MAX:
        raise ApiProblem(400, f"body: larger than {BODY_BYTES_MAX} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiProblem(400, f"body: not UTF-8 ({error.reason} at byte {error.start})") from None
    stripped = text.strip()
    if not stripped.startswith("{"):
        raise ApiProblem(400, "body: expected a JSON object with the fields of " + record_name)
    # The route names the type: it goes in front, so a body that names one too is refused by the
    # publish format's own rule against a repeated key.
    rest = stripped[1:].lstrip()
    typed = '{"type":"' + record_name + '"' + ("" if rest.startswith("}") else ",") + rest
    try:
        _, datum = parse_event_line(typed, avro_json_by_name(), now_ms, TimeBounds())
    except LineProblems as problems:
        raise ApiProblem(400, "; ".join(problems.problems)) from None
    return datum


class DecisionFollower:
    """Every decision written to the decisions topic from the moment it started, remembered by
    request id (the newest: a review's decision replaces the escalation), with waiters."""

    def __init__(self, kafka: KafkaConnection, topic: str, partitions: int):
        self.kafka = kafka
        self.topic = topic
        self.partitions = partitions  # the topic's partition count (every project topic has the same)
        self._consumer: AIOKafkaConsumer | None = None
        self._decisions: OrderedDict[str, dict] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self.followed_total = 0

    async def start(self) -> None:
        """Assign every partition and seek to its end now: what is written after this is seen."""
        consumer = AIOKafkaConsumer(**aiokafka_options(self.kafka), group_id=None, enable_auto_commit=False,
                                    client_id="remedy-sync-api", fetch_max_wait_ms=FOLLOW_FETCH_WAIT_MS)
        await consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)  # resolve the end offsets before anything is published
        self._consumer = consumer

    async def run(self) -> None:
        """Follow until cancelled."""
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=FOLLOW_POLL_MS)
                for records in batches.values():
                    for record in records:
                        self._see(record.value)
        finally:
            await self._consumer.stop()

    def sent(self, entries) -> None:
        """Decisions this worker's decide agent wrote and Kafka acknowledged (OutboxEntry-like:
        `topic`, `value`): seen at once, before the follower's own fetch brings them again."""
        for entry in entries:
            if entry.topic == self.topic:
                self._see(entry.value)

    def _see(self, value: bytes | None) -> None:
        try:
            record_name, datum = schemas.decode(value)
        except Exception:  # the decide agent dead-letters what it cannot read; here it is only skipped
            return
        if record_name != "RemedyDecided":
            return
        decision = timestamps_to_ms("RemedyDecided", datum, avro_json_by_name())
        request_id = decision["request_id"]
        self._decisions[request_id] = decision
        self._decisions.move_to_end(request_id)
        while len(self._decisions) > DECISIONS_REMEMBERED_MAX:
            self._decisions.popitem(last=False)
        self.followed_total += 1
        for waiter in self._waiters.pop(request_id, []):
            if not waiter.done():
                waiter.set_result(decision)

    def known(self, request_id: str) -> dict | None:
        """The newest decision seen for a request, or None."""
        return self._decisions.get(request_id)

    def waiter(self, request_id: str) -> asyncio.Future:
        """A future the request's next decision completes; take it before publishing the request."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, []).append(future)
        return future

    async def outcome(self, request_id: str, waiter: asyncio.Future, timeout_s: float) -> dict | None:
        """The decision the waiter receives within timeout_s, or None (the caller answers 202)."""
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except asyncio.TimeoutError:
            return None
        finally:
            left = [w for w in self._waiters.get(request_id, []) if w is not waiter]
            if left:
                self._waiters[request_id] = left
            else:
                self._waiters.pop(request_id, None)


def same_request_or_refuse(request: dict, decision: dict) -> None:
    """ApiProblem 409 when a request repeats a decided request id with other facts."""
    differing = differing_facts(request, decision)
    if differing:
        raise ApiProblem(409, f"request {request['request_id']} was already decided with other facts "
                              f"({', '.join(differing)} differ); a new request needs a new request_id")


class SyncApi:
    """POST /v1/remedy-requests, GET /v1/remedy-requests/{id}, POST /v1/incidents (streams/runtime/web.py)."""

    def __init__(self, follower: DecisionFollower, publish, lookup, requests_topic: str, incidents_topic: str,
                 wait_s: float, clock_ms, metrics: WorkerMetrics | None = None):
        self.follower = follower
        self.publish = publish  # async (topic, key bytes, record name, datum) -> (partition, offset)
        # async (request_id, request or None) -> an earlier decision of the request, or None
        self.lookup = lookup
        self.requests_topic = requests_topic
        self.incidents_topic = incidents_topic
        self.wait_s = wait_s
        self.clock_ms = clock_ms  # the shell's clock, for the publish format's time bounds only
        self.metrics = metrics or WorkerMetrics()
        self._published: OrderedDict[str, None] = OrderedDict()  # request ids this worker sent, newest last

    async def _decided(self, request_id: str, request: dict | None = None) -> dict | None:
        known = self.follower.known(request_id)
        if known is None:
            known = await self.lookup(request_id, request)
        return known

    async def remedy_request(self, body: bytes) -> tuple[int, dict, dict]:
        """Validate, publish (unless decided already), wait up to wait_s: 200 with the decision or 202 to
        poll; the third value holds the hops' milliseconds (the Server-Timing header)."""
        started_s = time.perf_counter()
        try:
            status, answer, hops_ms = await self._remedy_request(body, started_s)
        except ApiProblem as problem:
            self.metrics.sync_answers.inc(str(problem.status))
            raise
        hops_ms["total"] = (time.perf_counter() - started_s) * 1000
        for hop, milliseconds in hops_ms.items():
            self.metrics.sync_seconds.observe(milliseconds / 1000, hop)
        self.metrics.sync_answers.inc(str(status))
        return status, answer, hops_ms

    async def _remedy_request(self, body: bytes, started_s: float) -> tuple[int, dict, dict]:
        request = parse_event(body, "RemedyRequested", self.clock_ms())
        request_id = request["request_id"]
        parsed_s = time.perf_counter()
        decided = await self._decided(request_id, request)
        looked_s = time.perf_counter()
        hops_ms = {"parse": (parsed_s - started_s) * 1000, "lookup": (looked_s - parsed_s) * 1000}
        if decided is not None:
            same_request_or_refuse(request, decided)
            return *self._ok(decided), hops_ms
        waiter = self.follower.waiter(request_id)
        await self.publish(self.requests_topic, request["customer_id"].encode(), "RemedyRequested", request)
        published_s = time.perf_counter()
        hops_ms["publish"] = (published_s - looked_s) * 1000
        self._published[request_id] = None
        self._published.move_to_end(request_id)
        while len(self._published) > DECISIONS_REMEMBERED_MAX:
            self._published.popitem(last=False)
        decision = await self.follower.outcome(request_id, waiter, self.wait_s)
        hops_ms["decision"] = (time.perf_counter() - published_s) * 1000
        if decision is None:
            return *self._pending(request_id), hops_ms
        same_request_or_refuse(request, decision)
        return *self._ok(decision), hops_ms

    async def poll(self, request_id: str) -> tuple[int, dict, dict]:
        """200 with the decision once there is one; 202 while a request this worker sent waits for
        it; 404 for a request this worker neither sent nor knows a decision of."""
        decided = await self._decided(request_id)
        if decided is not None:
            return *self._ok(decided), {}
        if request_id in self._published:
            return *self._pending(request_id), {}
        raise ApiProblem(404, f"request {request_id}: no decision known here and not sent through this worker "
                              "(poll the worker that answered the POST, or POST the request again)")

    async def incident(self, body: bytes) -> tuple[int, dict, dict]:
        """Validate and publish an IncidentReported; 202 with where it was written."""
        incident = parse_event(body, "IncidentReported", self.clock_ms())
        partition, offset = await self.publish(self.incidents_topic, incident["customer_id"].encode(),
                                               "IncidentReported", incident)
        return 202, {"incident_id": incident["incident_id"], "accepted": True, "partition": partition,
                     "offset": offset, "next": "a remedy request may name this incident_id now"}, {}

    @staticmethod
    def _ok(decision: dict) -> tuple[int, dict]:
        return 200, explained(decision)

    @staticmethod
    def _pending(request_id: str) -> tuple[int, dict]:
        return 202, {"request_id": request_id, "status": "PENDING", "poll": f"/v1/remedy-requests/{request_id}",
                     "next": "the request is on its way to a decision; poll the URL (or POST the same request again)"}
