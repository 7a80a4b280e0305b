"""`make demo`: three hosts, two networks with overlapping subnets, six containers.

Brings up the namespace lab and the controller, creates everything over REST, prints who
reaches whom and what the flow tables hold; then routes between two networks with a router;
then lets containers out to an "outside" namespace on the underlay and publishes a port there;
then labels containers and lets a security policy decide who reaches a database; then, where
Debian's docker.io is installed, two real dockerds use the Docker plugin for a
network across two hosts; then, where Debian's podman is installed, two Podmans use the CNI
plugin; then moves the state to etcd and runs three controller replicas on it, killing the
leader while traffic flows. Shows what the API refuses on the way. Removes all of it.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time

import requests

from flows.pipeline import TABLE_BY_ID, decode_cookie
from ovsdb.config import NEXT_HOP_BINDING_KEY, PHYSICAL_BRIDGE
from security import tokens

from .controller import ControllerProcess
from .dockerd import DOCKERD
from .dockerhost import DockerHost
from .etcd import EtcdCluster
from .lab import Lab
from .messages import tcp_message, udp_message
from .netns import ip
from .outside import WHO_PORT, Outside, next_hop_outside, start_servers
from .podman import PODMAN, LabPodman
from .proc import stop_pid
from .replicas import Replicas
from .traffic import Server, tcp_connects

NETWORKS = [("red", "10.20.0.0/24"), ("blue", "10.20.0.0/24")]  # the same subnet on purpose


def progress(message: str) -> None:
    print(f"-- {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--api-port", type=int, default=8686)
    parser.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the demo needs root (network namespaces, Open vSwitch)", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="ovsfabric-demo-")
    lab = Lab(args.hosts, prefix="ovfdemo")
    progress(f"building {args.hosts} hosts (namespaces, each with ovsdb-server + ovs-vswitchd)")
    lab.up()
    # On the management address, where the Docker plugins in the hosts reach it: with a token.
    token = secrets.token_urlsafe(24)
    controller = ControllerProcess(os.path.join(workdir, "ovsfabric.db"), lab.controller_ip,
                                   api_port=args.api_port, token=token,
                                   api_ip=lab.controller_ip)
    try:
        progress(f"starting the controller (log: {controller.log_path})")
        controller.start()
        run_demo(lab, controller)
        print_refusals(lab, controller, token)
        if os.path.exists(DOCKERD):
            run_docker_demo(lab, controller, token)
        else:
            print("\nDocker: install Debian's docker.io (make setup does) to see two real "
                  "dockerds use the plugin here")
        if os.path.exists(PODMAN):
            run_podman_demo(lab, controller, token)
        else:
            print("\nPodman: install Debian's podman (make setup does) to see two Podmans use "
                  "the CNI plugin here")
        controller.stop()
        run_replicas_demo(lab, controller, token, workdir, args.api_port)
        if args.keep:
            print(f"\nkept: the lab, token {token}")
    finally:
        if not args.keep:
            progress("cleaning up")
            controller.stop()
            lab.down()
    return 0


def run_demo(lab: Lab, controller: ControllerProcess) -> None:
    client = controller.client
    controller.register(lab.hosts)
    progress("hosts registered and connected (OVSDB and OpenFlow)")
    for name, subnet in NETWORKS:
        net = client.create_network(name, subnet)
        progress(f"network {name}: {net['subnet']} VNI {net['vni']} MTU {net['mtu']}")
    containers = []
    for network, _ in NETWORKS:
        for host in lab.hosts:
            label = f"{network}-{host.name}"
            container = lab.add_container(host.name, label[:13])
            ep = client.create_endpoint(network, host.name, port=container.port, name=label)
            container.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"])
            containers.append((label, container, ep))
            progress(f"container {label}: {ep['ip']} {ep['mac']} on {host.name}")
    print_ping_matrix(containers)
    print_flow_summary(lab, client)
    print_traces(client, containers)
    run_routing_demo(lab, client, containers)
    run_outside_demo(lab, client, containers)
    run_policy_demo(client, containers)


def print_ping_matrix(containers) -> None:
    """Who reaches whom. The networks share a subnet, so an address can exist in both: a
    reply only counts when it came from the intended container (its MAC, as the pinging
    container's neighbour table shows)."""
    def reach(pair):
        (_, src, _), (_, _, dst) = pair
        if not src.ping(dst["ip"], count=1, timeout=1):
            return "--"
        neighbour = src.exec("ip", "neigh", "show", dst["ip"]).stdout
        return "ok" if dst["mac"] in neighbour else "other"

    pairs = [(a, b) for a in containers for b in containers if a is not b]
    progress(f"pinging {len(pairs)} pairs")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = dict(zip([(a[0], b[0]) for a, b in pairs], pool.map(reach, pairs)))
    labels = [c[0] for c in containers]
    width = max(map(len, labels)) + 2
    print("\nPing matrix: row pings column's address. ok = the column's container answered; "
          "-- = no answer;\nother = the address answered, but from the row's own network "
          "(the subnets overlap).")
    print(" " * width + "".join(f"{label:>{width}}" for label in labels))
    for src in labels:
        cells = [results.get((src, dst), ".") for dst in labels]
        print(f"{src:<{width}}" + "".join(f"{cell:>{width}}" for cell in cells))
    same = [r for (a, b), r in results.items() if a.split("-")[0] == b.split("-")[0]]
    cross = [r for (a, b), r in results.items() if a.split("-")[0] != b.split("-")[0]]
    print(f"\nwithin a network: {same.count('ok')}/{len(same)} reached; "
          f"across networks: {cross.count('ok')}/{len(cross)} reached")


def print_flow_summary(lab: Lab, client) -> None:
    print("\nFlows per host (table: count by owner):")
    for host in lab.hosts:
        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for line in host.ofctl("dump-flows").splitlines():
            if "actions=" not in line:
                continue
            fields = dict(part.split("=", 1) for part in line.replace(",", " ").split()
                          if "=" in part and part.split("=", 1)[0] in ("cookie", "table"))
            table = TABLE_BY_ID[int(fields.get("table", 0))].name
            owner = decode_cookie(int(fields["cookie"], 16))
            counts[table][owner[0] if owner else "unknown"] += 1
        total = sum(sum(c.values()) for c in counts.values())
        detail = "; ".join(f"{t}: " + ", ".join(f"{n} {k}" for k, n in sorted(c.items()))
                           for t, c in counts.items())
        print(f"  {host.name}: {total} flows  ({detail})")
    status = {h["name"]: h for h in client.hosts()}
    print("\nHost status:", ", ".join(f"{n} connected={s['connected']} dpid={s['dpid']}"
                                       for n, s in status.items()))


def print_traces(client, containers) -> None:
    """Why does A (not) reach B: the controller's packet trace through the live flows."""
    by_label = {label: ep for label, _, ep in containers}
    print("\nTraces (POST /v1/trace, also `ovsfabric trace`):")
    for src, dst in (("red-h1", "red-h3"), ("red-h1", "blue-h2")):
        verdict = client.request("POST", "/v1/trace", {"from": by_label[src]["id"],
                                                      "to": by_label[dst]["id"]})["verdict"]
        where = f" on {verdict['host']} at table {verdict['table']} ({verdict['table_name']})" \
            if verdict["result"] == "dropped" else ""
        print(f"  {src} -> {dst}: {verdict['result']}{where}: {verdict['reason']}")


def run_routing_demo(lab: Lab, client, containers) -> None:
    """A router between red and a new network green: routed on the sending host, TTL
    decremented; blue, with red's very subnet, stays apart."""
    green_net = client.create_network("green", "10.21.0.0/24")
    green = []
    for host in lab.hosts[1:]:
        label = f"green-{host.name}"
        container = lab.add_container(host.name, label)
        ep = client.create_endpoint("green", host.name, port=container.port, name=label)
        container.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"])
        green.append((label, container, ep))
    for label, container, ep in containers + green:
        ip("route", "replace", "default", "via", ep["gateway"], "dev", "eth0",
           netns=container.netns)
    router = client.request("POST", "/v1/routers", {"name": "r1"})
    for network in ("red", "green"):
        router = client.request("POST", "/v1/routers/r1/networks", {"network": network})
    progress(f"router r1 ({router['mac']}) between red and green ({green_net['subnet']})")
    by_label = {label: (container, ep) for label, container, ep in containers + green}
    print("\nRouting: router r1 between red and green (POST /v1/routers, "
          "POST /v1/routers/r1/networks):")
    for src, dst in (("red-h1", "green-h2"), ("green-h3", "red-h2"), ("blue-h1", "green-h2")):
        container, _ = by_label[src]
        target = by_label[dst][1]["ip"]
        out = container.exec("ping", "-n", "-c", "2", "-W", "1", target, check=False).stdout
        ttls = sorted(set(re.findall(r"ttl=(\d+)", out)))
        seen = f"answered, TTL {', '.join(ttls)}" if ttls else "no answer"
        print(f"  {src} pings {dst} ({target}): {seen}")
    for src, dst in (("red-h1", "green-h3"),):
        verdict = client.request("POST", "/v1/trace", {
            "from": by_label[src][1]["id"], "to": by_label[dst][1]["id"], "protocol": "tcp",
            "dst_port": 80})["verdict"]
        print(f"  trace {src} -> {dst} (tcp/80): {verdict['result']}: {verdict['reason']}")
    flows = client.request("GET", "/v1/routers/r1/flows")
    per_host = collections.Counter(f["host"] for f in flows)
    print("  r1's flows: " + ", ".join(f"{h} {n}" for h, n in sorted(per_host.items())) +
          " (router_in per local network, one route per network, on the senders' hosts)")


def run_outside_demo(lab: Lab, client, containers) -> None:
    """Egress from each container's own host, source-NATed to the host's address; a published
    port reached from the outside; a network without egress kept in."""
    by_label = {label: (container, ep) for label, container, ep in containers}
    server = None
    # The outside is on the underlay, so it is the hosts' next hop: each host names it in its
    # physical bridge (its own setup), and the controller resolves its MAC.
    with next_hop_outside(lab) as outside:
        try:
            progress(f"outside {outside.ip} on the underlay; the controller resolves it as the "
                     f"hosts' next hop")
            bound = wait_until(lambda: all(_binding(h) for h in lab.hosts), 15)
            print(f"\nThe way out (an outside namespace {outside.ip} on the underlay, no fabric "
                  f"host; next hop {'resolved on every host' if bound else 'NOT resolved'}):")
            for label in ("red-h1", "red-h3"):
                container, _ = by_label[label]
                seen = _who_am_i(container, outside.ip)
                host = lab.host(label.split("-")[1])
                print(f"  {label} connects to {outside.ip}:{WHO_PORT}: the outside sees "
                      f"{seen or 'nothing'} (host {host.name} is {host.tunnel_ip})")
            client.request("PATCH", "/v1/networks/blue", {"egress": False})
            seen = _who_am_i(by_label["blue-h1"][0], outside.ip)
            print(f"  blue, egress off (PATCH /v1/networks/blue): blue-h1 reaches "
                  f"{seen or 'nothing'}")
            for label in ("red-h1", "blue-h1"):
                verdict = client.request("POST", "/v1/trace", {
                    "from": by_label[label][1]["id"], "to": outside.ip, "protocol": "tcp",
                    "dst_port": WHO_PORT})["verdict"]
                print(f"  trace {label} -> {outside.ip} (tcp/{WHO_PORT}): {verdict['result']}: "
                      f"{verdict['reason']}")
            web, web_ep = by_label["red-h2"]
            server = start_servers(web.netns, 80, 81)
            published = client.request("POST", f"/v1/endpoints/{web_ep['id']}/published",
                                       {"protocol": "tcp", "port": 80, "host_port": 8080})
            answer = _connect(outside, published["host_ip"], 8080)
            print(f"  red-h2's port 80 published on {published['host_ip']}:8080: the outside "
                  f"connects, red-h2 sees it from {answer or 'nothing'}")
            client.request("DELETE", f"/v1/endpoints/{web_ep['id']}/published/tcp/8080")
            print(f"  after DELETE: {_connect(outside, published['host_ip'], 8080) or 'refused'}")
        finally:
            if server is not None:
                stop_pid(server.pid)
                server.wait()


DB_POLICY = {"name": "db", "applies_to": {"selector": {"labels": {"role": "db"}}},
             "ingress": [{"peers": [{"selector": {"labels": {"role": "web"}}}],
                          "ports": [{"protocol": "tcp", "port": 5432}]}]}


def run_policy_demo(client, containers) -> None:
    """A security policy: db (red-h2 and blue-h2, the same address in two networks) accepts
    web on tcp/5432 only, replies pass, the rest is refused; the trace names the rule."""
    by_label = {label: (container, ep) for label, container, ep in containers}
    roles = {"red-h1": "web", "red-h2": "db", "red-h3": "other", "blue-h1": "web",
             "blue-h3": "other"}
    for label, role in roles.items():
        client.set_endpoint_labels(by_label[label][1]["id"], {"role": role})
    servers = [Server(by_label[label][0], tcp=(5432, 22)) for label in ("red-h2", "blue-h2")]
    try:
        policy = client.create_policy(DB_POLICY)
        print("\nSecurity policy (PATCH /v1/endpoints/{id} labels, POST /v1/policies): db "
              "accepts web on tcp/5432; blue-h2, the same address in blue, carries no label:")
        for src, dst, port in (("red-h1", "red-h2", 5432), ("red-h3", "red-h2", 5432),
                               ("red-h1", "red-h2", 22), ("blue-h3", "blue-h2", 5432)):
            ok = tcp_connects(by_label[src][0], by_label[dst][1]["ip"], port)
            print(f"  {src} ({roles[src]}) -> {dst}:{port}: "
                  f"{'connects (and the replies pass)' if ok else 'refused'}")
        verdict = client.trace(by_label["red-h3"][1]["id"], by_label["red-h2"][1]["id"], "tcp",
                               5432)["verdict"]
        print(f"  trace red-h3 -> red-h2 (tcp/5432): {verdict['result']} on "
              f"{verdict.get('host')} in {verdict.get('table_name')}: {verdict['reason']}")
        verdict = client.trace(by_label["red-h1"][1]["id"], by_label["red-h2"][1]["id"], "tcp",
                               5432)["verdict"]
        print(f"  trace red-h1 -> red-h2 (tcp/5432): {verdict['result']}: {verdict['reason']}")
        # OVS folds the datapath's counters into its flows about every half second.
        time.sleep(1.0)
        status = client.policy_status(policy["id"])
        hosts = ", ".join(f"{h['host']} {'realized' if h['realized'] else 'NOT realized'} "
                          f"({h['flows']} flows)" for h in status["hosts"])
        rule = status["rules"][0]
        print(f"  status (GET /v1/policies/db/status): {hosts}; ingress rule 0 allowed "
              f"{rule['packets']} packets, {rule['bytes']} bytes")
        client.delete_policy(policy["id"])
        ok = tcp_connects(by_label["red-h3"][0], by_label["red-h2"][1]["ip"], 22)
        print(f"  policy deleted: red-h3 -> red-h2:22 {'connects' if ok else 'refused'}")
    finally:
        for server in servers:
            server.close()


def _binding(host) -> str:
    return host.vsctl("--if-exists", "get", "Bridge", PHYSICAL_BRIDGE,
                      f"external_ids:{NEXT_HOP_BINDING_KEY}").strip().strip('"')


def wait_until(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


_ASK = ("import socket,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])),"
        "timeout=2);print(s.recv(100).decode().split()[0])")


def _who_am_i(container, address: str) -> str | None:
    """The address the outside's server saw the container's connection come from."""
    done = container.exec("python3", "-c", _ASK, address, str(WHO_PORT), check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def _connect(outside: Outside, address: str, port: int) -> str | None:
    """The address a server in a container saw the outside's connection come from."""
    done = outside.exec("python3", "-c", _ASK, address, str(port), check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def print_refusals(lab: Lab, controller: ControllerProcess, token: str) -> None:
    """What the API refuses, and why: a host's token outside its host, a web page, a port
    that is not an endpoint's."""
    first, second = lab.hosts[0].name, lab.hosts[1].name
    victim = next(ep for ep in controller.client.endpoints() if ep["host"] == first)
    as_second = {"Authorization": f"Bearer {tokens.host_token(token, second)}"}
    admin = {"Authorization": f"Bearer {token}"}
    network = {"name": "from-a-web-page", "subnet": "10.99.0.0/24"}
    before = (controller.client.networks(), controller.client.endpoints())
    tries = [
        (f"{second}'s token deletes an endpoint of {first}",
         requests.delete(f"{controller.url}/v1/endpoints/{victim['id']}", headers=as_second)),
        ("a web page posts text/plain",
         requests.post(f"{controller.url}/v1/networks", data=json.dumps(network),
                       headers=admin | {"Content-Type": "text/plain"})),
        ("a rebound DNS name (Host: evil.example)",
         requests.get(f"{controller.url}/v1/networks", headers=admin | {"Host": "evil.example"})),
        (f"an endpoint on {first}'s underlay bridge port",
         requests.post(f"{controller.url}/v1/endpoints", headers=admin,
                       json={"network": victim["network"], "host": first, "port": "br-phy"})),
    ]
    unchanged = (controller.client.networks(), controller.client.endpoints()) == before
    outcome = "networks and endpoints unchanged" if unchanged else "BUT SOMETHING CHANGED"
    print(f"\nRefused ({outcome}):")
    for what, response in tries:
        print(f"  {what}: {response.status_code} {response.json()['error']}")


def run_docker_demo(lab: Lab, controller: ControllerProcess, token: str) -> None:
    """The README's Docker commands on two hosts, each with its own dockerd and plugin."""
    # Each host's plugin gets its host token: it may manage that host's share only.
    hosts = [DockerHost(host, controller.url, lab.workdir,
                        token=tokens.host_token(token, host.name))
             for host in lab.hosts[:2]]
    try:
        for dh in hosts:
            progress(f"starting the Docker plugin and dockerd on {dh.name}")
            dh.start()
        create = ["network", "create", "-d", "ovsfabric", "--ipam-driver", "ovsfabric",
                  "--subnet", "10.30.0.0/24", "-o", "ovsfabric.network=docker-green",
                  "--ipam-opt", "ovsfabric.network=docker-green", "green"]
        print(f"\nDocker, on {hosts[0].name} and {hosts[1].name}: docker {' '.join(create)}")
        for dh in hosts:
            dh.docker(*create)
        web, db = hosts
        web_ip, db_ip = web.run("web", "green"), db.run("db", "green")
        print(f"  docker run --network green: web {web_ip} on {web.name}, db {db_ip} on "
              f"{db.name}")
        net = controller.client.network("docker-green")
        bound = sorted(a.split(":")[1] for a in net["aliases"] if a.startswith("docker:"))
        print(f"  one fabric network {net['name']} (VNI {net['vni']}), the Docker network "
              f"of {' and '.join(bound)}")
        got = tcp_message(web, "web", db, "db", db_ip, "hello-over-tcp")
        print(f"  web -> db, TCP (nc): db received {got!r}")
        got = udp_message(db, "db", web, "web", web_ip, "hello-over-udp")
        print(f"  db -> web, UDP: web received {got!r}")
        refused = web.refused("network", "create", "-d", "ovsfabric", "--ipam-driver",
                              "ovsfabric", "--subnet", "10.31.0.0/24", "-o",
                              "ovsfabric.netwrok=blue", "typo")
        print(f"  a misspelt option is refused: {refused.splitlines()[-1]}")
        for dh in hosts:
            dh.docker("rm", "-f", *dh.docker("ps", "-aq").split())
            dh.docker("network", "rm", "green")
        left = controller.client.endpoints(network=net["id"])
        print(f"  after rm -f and network rm: {len(left)} endpoints left in "
              f"{net['name']}, aliases {controller.client.network(net['id'])['aliases']}")
    finally:
        for dh in hosts:
            dh.stop()


def run_podman_demo(lab: Lab, controller: ControllerProcess, token: str) -> None:
    """Two Podmans (CNI backend) on two hosts: `ovsfabric cni install` on each, then
    `podman run --network violet` there, the containers pinging each other across hosts."""
    client = controller.client
    net = client.create_network("violet", "10.40.0.0/24")
    podmans = [LabPodman(host, lab.workdir) for host in lab.hosts[:2]]
    try:
        print(f"\nPodman (CNI backend), on {podmans[0].host.name} and {podmans[1].host.name}:")
        for pm in podmans:
            progress(f"starting Podman (its own mount namespace) on {pm.host.name}")
            pm.start()
            install = pm.install_plugin(controller.url, net["name"], token)
            print(f"  on {pm.host.name}: ovsfabric {' '.join(install[:2])} --network "
                  f"{net['name']} --host {pm.host.name} ...")
        web, db = podmans
        web.run("web", net["name"])
        db.run("db", net["name"])
        web_ip, db_ip = web.address("web", net["name"]), db.address("db", net["name"])
        print(f"  podman run --network {net['name']}: web {web_ip} on {web.host.name}, "
              f"db {db_ip} on {db.host.name}")
        for pm, name, peer in ((web, "web", db_ip), (db, "db", web_ip)):
            out = pm.podman("exec", name, "ping", "-c", "3", "-i", "0.2", "-W", "2", peer,
                            check=False).stdout
            summary = next((line for line in out.splitlines() if "transmitted" in line),
                           "no answer")
            print(f"  {name} -> {peer} (ping): {summary}")
        got = tcp_message(web, "web", db, "db", db_ip, "hello-over-tcp")
        print(f"  web -> db, TCP (nc): db received {got or 'nothing'!r}")
        got = udp_message(db, "db", web, "web", web_ip, "hello-over-udp")
        print(f"  db -> web, UDP: web received {got or 'nothing'!r}")
        eps = client.endpoints(network=net["id"])
        print("  endpoints: " + ", ".join(f"{ep['ip']} on {ep['host']} (port {ep['port']}, "
                                           f"labels {ep['labels']})" for ep in eps))
        for pm in podmans:
            pm.podman("rm", "--force", "--time", "2", "web" if pm is web else "db")
        print(f"  after podman rm -f: {len(client.endpoints(network=net['id']))} endpoints "
              f"left in {net['name']}")
    finally:
        for pm in podmans:
            pm.stop()


# The demo's etcd members listen on 24000 + 100 * this + i (lab/etcd.py): clear of the tests'.
DEMO_ETCD_SLOT = 9


def run_replicas_demo(lab: Lab, controller: ControllerProcess, token: str, workdir: str,
                      api_port: int) -> None:
    """The state file copied into a 3-member etcd, three replicas served from it, the leader
    killed during a ping: another one leads, the ping loses nothing."""
    print("\nReplicas on etcd: the state file moved, three controllers serve it")
    with EtcdCluster(os.path.join(workdir, "etcd"), DEMO_ETCD_SLOT) as etcd:
        progress(f"3 etcd members on loopback: {etcd.url}")
        copied = subprocess.run(
            [sys.executable, "-m", "cli.main", "store", "copy", "--from", controller.state,
             "--to", etcd.url, "--json"], capture_output=True, text=True, check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        print(f"  ovsfabric store copy --from {os.path.basename(controller.state)} --to "
              f"{etcd.url}: {json.loads(copied.stdout)['records']} records")
        group = Replicas(workdir, etcd.url, lab.controller_ip, api_port + 10, 6653 + 10,
                         token=token)
        try:
            progress("starting three replicas")
            group.start()
            leader = group.leader()
            client = leader.client
            hosts = [h.name for h in lab.hosts]
            wait_until(lambda: group.masters(leader, hosts), 15)
            cluster = group.cluster()
            print(f"  GET /v1/cluster: leader {cluster['leader']}, members "
                  f"{', '.join(m['name'] for m in cluster['members'])}; every switch knows "
                  f"{len(lab.hosts[0].vsctl('get-controller', 'br-int').split())} controllers")
            follower = next(p for p in group if p is not leader)
            by_name = {ep["name"]: ep for ep in client.endpoints()}
            source = next(c for c in lab.containers if c.port == by_name["red-h1"]["port"])
            made = follower.client.create_endpoint("red", hosts[0], name="via-a-follower")
            print(f"  a follower takes writes too: endpoint {made['name']} {made['ip']}")
            follower.client.delete_endpoint(made["id"])
            _replica_failover(group, leader, hosts, source, by_name["red-h3"]["ip"])
        finally:
            group.stop()


def _replica_failover(group: Replicas, leader, hosts: list[str], source,
                      target_ip: str) -> None:
    ping = source.start_ping(target_ip, interval=0.01, count=400)
    time.sleep(1)
    killed = f"replica{group.processes.index(leader)}"
    leader.kill()
    killed_at = time.monotonic()
    successor = group.leader(other_than=killed, timeout=15)
    wait_until(lambda: group.masters(successor, hosts), 15)
    took = time.monotonic() - killed_at
    print(f"  kill -9 of the leader ({killed}): "
          f"replica{group.processes.index(successor)} is MASTER on every switch "
          f"{took:.2f} s later")
    ping.wait(timeout=30)
    sent, received = source.stop_ping(ping)
    print(f"  a 10 ms ping from red-h1 to red-h3 meanwhile: {sent} sent, {sent - received} "
          f"lost")


if __name__ == "__main__":
    sys.exit(main())
