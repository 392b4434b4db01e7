"""pika 1.x's blocking API over litemq: change ``import pika`` to ``from litemq import pika`` and the program
runs against a file, with no server. ``ConnectionParameters`` opens ``$LITEMQ_URL`` or ``litemq.db``; host, port,
credentials and virtual host are ignored. ``URLParameters('sqlite:///path')`` names a file."""

from . import exceptions, frame, spec
from .channel import BlockingChannel, ReturnedMessage
from .connection import BlockingConnection, ConnectionParameters, PlainCredentials, URLParameters
from .spec import BasicProperties, DeliveryMode, ExchangeType

__all__ = [
    "BlockingConnection", "BlockingChannel", "ConnectionParameters", "URLParameters", "PlainCredentials",
    "BasicProperties", "DeliveryMode", "ExchangeType", "ReturnedMessage", "exceptions", "spec", "frame",
]
