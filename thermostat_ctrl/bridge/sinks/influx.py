"""The InfluxDB / VictoriaMetrics sink: every sample, pushed as line
protocol, nothing lost while the database is away.

Two threads of its own, so neither the polls nor any other consumer ever
waits for the database:

* the bus consumer (:meth:`InfluxSink.accept`, run by the bridge's consumer
  thread) encodes each sample (:mod:`.lineproto`) and appends it to the
  sink's :class:`~.spool.Spool` as it arrives;
* the sender reads the spool in order and POSTs batches (by count and by
  age: ``batch_points`` / ``batch_s``), gzip-compressed; a batch leaves the
  spool only once the database has answered 2xx.

Answers other than 2xx:

* no answer (refused, reset, timeout), 408, 429 and 5xx: retried with
  exponential backoff (0.5 s doubling up to ``backoff_max_s``); a
  ``Retry-After`` (429, 503) is waited for instead;
* 413 (batch too large): sent again in halves;
* any other 4xx says the request itself is wrong (no such database, a bad
  token or password, a field type conflict): logged once as an error with
  the database's message, counted in ``refused``, and tried again only every
  ``backoff_max_s``, keeping the backlog, so that fixing the database (or
  the configuration and a restart) loses nothing.

After an outage the backlog is replayed in order, oldest first, before any
newer point.
"""

import email.utils
import gzip
import logging
import threading
import time
from dataclasses import dataclass
from typing import Optional

import httpx

from .lineproto import PointEncoder
from .settings import InfluxSettings
from .spool import Batch, Spool

logger = logging.getLogger(__name__)

__all__ = ["InfluxSink", "SinkState", "retry_after"]

#: First wait after a failed write; doubles up to ``backoff_max_s``.
BACKOFF_START_S = 0.5
#: Longest ``Retry-After`` honoured (a longer one is cut to this).
RETRY_AFTER_MAX_S = 600.0
#: Uncompressed bytes read into one request at most.
BATCH_BYTES = 4 * 1024 * 1024
#: How long :meth:`InfluxSink.stop` keeps sending what is waiting.
FLUSH_S = 5.0
#: gzip level: line protocol compresses ~10x at level 1 already.
GZIP_LEVEL = 1
_RETRY_STATUS = {408, 429}


@dataclass(frozen=True)
class SinkState:
    """What a sink has done and what it holds."""

    url: str                       #: the write endpoint (never holds credentials)
    status: str                    #: ``ok``, ``retrying``, ``refused`` or ``stopped``
    points_sent: int               #: points the database acknowledged
    batches_sent: int              #: requests the database acknowledged
    retries: int                   #: failed requests that will be retried
    refused: int                   #: requests refused as wrong (4xx)
    backlog_points: int            #: points in the spool, not yet acknowledged
    backlog_bytes: int             #: their bytes on disk
    oldest_unsent_age_s: Optional[float]  #: age of the oldest unsent sample
    dropped_points: int            #: points lost: spool full or not writable
    last_error: Optional[str]      #: the latest failure, None after a success
    last_success_ts: Optional[int]  #: epoch ms of the latest acknowledged request
    held_points: int = 0           #: points the spool's disk refused, held in memory
    caught_up_points: int = 0      #: points the spool wrote late, once its disk took writes
    spool_error: Optional[str] = None  #: why the spool cannot be written now; None when it can


def retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP
    date), at most :data:`RETRY_AFTER_MAX_S`; None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value) if value.isdigit() else (
            email.utils.parsedate_to_datetime(value).timestamp()
            - (time.time() if now is None else now))
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_MAX_S)


class _Failure(Exception):
    """A write that did not succeed: ``kind`` is ``retry``, ``refused`` or
    ``too_large``; ``wait`` a Retry-After, if given."""

    def __init__(self, kind: str, message: str, wait: Optional[float] = None):
        super().__init__(message)
        self.kind = kind
        self.wait = wait


class InfluxSink:
    """Pushes every sample it is given to one write endpoint.

    :param settings: the endpoint and the batching.
    :param directory: the sink's spool folder (created; OSError if it cannot be).
    """

    def __init__(self, settings: InfluxSettings, directory: str):
        self.settings = settings
        self.name = settings.url
        self.encoder = PointEncoder(settings.measurement)
        self.spool = Spool(directory, int(settings.spool_mb * 1024 * 1024))
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.points_sent = 0
        self.batches_sent = 0
        self.retries = 0
        self.refused = 0
        self.encode_errors = 0
        self.last_error: Optional[str] = None
        self.last_success_ts: Optional[int] = None
        self._status = "ok"

    # ------------------------------------------------------------- receive

    def accept(self, batch: list) -> None:
        """Spool the points of ``batch`` (samples, oldest first)."""
        records = []
        for sample in batch:
            try:
                payload, points = self.encoder.encode(sample)
            except ValueError as e:  # columns the encoder cannot map: a bug, not data
                self.encode_errors += 1
                logger.error("%s: cannot encode the sample of %s at ts %d: %s", self.name,
                             sample.device, sample.ts, e)
                continue
            records.append((sample.ts, payload, points))
        self.spool.append(records)

    # ---------------------------------------------------------------- send

    def start(self) -> "InfluxSink":
        """Start sending; returns self."""
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="sink " + self.name)
        self._thread.start()
        logger.info("%s: pushing every sample (spool %s, %d points waiting)", self.name,
                    self.spool.directory, self.spool.stats().backlog_points)
        return self

    def stop(self, timeout: float = FLUSH_S + 15) -> None:
        """Stop sending, after sending what waits while the database takes it
        (for up to :data:`FLUSH_S`); the rest stays in the spool for the next start."""
        self._stop.set()
        self.spool.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self.spool.close()
        self._status = "stopped"

    def _run(self) -> None:
        settings = self.settings
        client = httpx.Client(timeout=settings.timeout_s, headers=settings.headers(),
                              auth=settings.auth())
        backoff = BACKOFF_START_S
        max_points = settings.batch_points
        flush_until: Optional[float] = None
        try:
            while True:
                if self._stop.is_set():
                    flush_until = flush_until or time.monotonic() + FLUSH_S
                    if self._status != "ok" or time.monotonic() > flush_until:
                        return
                    due = True
                else:
                    due = self.spool.wait_due(settings.batch_points, settings.batch_s, 1.0)
                if not due:
                    continue
                try:
                    batch = self.spool.read(max_points, BATCH_BYTES)
                except OSError as e:
                    logger.error("%s: %s", self.name, e)
                    self._stop.wait(backoff)
                    continue
                if batch is None:
                    if self._stop.is_set():
                        return
                    continue
                try:
                    self._post(client, batch)
                except _Failure as failure:
                    if failure.kind == "too_large" and batch.records > 1:
                        max_points = max(1, batch.points // 2)
                        continue
                    wait = self._failed(failure, batch, backoff)
                    backoff = min(backoff * 2, settings.backoff_max_s)
                    if self._stop.wait(wait):
                        return
                    continue
                self._succeeded(batch)
                backoff = BACKOFF_START_S
                max_points = settings.batch_points
        finally:
            client.close()

    def _post(self, client: httpx.Client, batch: Batch) -> None:
        body = gzip.compress(batch.payload, compresslevel=GZIP_LEVEL)
        try:
            r = client.post(self.settings.write_url, content=body, headers={
                "Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"})
        except httpx.HTTPError as e:
            raise _Failure("retry", "{}: {}".format(type(e).__name__, e) if str(e)
                           else type(e).__name__) from None
        if r.is_success:
            return
        text = " ".join(r.text.split())[:300]
        message = "HTTP {} {}".format(r.status_code, text or r.reason_phrase)
        if r.status_code == 413:
            raise _Failure("too_large", message)
        if r.status_code >= 500 or r.status_code in _RETRY_STATUS:
            raise _Failure("retry", message, retry_after(r.headers.get("Retry-After")))
        raise _Failure("refused", message)

    def _failed(self, failure: _Failure, batch: Batch, backoff: float) -> float:
        """Count and log a failed write; the seconds to wait before the next."""
        stats = self.spool.stats()
        if failure.kind == "refused":
            self.refused += 1
            wait = self.settings.backoff_max_s
            status = "refused"
            explain = "the database refused the write as wrong"
        else:
            self.retries += 1
            wait = failure.wait if failure.wait is not None else backoff
            status = "retrying"
            explain = "write failed"
        message = str(failure)
        # Once per streak (and when the reason changes) as a warning or an error.
        repeated = self._status == status and self.last_error == message
        level = logging.DEBUG if repeated else (
            logging.ERROR if status == "refused" else logging.WARNING)
        logger.log(level, "%s: %s (%s); %d points kept in the spool, next try in %.1f s",
                   self.name, explain, message, stats.backlog_points, wait)
        with self._lock:
            self._status = status
            self.last_error = message
        return wait

    def _succeeded(self, batch: Batch) -> None:
        acked = self.spool.ack(batch)
        with self._lock:
            if acked:
                self.points_sent += batch.points
            self.batches_sent += 1
            self.last_success_ts = int(time.time() * 1000)
            if self._status != "ok":
                logger.info("%s: writing again after %s", self.name, self.last_error)
            self._status = "ok"
            self.last_error = None

    # --------------------------------------------------------------- state

    def state(self) -> SinkState:
        """The sink's :class:`SinkState` now."""
        stats = self.spool.stats()
        age = None if stats.oldest_unsent_ts is None else max(
            0.0, time.time() - stats.oldest_unsent_ts / 1000)
        with self._lock:
            return SinkState(self.name, self._status, self.points_sent, self.batches_sent,
                             self.retries, self.refused, stats.backlog_points,
                             stats.backlog_bytes, age, stats.dropped_points,
                             self.last_error, self.last_success_ts, stats.held_points,
                             stats.caught_up_points, stats.error)

