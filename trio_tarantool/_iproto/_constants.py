"""IPROTO numbers: request types, map keys, iterators, extension types.

Every value here is taken from Tarantool's binary protocol documentation. The
module holds numbers only, so both the client and the simulated server in
``sim/`` can share it without sharing any logic.
"""

from __future__ import annotations

import enum
from typing import Final

# -- request and response types (header key ``REQUEST_TYPE``) ----------------
OK: Final = 0x00
SELECT: Final = 0x01
INSERT: Final = 0x02
REPLACE: Final = 0x03
UPDATE: Final = 0x04
DELETE: Final = 0x05
CALL_16: Final = 0x06
AUTH: Final = 0x07
EVAL: Final = 0x08
UPSERT: Final = 0x09
CALL: Final = 0x0A
EXECUTE: Final = 0x0B
NOP: Final = 0x0C
PREPARE: Final = 0x0D
BEGIN: Final = 0x0E
COMMIT: Final = 0x0F
ROLLBACK: Final = 0x10
PING: Final = 0x40
ID: Final = 0x49
WATCH: Final = 0x4A
UNWATCH: Final = 0x4B
EVENT: Final = 0x4C
WATCH_ONCE: Final = 0x4D
CHUNK: Final = 0x80
#: A response type with this bit set is an error; the low 15 bits are its code.
TYPE_ERROR: Final = 0x8000

# -- header keys -------------------------------------------------------------
REQUEST_TYPE: Final = 0x00
SYNC: Final = 0x01
REPLICA_ID: Final = 0x02
LSN: Final = 0x03
TIMESTAMP: Final = 0x04
SCHEMA_VERSION: Final = 0x05
STREAM_ID: Final = 0x0A

# -- body keys ---------------------------------------------------------------
SPACE_ID: Final = 0x10
INDEX_ID: Final = 0x11
LIMIT: Final = 0x12
OFFSET: Final = 0x13
ITERATOR: Final = 0x14
INDEX_BASE: Final = 0x15
KEY: Final = 0x20
TUPLE: Final = 0x21
FUNCTION_NAME: Final = 0x22
USER_NAME: Final = 0x23
EXPR: Final = 0x27
OPS: Final = 0x28
DATA: Final = 0x30
ERROR_24: Final = 0x31
METADATA: Final = 0x32
BIND_METADATA: Final = 0x33
BIND_COUNT: Final = 0x34
SQL_TEXT: Final = 0x40
SQL_BIND: Final = 0x41
SQL_INFO: Final = 0x42
STMT_ID: Final = 0x43
ERROR: Final = 0x52
VERSION: Final = 0x54
FEATURES: Final = 0x55
TIMEOUT: Final = 0x56
EVENT_KEY: Final = 0x57
EVENT_DATA: Final = 0x58
TXN_ISOLATION: Final = 0x59
AUTH_TYPE: Final = 0x5B

# -- SQL_INFO keys -----------------------------------------------------------
SQL_INFO_ROW_COUNT: Final = 0x00
SQL_INFO_AUTOINCREMENT_IDS: Final = 0x01

# -- METADATA field keys -----------------------------------------------------
FIELD_NAME: Final = 0x00
FIELD_TYPE: Final = 0x01
FIELD_COLL: Final = 0x02
FIELD_IS_NULLABLE: Final = 0x03
FIELD_IS_AUTOINCREMENT: Final = 0x04
FIELD_SPAN: Final = 0x05

# -- extended error (body key ERROR, and the MP_ERROR extension) -------------
MP_ERROR_STACK: Final = 0x00
MP_ERROR_TYPE: Final = 0x00
MP_ERROR_FILE: Final = 0x01
MP_ERROR_LINE: Final = 0x02
MP_ERROR_MESSAGE: Final = 0x03
MP_ERROR_ERRNO: Final = 0x04
MP_ERROR_ERRCODE: Final = 0x05
MP_ERROR_FIELDS: Final = 0x06

# -- msgpack extension type ids ----------------------------------------------
EXT_DECIMAL: Final = 1
EXT_UUID: Final = 2
EXT_ERROR: Final = 3
EXT_DATETIME: Final = 4
EXT_INTERVAL: Final = 6

# -- protocol features negotiated by ID (Tarantool >= 2.10) -------------------
FEATURE_STREAMS: Final = 0
FEATURE_TRANSACTIONS: Final = 1
FEATURE_ERROR_EXTENSION: Final = 2
FEATURE_WATCHERS: Final = 3
FEATURE_PAGINATION: Final = 4
FEATURE_SPACE_AND_INDEX_NAMES: Final = 5
FEATURE_WATCH_ONCE: Final = 6
#: The protocol version this client speaks when the server knows IPROTO_ID.
CLIENT_PROTOCOL_VERSION: Final = 3
#: What this client implements, and so announces in IPROTO_ID (no more).
CLIENT_FEATURES: Final = (FEATURE_STREAMS, FEATURE_TRANSACTIONS, FEATURE_ERROR_EXTENSION,
                          FEATURE_WATCHERS, FEATURE_WATCH_ONCE)

# -- system spaces ------------------------------------------------------------
VSPACE_ID: Final = 281
VINDEX_ID: Final = 289

GREETING_SIZE: Final = 128
#: Upper bound on one packet's declared length; anything larger is treated as
#: corrupted framing rather than an allocation request.
MAX_PACKET_SIZE: Final = 1 << 31


class Iterator(enum.IntEnum):
    """Index iterator types, by their IPROTO numbers."""

    EQ = 0
    REQ = 1
    ALL = 2
    LT = 3
    LE = 4
    GE = 5
    GT = 6
    BITS_ALL_SET = 7
    BITS_ANY_SET = 8
    BITS_ALL_NOT_SET = 9
    OVERLAPS = 10
    NEIGHBOR = 11
