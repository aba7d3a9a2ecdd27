"""A faster record parser for kafka-python's fetcher, installed on the SDK's own consumer only.

kafka-python turns every record of a fetched v2 batch into a ``DefaultRecord`` (nine calls to
``decode_varint``, several property lookups per record), then into a ``ConsumerRecord`` (a
deserializer call for the key and one for the value, a generator summing header sizes). That
costs ~10 µs a record in pure Python: a fifth of replaying the log.

:func:`install` swaps in :class:`FastPartitionRecords`, which yields exactly the same
``ConsumerRecord`` tuples (every field) from the same bytes, with the same checks:

* the batch CRC-32C is verified before a batch is read (``check_crcs`` is honoured as is);
* control batches, aborted transactions (``read_committed``), compressed batches, leader
  epochs and next-fetch offsets are handled by kafka-python's own batch code, copied;
* a record whose varints, lengths or header count do not add up raises the same
  :class:`~kafka.errors.CorruptRecordError` as kafka-python's parser;
* anything that is not a plain v2 ``DefaultRecordBatch`` (old message formats), and any
  consumer configured with deserializers, goes through kafka-python's own per-record code.

It relies on private kafka-python internals (3.0): :func:`install` checks their shape and leaves
the consumer untouched when they differ, and the SDK's tests compare both parsers record for
record on the installed version.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from kafka.consumer import fetcher as _fetcher
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.util import decode_varint

__all__ = ["FastPartitionRecords", "install"]

_log = logging.getLogger("consumer_sdk")

_Fetcher: Any = getattr(_fetcher, "Fetcher", None)
_Base: Any = getattr(_Fetcher, "PartitionRecords", object)
_ConsumerRecord: Any = getattr(_fetcher, "ConsumerRecord", None)
_READ_COMMITTED: Any = getattr(getattr(_fetcher, "IsolationLevel", None), "READ_COMMITTED", None)
_TS_MASK = DefaultRecordBatch.TIMESTAMP_TYPE_MASK
_LOG_APPEND_TIME = DefaultRecordBatch.LOG_APPEND_TIME
_new_tuple = tuple.__new__

_EXPECTED_INIT = [
    "self",
    "fetch_offset",
    "tp",
    "records",
    "key_deserializer",
    "value_deserializer",
    "check_crcs",
    "isolation_level",
    "aborted_transactions",
    "metric_aggregator",
    "on_drain",
]
_BATCH_SLOTS = ("_buffer", "_header_data", "_pos", "_num_records", "_next_record_index")


def supported() -> bool:
    """Whether the installed kafka-python has the internals this parser was written against."""
    try:
        params = list(inspect.signature(_Base.__init__).parameters)
        fields = list(_ConsumerRecord._fields)
    except (TypeError, ValueError, AttributeError):
        return False
    return (
        _Base is not object
        and params == _EXPECTED_INIT
        and fields
        == [
            "topic",
            "partition",
            "leader_epoch",
            "offset",
            "timestamp",
            "timestamp_type",
            "key",
            "value",
            "headers",
            "checksum",
            "serialized_key_size",
            "serialized_value_size",
            "serialized_header_size",
        ]
        and _READ_COMMITTED is not None
        and all(s in DefaultRecordBatch.__slots__ for s in _BATCH_SLOTS)
        and callable(getattr(DefaultRecordBatch, "_maybe_uncompress", None))
        and callable(getattr(_Base, "_consume_aborted_transactions_up_to", None))
    )


def install(consumer: Any) -> bool:
    """Make ``consumer`` (a ``KafkaConsumer``) parse fetched records with
    :class:`FastPartitionRecords`; return whether it did. Only this consumer is affected."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not supported():
        _log.debug("kafka-python internals differ: keeping its own record parser")
        return False
    config = getattr(fetcher, "config", {})
    if config.get("key_deserializer") is not None or config.get("value_deserializer") is not None:
        return False
    fetcher.PartitionRecords = FastPartitionRecords
    return True


class FastPartitionRecords(_Base):  # type: ignore[misc]
    """``Fetcher.PartitionRecords`` with a faster per-record loop for v2 batches."""

    def _unpack_records(
        self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Any:
        # Batch-level logic: kafka-python 3.0's ``_unpack_records``, unchanged.
        try:
            batch = records.next_batch()
            last_batch = None
            while batch is not None:
                last_batch = batch

                if self.check_crcs and not batch.validate_crc():
                    raise CorruptRecordError(
                        f"Record batch for partition {self.topic_partition} at offset "
                        f"{batch.base_offset} failed crc check"
                    )

                if batch.magic == 2:
                    self.leader_epoch = batch.leader_epoch
                    if self.isolation_level == _READ_COMMITTED and batch.has_producer_id():
                        self._consume_aborted_transactions_up_to(batch.last_offset)
                        producer_id = batch.producer_id
                        if self._contains_abort_marker(batch):
                            self.aborted_producer_ids.discard(producer_id)
                        elif self._is_batch_aborted(batch):
                            self.next_fetch_offset = batch.next_offset
                            batch = records.next_batch()
                            continue

                    if batch.is_control_batch:
                        self.next_fetch_offset = batch.next_offset
                        batch = records.next_batch()
                        continue

                if type(batch) is DefaultRecordBatch:
                    yield from self._v2_records(tp, batch)
                else:
                    yield from self._stock_records(tp, batch, key_deserializer, value_deserializer)

                batch = records.next_batch()
            else:
                if last_batch and last_batch.magic == 2:
                    self.next_fetch_offset = last_batch.next_offset
                self.drain()
        except StopIteration:
            _log.exception("StopIteration raised unpacking messageset")
            raise RuntimeError("StopIteration raised unpacking messageset") from None

    def _stock_records(
        self, tp: Any, batch: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Any:
        # kafka-python's own per-record loop (old message formats).
        for record in batch:
            if self.check_crcs and not record.validate_crc():
                raise CorruptRecordError(
                    f"Record for partition {self.topic_partition} at offset "
                    f"{record.offset} failed crc check"
                )
            key_size = len(record.key) if record.key is not None else -1
            value_size = len(record.value) if record.value is not None else -1
            key = self._deserialize(key_deserializer, tp.topic, record.headers, record.key)
            value = self._deserialize(value_deserializer, tp.topic, record.headers, record.value)
            headers = record.headers
            header_size = (
                sum(
                    len(h_key.encode("utf-8")) + (len(h_val) if h_val is not None else 0)
                    for h_key, h_val in headers
                )
                if headers
                else -1
            )
            self.records_read += 1
            self.bytes_read += record.size_in_bytes
            self.next_fetch_offset = record.offset + 1
            yield _ConsumerRecord(
                tp.topic,
                tp.partition,
                self.leader_epoch,
                record.offset,
                record.timestamp,
                record.timestamp_type,
                key,
                value,
                record.headers,
                record.checksum,
                key_size,
                value_size,
                header_size,
            )

    def _v2_records(self, tp: Any, batch: DefaultRecordBatch) -> Any:
        """The records of one v2 batch: ``DefaultRecordBatch._read_msg`` inlined (one-byte
        varints decoded in place), with the same structural checks and errors."""
        batch._maybe_uncompress()
        buf: bytearray = batch._buffer
        pos: int = batch._pos
        header = batch._header_data
        base_offset = header[0]
        ts_type = 1 if header[5] & _TS_MASK else 0
        first_ts = header[7]
        append_ts = header[8] if ts_type == _LOG_APPEND_TIME else None
        topic = tp.topic
        partition = tp.partition
        epoch = self.leader_epoch
        consumer_record = _ConsumerRecord
        varint = decode_varint
        for _ in range(batch._num_records - batch._next_record_index):
            try:
                b = buf[pos]
                if b < 0x80:
                    length = (b >> 1) ^ -(b & 1)
                    pos += 1
                elif buf[pos + 1] < 0x80:
                    b = (b & 0x7F) | (buf[pos + 1] << 7)
                    length = (b >> 1) ^ -(b & 1)
                    pos += 2
                else:
                    length, pos = varint(buf, pos)
                start = pos
                if buf[pos] < 0x80:  # attributes, unused
                    pos += 1
                else:
                    _, pos = varint(buf, pos)
                b = buf[pos]
                if b < 0x80:
                    ts_delta = (b >> 1) ^ -(b & 1)
                    pos += 1
                elif buf[pos + 1] < 0x80:
                    b = (b & 0x7F) | (buf[pos + 1] << 7)
                    ts_delta = (b >> 1) ^ -(b & 1)
                    pos += 2
                else:
                    ts_delta, pos = varint(buf, pos)
                b = buf[pos]
                if b < 0x80:
                    offset_delta = (b >> 1) ^ -(b & 1)
                    pos += 1
                else:
                    offset_delta, pos = varint(buf, pos)
                b = buf[pos]
                if b < 0x80:
                    key_len = (b >> 1) ^ -(b & 1)
                    pos += 1
                else:
                    key_len, pos = varint(buf, pos)
                if key_len >= 0:
                    key: bytes | None = bytes(buf[pos : pos + key_len])
                    pos += key_len
                else:
                    key = None
                b = buf[pos]
                if b < 0x80:
                    value_len = (b >> 1) ^ -(b & 1)
                    pos += 1
                elif buf[pos + 1] < 0x80:
                    b = (b & 0x7F) | (buf[pos + 1] << 7)
                    value_len = (b >> 1) ^ -(b & 1)
                    pos += 2
                else:
                    value_len, pos = varint(buf, pos)
                if value_len >= 0:
                    value: bytes | None = bytes(buf[pos : pos + value_len])
                    pos += value_len
                else:
                    value = None
                b = buf[pos]
                if b < 0x80:
                    count = (b >> 1) ^ -(b & 1)
                    pos += 1
                else:
                    count, pos = varint(buf, pos)
                if count < 0:
                    raise CorruptRecordError(f"Found invalid number of record headers {count}")
                headers: list[tuple[str, bytes | None]] = []
                header_size = 0
                while count:
                    b = buf[pos]
                    if b < 0x80:
                        h_key_len = (b >> 1) ^ -(b & 1)
                        pos += 1
                    else:
                        h_key_len, pos = varint(buf, pos)
                    if h_key_len < 0:
                        raise CorruptRecordError(f"Invalid negative header key size {h_key_len}")
                    h_key = buf[pos : pos + h_key_len].decode("utf-8")
                    pos += h_key_len
                    b = buf[pos]
                    if b < 0x80:
                        h_value_len = (b >> 1) ^ -(b & 1)
                        pos += 1
                    else:
                        h_value_len, pos = varint(buf, pos)
                    if h_value_len >= 0:
                        h_value = bytes(buf[pos : pos + h_value_len])
                        pos += h_value_len
                        header_size += len(h_key.encode("utf-8")) + len(h_value)
                        headers.append((h_key, h_value))
                    else:
                        header_size += len(h_key.encode("utf-8"))
                        headers.append((h_key, None))
                    count -= 1
                if pos - start != length:
                    raise CorruptRecordError(
                        f"Invalid record size: expected to read {length} bytes in record "
                        f"payload, but instead read {pos - start}"
                    )
            except (ValueError, IndexError) as err:
                raise CorruptRecordError(f"Found invalid record structure: {err!r}") from None
            offset = base_offset + offset_delta
            self.records_read += 1
            self.bytes_read += length
            self.next_fetch_offset = offset + 1
            yield _new_tuple(
                consumer_record,
                (
                    topic,
                    partition,
                    epoch,
                    offset,
                    first_ts + ts_delta if append_ts is None else append_ts,
                    ts_type,
                    key,
                    value,
                    headers,
                    None,
                    len(key) if key is not None else -1,
                    len(value) if value is not None else -1,
                    header_size if headers else -1,
                ),
            )
        batch._pos = pos
        batch._next_record_index = batch._num_records
        if pos != len(buf):
            raise CorruptRecordError(
                f"{len(buf) - pos} unconsumed bytes after all records consumed"
            )
