"""The embedded MQTT broker: an MQTT 3.1.1 broker inside this Python process (DESIGN.md, "Real
components": the default for `make demo`, no system install). Tests and production use mosquitto;
only the URL changes.

    from simulator.broker import EmbeddedBroker, parse_url

    with EmbeddedBroker() as broker:          # 127.0.0.1, a free port
        broker.url                            # "mqtt://127.0.0.1:PORT"
        broker.host, broker.port

    broker = EmbeddedBroker(port=1883).start()
    ...
    broker.stop()                             # idempotent

    parse_url("mqtt://127.0.0.1:1883") == ("127.0.0.1", 1883)
    parse_url("mqtt://broker.local") == ("broker.local", 1883)

The broker is amqtt's (PyPI `amqtt`, asyncio), run on its own event loop in a background thread.
It is configured minimal: one TCP listener, every client accepted, no websockets, no `$SYS`
topics, no packet/event logging plugins. Sessions, subscriptions, retained messages and the
QoS 1/2 messages queued for an offline persistent session (clean_session=False) live in memory:
they survive a client's reconnect, not a stop of the broker.

Why a plugin of our own for authentication: amqtt's stock `AnonymousAuthPlugin` marks every
session it lets in as anonymous, and amqtt neither keeps an anonymous session after it
disconnects nor queues messages for it, so clean_session=False would silently mean nothing.
`_AcceptAllAuthPlugin` lets every client in without that mark.

`_Broker` corrects a few amqtt 0.12 behaviours that clients would notice (see its docstring:
retained messages sent on connect to clients that never subscribed to them, the retain flag on
messages queued while offline, a clean session resumable for a second after it ended, sockets
left open). Known amqtt 0.12 behaviours left as they are (mosquitto, which the interop tests use,
does neither):
- a message is delivered at the subscription's QoS, not min(publish QoS, subscription QoS), so a
  QoS 0 publish reaches a QoS 1 subscriber as QoS 1 (more delivery, never less);
- subscribing again to the same filter keeps the first subscription's QoS.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any
from urllib.parse import urlsplit

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

__all__ = ["DEFAULT_PORT", "EmbeddedBroker", "EmbeddedBrokerError", "parse_url"]

DEFAULT_PORT = 1883
_SCHEME = "mqtt"
# loggers of the broker library and of the state-machine library it uses, which logs every
# session's connect/disconnect at INFO
_LIBRARY_LOGGERS = ("amqtt", "transitions")
_SUBSCRIBE_FAILURE = 0x80


class _NoiseFilter(logging.Filter):
    """Drops amqtt's ERROR/WARNING records that are no failure here: a connection closed before
    sending anything (a port probe, such as a readiness check), and the traceback of a listener
    that could not bind (start() raises EmbeddedBrokerError saying so)."""

    NOISE = ("No data to decode MQTT packet fixed header", "Broker startup failed")

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(noise in message for noise in self.NOISE)


_NOISE_FILTER = _NoiseFilter()


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not start (port taken, bad address, library failure)."""


def parse_url(url: str, schemes: dict | None = None) -> tuple[str, int]:
    """("host", port) from "mqtt://host:port"; the port defaults to 1883. schemes: the schemes
    accepted, each with its default port (default {"mqtt": 1883}; the collector also takes
    "mqtts": 8883).

    Raises ValueError, naming the URL, for another scheme (mqtts, ws, tcp, ...), a missing host,
    a port that is not a number in 1..65535, or credentials, a path, a query or a fragment.
    """
    schemes = schemes or {_SCHEME: DEFAULT_PORT}
    expected = " or ".join("%s://host[:port]" % s for s in schemes) if len(schemes) > 1 else "%s://host:port" % _SCHEME
    if not isinstance(url, str):
        raise ValueError("broker URL must be a string like mqtt://host:1883, not %r" % (url,))
    parts = urlsplit(url)
    if "://" not in url or not parts.scheme:
        raise ValueError("broker URL %r has no scheme: expected %s" % (url, expected))
    if parts.scheme not in schemes:
        raise ValueError("broker URL %r: unsupported scheme %r, %s" % (
            url, parts.scheme, "expected " + expected if len(schemes) > 1 else "only %s is supported" % expected))
    if "@" in parts.netloc:
        raise ValueError("broker URL %r: credentials in the URL are not supported" % url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("broker URL %r: expected %s with nothing after the port" % (url, expected))
    host = parts.hostname
    if not host:
        raise ValueError("broker URL %r has no host: expected %s" % (url, expected))
    try:
        port = parts.port
    except ValueError:
        raise ValueError("broker URL %r: the port must be a number in 1..65535" % url) from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise ValueError("broker URL %r: empty port after ':' (leave out ':' for %d)"
                             % (url, schemes[parts.scheme]))
        return host, schemes[parts.scheme]
    if not 1 <= port <= 65535:
        raise ValueError("broker URL %r: the port must be a number in 1..65535" % url)
    return host, port


class _AcceptAllAuthPlugin(BaseAuthPlugin):
    """Accepts every client, with or without a username, and does not mark the session
    anonymous, so that amqtt keeps clean_session=False sessions and their queued messages."""

    async def authenticate(self, *, session: Session) -> bool:  # noqa: ARG002
        return True


class _Broker(Broker):
    """amqtt's broker with small corrections, so that it behaves like mosquitto where a client
    or the host process can tell (each one has a test in tests/test_embedded_broker.py):

    - retained messages are sent only as the answer to a SUBSCRIBE [MQTT-3.3.1-6]. amqtt 0.12 also
      sends, to every client that connects, the retained messages matching *any* client's
      subscription filters (a node would get every other node's retained status on connect);
    - messages queued for an offline persistent session are delivered with the retain flag
      clear (amqtt sets it; they are not retained messages [MQTT-3.3.1-9]);
    - a clean session ends with its connection [MQTT-3.1.2-6]. amqtt keeps it up to a second,
      and a clean_session=False CONNECT in that second resumed it (session present, and not
      persistent after all);
    - every connection's socket is closed when its handler ends (amqtt leaves it open when the
      peer went first), and at shutdown every connection left (one that never sent CONNECT:
      amqtt has no CONNECT timeout) is dropped before amqtt waits for its listeners to close,
      which from Python 3.12 on waits for all their connections to end.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (client id, filter) of subscriptions just granted, whose retained messages are due
        self._granted: set[tuple[str | None, str]] = set()
        self._connections: set[asyncio.Task[Any]] = set()  # every connection's handler task
        self._dropping: set[asyncio.Task[Any]] = set()  # those cancelled by drop_connections

    # retained messages: only for a SUBSCRIBE
    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        granted = await super().add_subscription(subscription, session)
        if granted != _SUBSCRIBE_FAILURE:
            self._granted.add((session.client_id, subscription[0]))
        return granted

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Session) -> None:
        key = (session.client_id, subscription[0])
        if key not in self._granted:
            return  # amqtt's replay at connect time, not the answer to a SUBSCRIBE
        self._granted.discard(key)
        await super()._publish_retained_messages_for_subscription(subscription, session)

    # queued messages: not flagged retained
    async def _publish_session_retained_messages(self, session: Session) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = []
        while not session.retained_messages.empty():
            queued = session.retained_messages.get_nowait()
            tasks.append(asyncio.ensure_future(
                handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)))
        if tasks:
            await asyncio.wait(tasks)

    # clean sessions: gone with the connection
    async def _handle_disconnect(self, client_session: Session, handler: Any,
                                 disconnect_waiter: asyncio.Future[Any]) -> None:
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)
        client_id = client_session.client_id
        if client_session.clean_session and client_id is not None \
                and self._sessions.get(client_id, (None, None))[0] is client_session:
            await self._delete_session(client_id)

    # connections: closed, and tracked
    async def stream_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               listener_name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await super().stream_connected(reader, writer, listener_name)
        except asyncio.CancelledError:
            if task not in self._dropping:
                raise
            # dropped by drop_connections: end normally, as asyncio (3.11, 3.12.1) logs a
            # cancelled connection callback as an error
        finally:
            self._connections.discard(task)
            self._dropping.discard(task)
            writer.close()

    async def _shutdown_broadcast_loop(self) -> None:
        # amqtt's shutdown calls this after closing the sessions it knows of and before it waits
        # for its listeners to close, which from Python 3.12 on waits for every connection: drop
        # any left (one whose CONNECT was being handled while the sessions were closed)
        await super()._shutdown_broadcast_loop()
        await self.drop_connections()

    async def drop_connections(self) -> None:
        """Cancel the connections' handlers (their sockets close as they end)."""
        tasks = list(self._connections)
        self._dropping.update(tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _plugin_path(cls: type) -> str:
    return "%s.%s" % (cls.__module__, cls.__qualname__)


class EmbeddedBroker:
    """An MQTT 3.1.1 broker (amqtt) on its own asyncio loop in a background thread.

    `port=None` or `0` takes a free port, chosen by the kernel when the listener binds (no race);
    a start() after stop() listens on the same port again (a broker outage, same URL), with
    no sessions or retained messages left from before. `log_level` is applied to the broker library's loggers
    at start (default WARNING); pass None to leave logging configuration alone.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *,
                 log_level: int | None = logging.WARNING,
                 start_timeout_s: float = 10.0,
                 stop_timeout_s: float = 10.0) -> None:
        if port is not None and not 0 <= port <= 65535:
            raise ValueError("port must be in 0..65535 (0 or None for a free port), not %r" % port)
        self.host = host
        self._requested_port = port or 0
        self._port: int | None = None
        self.log_level = log_level
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._stop_wanted = threading.Event()
        self._error: BaseException | None = None

    # -- address -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the broker listens on (known once started; kept after stop)."""
        if self._port is None:
            if self._requested_port:
                return self._requested_port
            raise RuntimeError("the embedded broker has no port yet: start() it first")
        return self._port

    @property
    def url(self) -> str:
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d" % (_SCHEME, host, self.port)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set() \
            and self._error is None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> "EmbeddedBroker":
        """Start the broker; returns once its listener accepts connections.

        Raises EmbeddedBrokerError if it cannot (port in use, ...), RuntimeError if running."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the embedded broker is already running on %s" % self.url)
            if self.log_level is not None:
                for name in _LIBRARY_LOGGERS:
                    logging.getLogger(name).setLevel(self.log_level)
            broker_logger = logging.getLogger("amqtt.broker")
            if _NOISE_FILTER not in broker_logger.filters:
                broker_logger.addFilter(_NOISE_FILTER)
            self._ready.clear()
            self._stop_wanted.clear()
            self._error = None
            thread = threading.Thread(target=self._thread_main, name="townsense-embedded-broker",
                                      daemon=True)
            self._thread = thread
            thread.start()
        if not self._ready.wait(self.start_timeout_s):
            self.stop()
            raise EmbeddedBrokerError("the embedded broker did not start within %.1f s"
                                      % self.start_timeout_s)
        if self._error is not None:
            error = self._error
            self._join()
            raise EmbeddedBrokerError("the embedded broker could not listen on %s:%s: %s" % (
                self.host, self._bind_port() or "(free port)", _root_cause(error))) from error
        return self

    def stop(self) -> None:
        """Stop the broker, close its connections and end its thread. Safe to call twice."""
        with self._lock:
            thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
            if thread is None:
                return
            self._stop_wanted.set()
            if loop is not None and stop_requested is not None:
                try:
                    loop.call_soon_threadsafe(stop_requested.set)
                except RuntimeError:  # the loop already closed (the broker failed on its own)
                    pass
        self._join()

    def _join(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(self.stop_timeout_s + 5.0)
            if thread.is_alive():
                raise RuntimeError("the embedded broker thread did not end within %.1f s"
                                   % (self.stop_timeout_s + 5.0))
        with self._lock:
            self._thread = None
            self._loop = None
            self._stop_requested = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if (self._port or self._requested_port) else "%s:(free port)" % self.host
        return "EmbeddedBroker(%s, %s)" % (where, "running" if self.running else "stopped")

    # -- the broker's thread -------------------------------------------------------------------

    def _bind_port(self) -> int:
        return self._port or self._requested_port

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {
                "default": {"type": "tcp", "bind": "%s:%d" % (self.host, self._bind_port())},
            },
            # replaces amqtt's defaults (anonymous auth, $SYS every 20 s, event/packet loggers)
            "plugins": {_plugin_path(_AcceptAllAuthPlugin): {}},
        }

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(loop))
        except BaseException as exc:  # noqa: BLE001 - handed to start() / logged
            if not self._ready.is_set():
                self._error = exc
            else:
                logging.getLogger(__name__).exception("embedded broker failed")
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
                self._ready.set()  # wake a start() still waiting, whatever happened

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        stop_requested = asyncio.Event()
        broker = _Broker(self._config(), loop=loop)
        try:
            await broker.start()
        except BaseException:
            await _close_listeners(broker)
            raise
        self._port = _bound_port(broker)
        with self._lock:
            self._loop, self._stop_requested = loop, stop_requested
            if self._stop_wanted.is_set():  # stop() came before the loop was published
                stop_requested.set()
        self._ready.set()
        await stop_requested.wait()
        await _stop_accepting(broker)  # no new connections while the others are closed
        try:
            await asyncio.wait_for(broker.shutdown(), self.stop_timeout_s)
        except asyncio.TimeoutError:
            logging.getLogger(__name__).warning(
                "embedded broker shutdown took over %.1f s; closing what is left",
                self.stop_timeout_s)
        finally:
            await broker.drop_connections()
            await _close_listeners(broker)


def _bound_port(broker: Broker) -> int:
    """The port the listener really bound (the kernel's choice when asked for port 0)."""
    server = broker._servers["default"].instance  # noqa: SLF001 - amqtt has no public accessor
    return int(server.sockets[0].getsockname()[1])


def _listeners(broker: Broker) -> list[Any]:
    servers = getattr(broker, "_servers", {}).values()  # amqtt has no public accessor
    return [s.instance for s in servers if getattr(s, "instance", None) is not None]


async def _stop_accepting(broker: Broker) -> None:
    """Close the listeners without losing a connection accepted at that moment: asyncio sets up
    an accepted connection a loop iteration or two after accept(), and a Server.close() in
    between leaks its socket (CPython gh-109564, Python 3.12+). So stop polling the listening
    sockets first, let the accepted connections be set up, then close."""
    loop = asyncio.get_running_loop()
    listeners = _listeners(broker)
    for listener in listeners:
        for sock in listener.sockets:
            loop.remove_reader(sock.fileno())
    for _ in range(3):
        await asyncio.sleep(0)
    for listener in listeners:
        listener.close()


async def _close_listeners(broker: Broker) -> None:
    for listener in _listeners(broker):
        listener.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc
