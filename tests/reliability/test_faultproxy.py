"""The fault proxy itself, against a local echo server: each fault does what it says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.reliability.faultproxy import FaultProxy

READ_WAIT = 0.3  # how long "nothing arrives" is watched for


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[asyncio.Server, list[int]]]:
    """An echo server on 127.0.0.1 and the count of connections it received."""
    received: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(1)
        await _echo(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server, received


@pytest.fixture
async def proxy(echo: tuple[asyncio.Server, list[int]]) -> AsyncIterator[FaultProxy]:
    port = int(echo[0].sockets[0].getsockname()[1])
    async with FaultProxy("127.0.0.1", port, max_connections=4) as running:
        yield running


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(proxy.host, proxy.port)


async def _roundtrip(proxy: FaultProxy, payload: bytes = b"ping") -> bytes:
    reader, writer = await _connect(proxy)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    finally:
        writer.close()


async def test_pass_through(proxy: FaultProxy) -> None:
    assert await _roundtrip(proxy, b"hello" * 10_000) == b"hello" * 10_000


async def test_latency_and_bandwidth_slow_each_direction(proxy: FaultProxy) -> None:
    proxy.latency = 0.1
    started = time.monotonic()
    assert await _roundtrip(proxy) == b"ping"
    assert time.monotonic() - started >= 0.2  # a lower bound: once each way
    proxy.pass_through()
    proxy.bandwidth = 50_000
    started = time.monotonic()
    assert await _roundtrip(proxy, b"x" * 10_000) == b"x" * 10_000
    assert time.monotonic() - started >= 0.4  # 10 kB at 50 kB/s, each way


async def test_reset_cuts_current_connections(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    writer.write(b"a")
    assert await asyncio.wait_for(reader.readexactly(1), 5) == b"a"
    assert proxy.reset() == 1
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    writer.close()
    assert await _roundtrip(proxy) == b"ping"  # new connections still work


async def test_refuse_then_restore_on_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    await proxy.refuse()
    with pytest.raises(ConnectionRefusedError):
        await _connect(proxy)
    await proxy.restore()
    assert proxy.port == port
    assert await _roundtrip(proxy) == b"ping"


async def test_blackhole_accepts_but_forwards_nothing(
    proxy: FaultProxy, echo: tuple[asyncio.Server, list[int]]
) -> None:
    live_reader, live_writer = await _connect(proxy)
    live_writer.write(b"a")
    assert await asyncio.wait_for(live_reader.readexactly(1), 5) == b"a"
    proxy.blackhole()
    reader, writer = await _connect(proxy)  # accepted...
    for stream_reader, stream_writer in ((reader, writer), (live_reader, live_writer)):
        stream_writer.write(b"lost")
        with pytest.raises(TimeoutError):  # ...but nothing comes back
            await asyncio.wait_for(stream_reader.read(1), READ_WAIT)
    assert len(echo[1]) == 1  # the blackholed connection never reached the server
    proxy.pass_through()
    assert await _roundtrip(proxy) == b"ping"
    for stream_writer in (writer, live_writer):
        stream_writer.close()


async def test_connections_are_bounded(proxy: FaultProxy) -> None:
    held = [await _connect(proxy) for _ in range(4)]
    for reader, writer in held:  # all four are forwarded
        writer.write(b"a")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"a"
    reader, writer = await _connect(proxy)
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    writer.close()
    assert proxy.connections == 4
    for _, held_writer in held:
        held_writer.close()


async def test_upstream_down_resets_the_client(echo: tuple[asyncio.Server, list[int]]) -> None:
    port = int(echo[0].sockets[0].getsockname()[1])
    echo[0].close()
    await echo[0].wait_closed()
    async with FaultProxy("127.0.0.1", port) as proxy:
        reader, writer = await _connect(proxy)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()


async def test_close_ends_every_connection(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    writer.write(b"a")
    await asyncio.wait_for(reader.readexactly(1), 5)
    await proxy.close()
    assert proxy.connections == 0
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    with pytest.raises(ConnectionRefusedError):
        await _connect(proxy)
    writer.close()
