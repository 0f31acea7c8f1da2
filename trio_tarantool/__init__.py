"""trio_tarantool: a trio-native Tarantool client and connection pool.

Everything public is re-exported here; the modules behind it are private.
"""

from ._balance import BreakerState as BreakerState
from ._balance import CircuitBreaker as CircuitBreaker
from ._balance import LatencyAwareStrategy as LatencyAwareStrategy
from ._balance import LeastOutstandingStrategy as LeastOutstandingStrategy
from ._connection import Connection as Connection
from ._connection import ConnectionStatistics as ConnectionStatistics
from ._connection import PreparedStatement as PreparedStatement
from ._connection import connect as connect
from ._connection import connect_over as connect_over
from ._connection import open_connection as open_connection
from ._crud import CrudError as CrudError
from ._crud import CrudResult as CrudResult
from ._errors import BoxError as BoxError
from ._errors import ClusterConnectWarning as ClusterConnectWarning
from ._errors import ConfigurationError as ConfigurationError
from ._errors import ConnectionClosedError as ConnectionClosedError
from ._errors import CrudModuleError as CrudModuleError
from ._errors import CrudModuleManyError as CrudModuleManyError
from ._errors import DatabaseError as DatabaseError
from ._errors import Error as Error
from ._errors import ErrorCode as ErrorCode
from ._errors import NetworkError as NetworkError
from ._errors import NetworkWarning as NetworkWarning
from ._errors import NotSupportedError as NotSupportedError
from ._errors import PoolTolopogyError as PoolTolopogyError
from ._errors import PoolTolopogyWarning as PoolTolopogyWarning
from ._errors import PoolTopologyError as PoolTopologyError
from ._errors import PoolTopologyWarning as PoolTopologyWarning
from ._errors import ProtocolError as ProtocolError
from ._errors import SchemaError as SchemaError
from ._errors import ServerError as ServerError
from ._errors import TarantoolTimeoutError as TarantoolTimeoutError
from ._iproto import Adjust as Adjust
from ._iproto import Datetime as Datetime
from ._iproto import Interval as Interval
from ._iproto._constants import Iterator as Iterator
from ._lifecycle import ConnectionState as ConnectionState
from ._membership import InstanceAddedEvent as InstanceAddedEvent
from ._membership import InstanceRemovedEvent as InstanceRemovedEvent
from ._observe import InstanceDownEvent as InstanceDownEvent
from ._observe import InstanceUpEvent as InstanceUpEvent
from ._observe import PoolClosedEvent as PoolClosedEvent
from ._observe import PoolEvent as PoolEvent
from ._observe import PoolEvents as PoolEvents
from ._observe import PoolStatistics as PoolStatistics
from ._observe import RetryEvent as RetryEvent
from ._observe import RoleChangeEvent as RoleChangeEvent
from ._pool import ConnectionPool as ConnectionPool
from ._pool import InstanceStatistics as InstanceStatistics
from ._pool import PoolTask as PoolTask
from ._pool import PoolUnit as PoolUnit
from ._pool import open_pool as open_pool
from ._pool import queue_factory as queue_factory
from ._response import Response as Response
from ._schema import Schema as Schema
from ._strategy import InstanceState as InstanceState
from ._strategy import Mode as Mode
from ._strategy import RoundRobinStrategy as RoundRobinStrategy
from ._strategy import Status as Status
from ._strategy import StrategyInterface as StrategyInterface
from ._stream import Isolation as Isolation
from ._stream import Stream as Stream
from ._version import __version__ as __version__


def _fix_module_names() -> None:
    """Make reprs, tracebacks and docs say ``trio_tarantool.X``."""
    for name, obj in list(globals().items()):
        if not name.startswith("_") and getattr(obj, "__module__", "").startswith("trio_tarantool."):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):
                pass


_fix_module_names()
del _fix_module_names
