"""Sans-I/O IPROTO: encoders, the incremental decoder, greeting, ext types.

Nothing in this package does I/O or imports trio; the connection feeds it bytes
and sends what it returns.
"""

from . import _constants as constants
from ._decoder import Decoder, Reply
from ._ext import Adjust, Datetime, ExtDecodeError, Interval
from ._greeting import Greeting, GreetingError, chap_sha1_scramble, parse_greeting
from ._handshake import parse_id_reply
from ._requests import Encoder

__all__ = [
    "Adjust",
    "Datetime",
    "Decoder",
    "Encoder",
    "ExtDecodeError",
    "Greeting",
    "GreetingError",
    "Interval",
    "Reply",
    "chap_sha1_scramble",
    "constants",
    "parse_greeting",
    "parse_id_reply",
]
