"""aio-pika's API over litemq: change ``import aio_pika`` to ``from litemq import aio_pika`` and the program runs
against a file (or a PostgreSQL schema), with no server. ``connect("amqp://...")`` opens ``$LITEMQ_URL`` or
``litemq.db``; ``connect("sqlite:///path")`` names a file. See README, "Coming from aio-pika", for what is
supported and how it differs."""

from . import abc, exceptions
from .channel import Channel, Connection, RobustChannel, RobustConnection
from .exchange import Exchange
from .connection import connect, connect_robust
from .exceptions import AMQPException, MessageProcessError
from .message import DeliveryMode, ExchangeType, IncomingMessage, Message
from .queue import Queue, QueueIterator, RobustQueue

RobustExchange = Exchange

__all__ = ["connect", "connect_robust", "Connection", "RobustConnection", "Channel", "RobustChannel", "Exchange",
           "RobustExchange", "Queue", "RobustQueue", "QueueIterator", "Message", "IncomingMessage",
           "DeliveryMode", "ExchangeType", "AMQPException", "MessageProcessError", "abc", "exceptions"]
