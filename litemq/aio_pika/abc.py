"""aio-pika's ``aio_pika.abc`` names, for the annotations programs write with them: here each is the class it
stands for (litemq has one implementation of each, so there is nothing abstract to keep apart)."""

from .channel import Channel, Connection, RobustChannel, RobustConnection
from .exchange import Exchange
from .message import IncomingMessage, Message
from .queue import Queue, QueueIterator, RobustQueue

AbstractConnection = Connection
AbstractRobustConnection = RobustConnection
AbstractChannel = Channel
AbstractRobustChannel = RobustChannel
AbstractExchange = Exchange
AbstractRobustExchange = Exchange
AbstractQueue = Queue
AbstractRobustQueue = RobustQueue
AbstractQueueIterator = QueueIterator
AbstractMessage = Message
AbstractIncomingMessage = IncomingMessage

__all__ = ["AbstractConnection", "AbstractRobustConnection", "AbstractChannel", "AbstractRobustChannel",
           "AbstractExchange", "AbstractRobustExchange", "AbstractQueue", "AbstractRobustQueue",
           "AbstractQueueIterator", "AbstractMessage", "AbstractIncomingMessage"]
