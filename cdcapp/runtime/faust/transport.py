"""The transport that gives cdcapp's app its own consumer and producer classes."""

from __future__ import annotations

from faust.transport.drivers import aiokafka as faust_aiokafka

from cdcapp.runtime.faust.consumer import Consumer
from cdcapp.runtime.faust.producer import Producer


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer
