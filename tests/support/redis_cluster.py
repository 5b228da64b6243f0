"""A real Redis Cluster of redis-server processes on free loopback ports.

Built by hand the way ``redis-cli --cluster create`` builds one, so a test
knows exactly which node owns what: every primary is given an equal range of
the 16384 slots (``CLUSTER ADDSLOTSRANGE``), every node meets the first
(``CLUSTER MEET``), each replica follows its primary (``CLUSTER REPLICATE``),
and the cluster counts as up when every node says ``cluster_state:ok``, knows
every other node and agrees on who owns every slot (about 2 s).

Each node gets its own data directory (its ``nodes.conf``) and an explicit
cluster bus port: the default, port + 10000, may be taken or past 65535.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer, free_port, redis_server_binary

__all__ = ["ClusterNode", "RedisCluster", "slot_ranges"]

SLOTS = 16384


def slot_ranges(primaries: int) -> list[tuple[int, int]]:
    """Equal, contiguous slot ranges (first, last), as ``redis-cli --cluster create`` gives."""
    bounds = [SLOTS * i // primaries for i in range(primaries + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(primaries)]


@dataclass
class ClusterNode:
    """One node: its server process and, once the cluster is built, its id and role."""

    server: RedisServer
    bus_port: int
    node_id: str = ""
    replica_of: ClusterNode | None = None
    slots: tuple[int, int] | None = None
    killed: bool = field(default=False)

    @property
    def port(self) -> int:
        return self.server.port

    def client(self, timeout: float = 2) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=timeout, decode_responses=True
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last save, the cluster finds out by timeout."""
        assert self.server.process is not None
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait(timeout=10)
        self.server.process = None
        self.killed = True


class RedisCluster:
    """``primaries`` primaries over equal slot ranges, each with ``replicas`` replicas."""

    def __init__(
        self,
        data_dir: Path,
        *,
        primaries: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 1000,
        binary: str | None = None,
        startup_s: float = 20,
    ) -> None:
        self.binary = binary or redis_server_binary()
        self.data_dir = data_dir
        self.startup_s = startup_s
        self.node_timeout_ms = node_timeout_ms
        self.primaries: list[ClusterNode] = []
        self.replicas: list[ClusterNode] = []
        for i in range(primaries * (1 + replicas)):
            bus_port = free_port()
            extra = (
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                str(bus_port),
                "--cluster-node-timeout",
                str(node_timeout_ms),
                # A replica takes over however long it was cut off: the tests kill primaries.
                "--cluster-replica-validity-factor",
                "0",
                "--cluster-allow-replica-migration",
                "no",
                # A replica's first sync starts at once, not after the default 5 s wait.
                "--repl-diskless-sync-delay",
                "0",
                # CLUSTER SLOTS lists a replica once its offset moved: the primary's ping moves it.
                "--repl-ping-replica-period",
                "1",
            )
            server = RedisServer(data_dir / f"node{i}", extra=extra, binary=self.binary)
            node = ClusterNode(server, bus_port)
            (self.primaries if i < primaries else self.replicas).append(node)
        for i, replica in enumerate(self.replicas):
            replica.replica_of = self.primaries[i % primaries]

    @property
    def nodes(self) -> list[ClusterNode]:
        return [*self.primaries, *self.replicas]

    @property
    def url(self) -> str:
        """A seed URL: the cluster client discovers the other nodes from it."""
        return f"redis://127.0.0.1:{self.primaries[0].port}/0"

    def start(self) -> None:
        """Start, join and wait for the cluster; on any failure, stop every node started."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for node in self.nodes:
            node.server.start()
        for node in self.nodes:
            with node.client() as client:
                node.node_id = str(client.execute_command("CLUSTER MYID"))
        for node, (first, last) in zip(
            self.primaries, slot_ranges(len(self.primaries)), strict=True
        ):
            node.slots = (first, last)
            with node.client() as client:
                client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
        seed = self.primaries[0]
        for node in self.nodes[1:]:
            with node.client() as client:
                client.execute_command("CLUSTER MEET", "127.0.0.1", seed.port, seed.bus_port)
        self._wait("every node knows every other", self._all_known)
        for replica in self.replicas:
            assert replica.replica_of is not None
            with replica.client() as client:
                client.execute_command("CLUSTER REPLICATE", replica.replica_of.node_id)
        self._wait("cluster_state:ok on every node, one owner per slot", self._healthy)

    def stop(self) -> None:
        for node in self.nodes:
            node.server.stop()

    def _wait(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)  # gossip between external processes: nothing to await
        raise RuntimeError(f"Redis Cluster not up within {self.startup_s:g} s: {what}")

    def live(self) -> list[ClusterNode]:
        return [n for n in self.nodes if not n.killed]

    def _all_known(self) -> bool:
        for node in self.live():
            with node.client() as client:
                info = client.execute_command("CLUSTER INFO")
            if _field(info, "cluster_known_nodes") != str(len(self.nodes)):
                return False
        return True

    def _healthy(self) -> bool:
        try:
            return self._healthy_now()
        except redis.RedisError:
            return False

    def _healthy_now(self) -> bool:
        owners: set[tuple[int, int, int]] | None = None
        for node in self.live():
            with node.client() as client:
                if _field(client.execute_command("CLUSTER INFO"), "cluster_state") != "ok":
                    return False
                rows = client.execute_command("CLUSTER SLOTS")
                linked = client.info("replication").get("master_link_status", "up")
                if node.replica_of is not None and linked != "up":
                    return False
            # Every range served by its primary and by as many replicas as are alive.
            if any(len(r) != 3 + self._replicas_per_primary() for r in rows):
                return False
            seen = {(int(r[0]), int(r[1]), int(r[2][1])) for r in rows}
            if owners is None:
                owners = seen
            elif seen != owners:
                return False
        return owners is not None and sum(b - a + 1 for a, b, _ in owners) == SLOTS

    def _replicas_per_primary(self) -> int:
        return len([r for r in self.replicas if not r.killed]) // max(1, len(self.primaries))

    def owner_of(self, slot: int) -> ClusterNode:
        """The node that serves ``slot`` now (after a failover, a former replica)."""
        for node in self.live():
            with node.client() as client:
                for first, last, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                    if int(first) <= slot <= int(last):
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no live node serves slot {slot}")

    def wait_failover(self, killed: ClusterNode) -> ClusterNode:
        """Wait until a replica of ``killed`` serves its slots; returns that replica."""
        assert killed.slots is not None
        first = killed.slots[0]
        promoted: list[ClusterNode] = []

        def taken_over() -> bool:
            try:
                owner = self.owner_of(first)
                with owner.client() as client:
                    state = _field(client.execute_command("CLUSTER INFO"), "cluster_state")
            except (redis.RedisError, LookupError):
                return False
            if owner is killed or state != "ok":
                return False
            promoted[:] = [owner]
            return True

        self._wait(f"a replica of port {killed.port} promoted", taken_over)
        return promoted[0]

    def keys_per_primary(self, pattern: str = "*") -> dict[int, int]:
        """How many keys matching ``pattern`` each live primary holds, by port."""
        counts: dict[int, int] = {}
        for node in self.live():
            with node.client() as client:
                if client.info("replication").get("role") != "master":
                    continue
                counts[node.port] = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
        return counts


def _field(info: object, name: str) -> str:
    """One field of CLUSTER INFO, which redis-py answers as a dict (text on older versions)."""
    if isinstance(info, dict):
        return str(info.get(name, ""))
    for line in str(info).splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return ""
