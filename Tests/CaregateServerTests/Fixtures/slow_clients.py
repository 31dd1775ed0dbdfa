"""Slow and idle clients against a Caregate server, for ConnectionLimitTests.

slowloris HOST PORT HEADS BODIES [SECONDS]: HEADS connections dribble a request head (a header
line every 0.25 s, never finishing) and BODIES more dribble a request body (a byte every 2 s)
for at most SECONDS (15), while /healthz is timed 200 times on fresh connections; prints how
many of each the server closed, when, and the /healthz latencies.

idle PORT SOURCES COUNT [BARRIER]: COUNT connections from each source address (127.0.0.x) that
send nothing; prints how many the server closed at once and how many it still holds. With a
BARRIER directory, once the count is stable it writes BARRIER/ready-PID and holds its connections
until BARRIER/release exists (at most 180 s), so that a test can count what the server holds for
several of these processes at one moment.
"""
import asyncio, json, os, socket, sys, time


async def healthz_latencies(host, port, count):
    latencies, statuses = [], []
    for _ in range(count):
        start = time.perf_counter()
        # Generous timeouts, as in idle(): the test asserts that /healthz answers, not how fast
        # (scripts/load-slow-clients measures that), and the suites beside it load the machine.
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 20)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 20)
        latencies.append((time.perf_counter() - start) * 1000)
        statuses.append(int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0)
        writer.close()
        await asyncio.sleep(0.02)
    return latencies, statuses


async def dribble(host, port, start, lines, interval, deadline):
    """Opens a connection, sends `start`, then one of `lines` every `interval` seconds until the
    server closes it (returns seconds from open to close) or `deadline` passes (returns None)."""
    opened = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(start)
    try:
        await writer.drain()
        while time.perf_counter() - opened < deadline:
            try:
                data = await asyncio.wait_for(reader.read(1024), interval)
                if data == b"":
                    return time.perf_counter() - opened
            except asyncio.TimeoutError:
                writer.write(lines)
                await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        return time.perf_counter() - opened
    finally:
        writer.close()
    return None


async def slowloris(host, port, count, bodies, seconds):
    head = [dribble(host, port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Slow: y\r\n", 0.25, seconds) for _ in range(count)]
    body = [
        dribble(host, port, b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ng",
                b"r", 2.0, seconds)
        for _ in range(bodies)
    ]
    slow = asyncio.gather(*head, *body)
    await asyncio.sleep(0.3)  # the slow connections are open before the timing starts
    latencies, statuses = await healthz_latencies(host, port, 200)
    closed = await slow
    latencies.sort()
    print(json.dumps({
        "healthz_statuses": sorted(set(statuses)),
        "healthz_p50_ms": latencies[len(latencies) // 2],
        "healthz_p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "head_closed": [c for c in closed[:count] if c is not None],
        "body_closed": [c for c in closed[count:] if c is not None],
    }))


def idle(port, sources, count, barrier=None):
    sockets = []
    for source in sources:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind((source, 0))
            s.connect_ex(("127.0.0.1", port))
            sockets.append((source, s))
    # Wait for every connection to be established or refused, then give the server time to
    # close what it will not keep: a socket the server closed reads b"" (or resets).
    deadline = time.time() + 60
    pending = list(sockets)
    while pending and time.time() < deadline:
        still = []
        for source, s in pending:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) not in (0,):
                continue
            try:
                s.getpeername()
            except OSError:
                still.append((source, s))
        pending = still
        if pending:
            time.sleep(0.05)
    # Repeatedly read until the count of open connections stops changing for a second.
    open_by_source, stable_since, last = {}, time.time(), None
    while time.time() - stable_since < 1.0 and time.time() < deadline:
        open_by_source = {source: 0 for source in sources}
        for source, s in sockets:
            try:
                data = s.recv(1)
                if data == b"":
                    continue  # closed by the server
                open_by_source[source] += 1
            except BlockingIOError:
                open_by_source[source] += 1
            except OSError:
                continue  # reset or refused
        if open_by_source != last:
            last, stable_since = dict(open_by_source), time.time()
        time.sleep(0.1)
    statuses = []
    for _ in range(20):
        # A generous timeout: the server answers at once, but the suites running beside this one
        # can keep a two-core machine busy for seconds (a missing answer still fails the test).
        c = socket.create_connection(("127.0.0.1", port), timeout=20)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = c.recv(100)
        statuses.append(int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0)
        c.close()
    if barrier:
        open(os.path.join(barrier, f"ready-{os.getpid()}"), "w").close()
        release, held_until = os.path.join(barrier, "release"), time.time() + 180
        while not os.path.exists(release) and time.time() < held_until:
            time.sleep(0.02)
    print(json.dumps({"attempted": len(sockets), "open": open_by_source, "healthz_statuses": sorted(set(statuses))}))
    sys.stdout.flush()
    for _, s in sockets:
        s.close()


if __name__ == "__main__":
    if sys.argv[1] == "slowloris":
        seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 15
        asyncio.run(slowloris(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), seconds))
    else:
        idle(int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
