"""Security policies, ovsfabric and OVN (ACLs on port groups) side by side, in one process and
one run (root, OVS, OVN, iperf3).

The labs are compare.py's (bench/sides.py: one lab per system, identical topology, network
`bench`); every endpoint here carries labels. Both systems are driven by the same policy
documents, ovsfabric's REST contract (`POST /v1/policies`); on OVN each one becomes what OVN
users write (ovn-kubernetes does the same): a port group of the endpoints the policy
selects, a default-deny ACL (`drop`, priority 1000) per direction the policy governs and one
`allow-related` ACL per rule (1001), its peers the address sets of other port groups
(`$<group>_ip4`, one group per peer selector) or CIDRs; one northbound transaction, no wait.
Labels are the benchmark's own bookkeeping on OVN: which port groups a port joins.

The probe is TCP: a new connection every 5 ms from a container (bench/tcp_probe.py), so that
both systems judge every probe as a new connection against the policy in force (what each
does with connections it admitted earlier does not enter).

  realization   a client on h1 probes "db" on h2: a policy selecting db whose ingress rule
                does not allow the client (the probes start failing), then its deletion
                (they succeed again): ms from the call until the first probe sent that
                failed, and until the first answer; samples of the two systems alternate
  flows         200 endpoints app=a and 200 app=b (bound internal ports), one policy on
                app=a with an ingress rule from app=b on 3 TCP ports: flows per host the
                policy added (ovsfabric: cookies of kind "policy", and the difference of
                flow counts; OVN: the difference); spread over the hosts, then on one host
  convergence   with 100 policies present, a new endpoint selected by one that allows the
                client: the attach call until the client's first answer; then a source the
                policy does not allow is checked to be refused
  convergence_unpoliced
                the same with no policy: what the policies add
  throughput    iperf3, 1 TCP stream h1 -> h2, without a policy and with one that allows it

Prints a table, writes bench/results/policy.json after every step.

    .venv/bin/python bench/policy.py [--quick] [--only realization,flows,...]
"""
from __future__ import annotations

import json
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time

import common
from common import ip_for, mac_for, progress, summary_ms
from compare import loadavg, parse_steps, per_side, run_meta, run_steps, step_parser, write
from lab.proc import run
from report import FAB, OVN, table, value_at
from routing import IPERF_PORT, WARMUP_S, flow_breakdown, iperf, stop_all
from sides import FabricSide, add_lab_options, make_sides

RESULTS = os.path.join(common.ROOT, "bench", "results")
PROBE = os.path.join(common.ROOT, "bench", "tcp_probe.py")
PROBE_PORT = 5432
# Address indices per step (common.ip_for), apart from each other and from the prober's.
CLIENT, DB, FRONTEND, IPERF_SERVER, IPERF_CLIENT = 100, 101, 102, 103, 104
FLOWS_BASE, TIERS_BASE, NEW_BASE = 1000, 2000, 3000
FLOW_PORTS = (5432, 6379, 8080)
SETTLE_S = 2  # after a change is confirmed: whatever a control plane does later is counted


# --- policy documents (ovsfabric's REST contract; OVN's ACLs are made from them) ----------

def selector(**labels) -> dict:
    return {"selector": {"labels": labels}}


def ingress_policy(name: str, applies_to: dict, rules: list[dict]) -> dict:
    return {"name": name, "applies_to": selector(**applies_to), "ingress": rules}


def tcp_rule(peers: list[dict], *ports: int) -> dict:
    return {"peers": peers, "ports": [{"protocol": "tcp", "port": p} for p in ports],
            "action": "allow"}


# --- the two systems' policies behind one interface -----------------------------------------

class FabricPolicies:
    """ovsfabric: labels on the endpoints, POST/DELETE /v1/policies (which answer once the
    hosts concerned have confirmed their flows)."""

    cookie_kinds = True  # a flow's cookie names what made it ("policy" for a policy's)

    def __init__(self, side: FabricSide):
        self.side = side
        self.name, self.lab, self.mtu = side.name, side.lab, side.mtu
        self.bridge, self.of_version = side.bridge, side.of_version

    @property
    def client(self):
        return self.side.client

    def create_policy(self, doc: dict) -> dict:
        self.client.create_policy(doc)
        return {"api_returned": time.perf_counter()}

    def delete_policy(self, name: str) -> dict:
        self.client.delete_policy(name)
        return {"api_returned": time.perf_counter()}

    def status(self, name: str) -> dict | None:
        """GET /v1/policies/{name}/status: where the policy is realized."""
        return self.client.policy_status(name)

    def settle(self) -> None:
        """Nothing to wait for: the calls answered with the flows in."""

    def bind(self, c, i: int, labels: dict) -> dict:
        return self.side.attach(c, i, labels=labels)

    def unbind(self, c, i: int) -> None:
        self.side.detach(c, i)

    def populate(self, labels: dict[int, dict], hosts: list[str] | None = None) -> dict:
        return self.side.populate(sorted(labels), labels=labels, hosts=hosts)

    def depopulate(self, indices: list[int]) -> None:
        self.side.depopulate(indices)



def _identifier(text: str) -> str:
    # A port group's name is also an identifier in matches (@name, $name_ip4).
    return re.sub(r"\W", "_", text)


def _group_name(labels: dict) -> str:
    return "sel_" + "_".join(_identifier(f"{k}_{v}") for k, v in sorted(labels.items()))


class OvnPolicies:
    """OVN: a policy is a port group of the ports it selects with ACLs on it; a peer selector
    is a port group whose address set the ACL names. Port groups are kept up to date with
    the ports' labels as the benchmark attaches them, in the same transaction."""

    cookie_kinds = False  # OVN's cookies name logical flows: a policy's are a difference only

    def __init__(self, side):
        self.side, self.ovn = side, side.ovn
        self.name, self.lab, self.mtu = side.name, side.lab, side.mtu
        self.bridge, self.of_version = side.bridge, side.of_version
        self.labels: dict[str, dict] = {}  # logical port -> labels
        self.groups: dict[str, dict] = {}  # port group -> the labels it selects

    def _members(self, wanted: dict) -> list[str]:
        return sorted(p for p, have in self.labels.items()
                      if all(have.get(k) == v for k, v in wanted.items()))

    def _join(self, joining: dict[str, dict]) -> list[str]:
        """pg-set-ports of the groups that ports with these labels join (already in
        self.labels): the whole list, by name (a port added in the same transaction is
        found by its name too). Leaving needs nothing: a group's ports are weak references,
        a deleted port leaves its groups."""
        args: list[str] = []
        for group, wanted in self.groups.items():
            if any(all(have.get(k) == v for k, v in wanted.items())
                   for have in joining.values()):
                args += ["--", "pg-set-ports", group, *self._members(wanted)]
        return args

    def _peer(self, peer: dict, args: list[str]) -> str:
        if "cidr" in peer:
            return peer["cidr"]
        wanted = peer["selector"]["labels"]
        group = _group_name(wanted)
        if group not in self.groups:
            args += ["--", "pg-add", group, *self._members(wanted)]
            self.groups[group] = wanted
        return f"${group}_ip4"

    @staticmethod
    def _ports_match(ports: list[dict]) -> str | None:
        """One protocol's single ports as one set, as OVN users write them."""
        if not ports:
            return None
        terms, singles = [], {}
        for p in ports:
            proto = p["protocol"]
            if proto == "icmp":
                terms.append("icmp4")
            elif p.get("port") is None:
                terms.append(proto)
            elif p.get("end_port") is None:
                singles.setdefault(proto, []).append(str(p["port"]))
            else:
                terms.append(f"({proto} && {proto}.dst >= {p['port']} && "
                             f"{proto}.dst <= {p['end_port']})")
        terms += [f"({proto} && {proto}.dst == {{{', '.join(nums)}}})"
                  for proto, nums in singles.items()]
        return " || ".join(terms)

    @staticmethod
    def _policy_group(name: str) -> str:
        return f"pol_{_identifier(name)}"

    def create_policy(self, doc: dict) -> dict:
        """The port group and its ACLs in one ovn-nbctl transaction, without --wait."""
        group = self._policy_group(doc["name"])
        args = ["--", "pg-add", group, *self._members(doc["applies_to"]["selector"]["labels"])]
        acls = []
        for direction, ovn_dir, port_field, peer_field in (
                ("ingress", "to-lport", "outport", "ip4.src"),
                ("egress", "from-lport", "inport", "ip4.dst")):
            if direction not in doc:
                continue
            own = f"{port_field} == @{group}"
            acls.append((ovn_dir, 1000, f"{own} && ip4", "drop"))  # what no rule allows
            for rule in doc[direction]:
                peers = ", ".join(self._peer(p, args) for p in rule["peers"])
                match = f"{own} && {peer_field} == {{{peers}}}"
                if ports := self._ports_match(rule.get("ports", [])):
                    match += f" && ({ports})"
                allow = rule.get("action", "allow") == "allow"
                acls.append((ovn_dir, 1001 if allow else 1002, match,
                             "allow-related" if allow else "drop"))
        for ovn_dir, priority, match, verdict in acls:
            args += ["--", "--type=port-group", "acl-add", group, ovn_dir, str(priority), match,
                     verdict]
        self.ovn.nbctl(*args[1:])
        self.groups[group] = doc["applies_to"]["selector"]["labels"]
        return {"api_returned": time.perf_counter()}

    def delete_policy(self, name: str) -> dict:
        """Deleting the port group deletes its ACLs (nothing else refers to them)."""
        group = self._policy_group(name)
        self.ovn.nbctl("pg-del", group)
        del self.groups[group]
        return {"api_returned": time.perf_counter()}

    def settle(self) -> None:
        self.ovn.wait_hv()

    def bind(self, c, i: int, labels: dict) -> dict:
        port = f"p{i}"
        self.labels[port] = labels
        return self.side.attach(c, i, also=tuple(self._join({port: labels})))

    def unbind(self, c, i: int) -> None:
        port = f"p{i}"
        del self.labels[port]
        self.ovn.nbctl("lsp-del", port)
        c.host.vsctl("del-port", self.bridge, c.port)
        self.ovn.wait_hv()

    def populate(self, labels: dict[int, dict], hosts: list[str] | None = None) -> dict:
        result = self.side.populate(sorted(labels), hosts=hosts)
        joining = {f"p{i}": v for i, v in labels.items()}
        self.labels.update(joining)
        if args := self._join(joining):
            self.ovn.nbctl(*args[1:])
            self.ovn.wait_hv()
        return result

    def depopulate(self, indices: list[int]) -> None:
        for i in indices:
            del self.labels[f"p{i}"]
        self.side.depopulate(indices)

    def status(self, name: str) -> dict | None:
        """The port group's ACLs as OVN lists them (--wait=hv said every chassis has them)."""
        group = self._policy_group(name)
        return {"port_group": group,
                "acls": self.ovn.nbctl("acl-list", group).splitlines()}


# --- containers and probes -------------------------------------------------------------------

def labelled_container(pol, host: str, i: int, labels: dict, name: str):
    """A container with address i, bound as an endpoint with these labels."""
    c = pol.lab.add_container(host, name, mtu=pol.mtu)
    c.configure(mac_for(i), ip_for(i), 16, pol.mtu)
    pol.bind(c, i, labels)
    return c


def neighbours(*containers) -> None:
    """Static entries both ways, so that no ARP timer is measured."""
    for a in containers:
        for b in containers:
            if a is not b:
                a.neigh(b.ip, b.mac)


def serve(c) -> subprocess.Popen:
    """The TCP listener the probes connect to, in container c."""
    return subprocess.Popen(["ip", "netns", "exec", c.netns, sys.executable, PROBE, "serve",
                             str(PROBE_PORT)], stdout=subprocess.DEVNULL)


# Probes' source ports, per client: each Prober goes on where the last one stopped, so that
# no 4-tuple repeats within minutes (see tcp_probe.py on why OVN's hosts need that).
FIRST_SOURCE_PORT, LAST_SOURCE_PORT = 10000, 32000  # below the kernel's ephemeral range
PROBE_INTERVAL_S = 0.005
_next_source_port: dict[str, int] = {}


class Prober:
    """tcp_probe.py probing from container c until the wanted outcome; its lines read by a
    thread, so that waiting for one has a timeout."""

    def __init__(self, c, ip: str, until: str, deadline: float = 10.0):
        self.netns = c.netns
        self.first_port = _next_source_port.get(c.netns, FIRST_SOURCE_PORT)
        if self.first_port + deadline / PROBE_INTERVAL_S > LAST_SOURCE_PORT:
            self.first_port = FIRST_SOURCE_PORT
        # At most this many probes: where the next Prober starts if this one says nothing.
        _next_source_port[c.netns] = self.first_port + int(deadline / PROBE_INTERVAL_S) + 2
        # `ip netns exec` execs Python: the PID is the probe's own.
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", c.netns, sys.executable, PROBE, "probe", ip,
             str(PROBE_PORT), "--until", until, "--deadline", str(deadline),
             "--interval", str(PROBE_INTERVAL_S), "--first-port", str(self.first_port)],
            stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def next_line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            raise RuntimeError("the probe ended or went silent without its line")
        return line

    def wait_ready(self, timeout: float = 10.0) -> None:
        if self.next_line(timeout) != "ready":
            raise RuntimeError("the probe did not report ready")

    def result(self, timeout: float = 15.0) -> dict:
        r = json.loads(self.next_line(timeout))
        _next_source_port[self.netns] = r["next_port"]
        return r

    def stop(self) -> None:
        stop_all([self.proc])


def refused(source, target_ip: str) -> bool:
    """True if one new connection from `source` to the target is not answered in 0.2 s."""
    return run([sys.executable, PROBE, "connect", target_ip, PROBE_PORT], netns=source.netns,
               check=False).returncode != 0


def ms_since(t0: float, t: float | None) -> float | None:
    return None if t is None else round((t - t0) * 1000, 2)


# --- samples alternating between the systems -------------------------------------------------

def alternate(pols, count: int, setup, sample, teardown, show) -> dict:
    """setup(pol, state) for each system, then `count` rounds of sample(pol, state, n), the
    systems one after the other in each round (a burst of other load hits both), then
    teardown(pol, state) (state holds what setup made, even if it failed half-way). A system
    whose setup fails is recorded and left out; a failed sample is counted, the run goes on.
    show(samples) says how far it got, every 10 rounds."""
    states = {p.name: {} for p in pols}
    results = {p.name: {"samples": [], "failed": 0} for p in pols}
    try:
        ready = []
        for pol in pols:
            try:
                setup(pol, states[pol.name])
                ready.append(pol)
            except Exception as exc:  # noqa: BLE001 - recorded; the other system still runs
                progress(f"{pol.name}: set-up FAILED: {exc}")
                results[pol.name]["error"] = f"{type(exc).__name__}: {exc}"
        for n in range(count):
            for pol in list(ready):
                try:
                    results[pol.name]["samples"].append(sample(pol, states[pol.name], n))
                except Exception as exc:  # noqa: BLE001 - counted
                    progress(f"{pol.name}: sample {n + 1} FAILED: {exc}")
                    results[pol.name]["failed"] += 1
                    if dead := stopped_daemons(pol.lab):
                        # Every later sample would fail the same way: the system is out.
                        results[pol.name]["error"] = f"not running: {', '.join(dead)}"
                        ready.remove(pol)
            if (n + 1) % 10 == 0 or n + 1 == count:
                progress(f"{n + 1}/{count} " + "  ".join(
                    f"{pol.name} {show(results[pol.name]['samples'])}" for pol in ready
                    if results[pol.name]["samples"]))
    finally:
        for pol in pols:
            try:
                teardown(pol, states[pol.name])
            except Exception as exc:  # noqa: BLE001 - the other system is still removed
                progress(f"{pol.name}: tear-down FAILED: {exc}")
    return results


def errors_of(result: dict) -> dict:
    """What made a system drop out, kept beside the figures of the samples it had."""
    return {"error": result["error"]} if "error" in result else {}


def stopped_daemons(lab) -> list[str]:
    """The lab's OVS daemons that are not running (each host's log says why)."""
    return [f"{h.name} {name}" for h in lab.hosts for name, pid in h.pids().items()
            if pid is None]


def p50_of(key: str):
    return lambda samples: f"p50 {statistics.median(s[key] for s in samples):.1f} ms"


def summarize(samples: list[dict]) -> dict:
    if not samples:
        return {"samples": 0}
    return {**summary_ms([s["ms"] for s in samples]),
            "api_returned_p50_ms": round(statistics.median(
                s["api_returned_ms"] for s in samples), 2)}


def unbind_all(pol, state: dict, bound: dict[str, int]) -> None:
    """The containers of `state` named in `bound` (key -> address index), unbound, removed."""
    for key, i in bound.items():
        if key in state:
            pol.unbind(state[key], i)
            pol.lab.remove_container(state[key])


# --- realization ----------------------------------------------------------------------------

def realization_policy() -> dict:
    # The rule admits a frontend (an endpoint on h3), not the client: the client's probes fail.
    return ingress_policy("db-ingress", {"app": "db"},
                          [tcp_rule([selector(role="frontend")], PROBE_PORT)])


def realization_setup(pol, state: dict) -> None:
    pol.populate({FRONTEND: {"role": "frontend"}}, hosts=["h3"])
    state["frontend"] = True
    state["client"] = labelled_container(pol, "h1", CLIENT, {"role": "client"}, "client")
    state["db"] = labelled_container(pol, "h2", DB, {"app": "db"}, "db")
    neighbours(state["client"], state["db"])
    pol.settle()
    state["server"] = serve(state["db"])
    time.sleep(0.5)  # the listener's Python starts
    if refused(state["client"], state["db"].ip):
        raise RuntimeError("the client cannot reach db without a policy")


def realization_teardown(pol, state: dict) -> None:
    if state.get("server"):
        stop_all([state["server"]])
    unbind_all(pol, state, {"db": DB, "client": CLIENT})
    if state.get("frontend"):
        pol.depopulate([FRONTEND])


def flip(pol, state: dict, until: str, call) -> dict:
    """Probes running, state before seen; then t0 and the call: ms until the first probe sent
    that failed (until="fail") or the first answer (until="success")."""
    p = Prober(state["client"], state["db"].ip, until)
    try:
        p.wait_ready()
        t0 = time.perf_counter()
        marks = call()
        r = p.result()
    finally:
        p.stop()
    if r["sent"] < t0:
        raise RuntimeError(f"the probes flipped to {until} before the call")
    flipped = r["sent"] if until == "fail" else r["answered"]
    return {"ms": ms_since(t0, flipped), "api_returned_ms": ms_since(t0, marks["api_returned"])}


def realization_sample(pol, state: dict, n: int) -> dict:
    doc = realization_policy()
    denied = flip(pol, state, "fail", lambda: pol.create_policy(doc))
    pol.settle()
    allowed = flip(pol, state, "success", lambda: pol.delete_policy(doc["name"]))
    pol.settle()
    return {"deny": denied, "allow": allowed}


def step_realization(pols, args) -> dict:
    results = alternate(pols, args.realization, realization_setup, realization_sample,
                        realization_teardown,
                        lambda v: f"deny p50 {statistics.median(s['deny']['ms'] for s in v):.1f}"
                                  f" ms, allow p50 "
                                  f"{statistics.median(s['allow']['ms'] for s in v):.1f} ms")
    probe = (f"TCP connection to port {PROBE_PORT} every 5 ms, a new one each, failed if "
             f"unanswered within 0.2 s; deny: until the first failed probe was sent, allow: "
             f"until the first answer")
    return {name: {
        **errors_of(r), "probe": probe, "failed_samples": r["failed"],
        **{kind: summarize([s[kind] for s in r["samples"]]) for kind in ("deny", "allow")}}
        for name, r in results.items()}
# --- flows per host -------------------------------------------------------------------------

def flows_policy() -> dict:
    return ingress_policy("a-from-b", {"app": "a"},
                          [tcp_rule([selector(app="b")], *FLOW_PORTS)])


def measure_policy_flows(pol, per_label: int, hosts: list[str] | None) -> dict:
    labels = {FLOWS_BASE + n: {"app": "a" if n < per_label else "b"}
              for n in range(2 * per_label)}
    progress(f"flows: {pol.name}: {per_label} endpoints app=a, {per_label} app=b on "
             f"{', '.join(hosts) if hosts else 'every host'}")
    filled = pol.populate(labels, hosts=hosts)
    try:
        time.sleep(SETTLE_S)
        before = flow_counts(pol)
        doc = flows_policy()
        t0 = time.perf_counter()
        marks = pol.create_policy(doc)
        pol.settle()
        converged = time.perf_counter()
        time.sleep(SETTLE_S)
        after = flow_counts(pol)
        status = pol.status(doc["name"])
        pol.delete_policy(doc["name"])
        pol.settle()
    finally:
        pol.depopulate(sorted(labels))
    added = {name: after[name]["flows"] - before[name]["flows"] for name in after}
    out = {"endpoints": 2 * per_label, "placement": hosts or "spread",
           "populate_s": round(filled["converged_s"], 3),
           "policy_api_returned_ms": ms_since(t0, marks["api_returned"]),
           "policy_converged_ms": ms_since(t0, converged),
           "flows_before": {n: v["flows"] for n, v in before.items()},
           "flows_after": {n: v["flows"] for n, v in after.items()},
           "flows_added": added, "flows_added_max": max(added.values()), "status": status,
           "added_by_table": difference(before, after, "by_table"),
           "policy_flows_max": max(added.values())}
    if pol.cookie_kinds:
        out["added_by_cookie_kind"] = difference(before, after, "by_cookie_kind")
        out["policy_cookie_flows"] = {n: v["by_cookie_kind"].get("policy", 0)
                                      for n, v in after.items()}
        out["policy_flows_max"] = max(out["policy_cookie_flows"].values())
    return out


def flow_counts(pol) -> dict[str, dict]:
    """Per host: the flows (lines with actions=), by table and by cookie kind."""
    out = {}
    for h in pol.lab.hosts:
        breakdown = flow_breakdown(h, pol.bridge, pol.of_version)
        out[h.name] = {"flows": sum(breakdown["by_table"].values()), **breakdown}
    return out


def difference(before: dict, after: dict, key: str) -> dict[str, dict]:
    """Per host, what changed in a breakdown: {table or kind: flows added (or removed)}."""
    out = {}
    for host, counts in after.items():
        was = before[host][key]
        out[host] = {k: counts[key].get(k, 0) - was.get(k, 0)
                     for k in sorted(set(counts[key]) | set(was), key=str)
                     if counts[key].get(k, 0) != was.get(k, 0)}
    return out


def step_flows(pols, args) -> dict:
    out = {p.name: {} for p in pols}
    placements = {"spread": None, "one_host": ["h1"]}
    for placement in args.flow_placements:
        for name, r in per_side(pols, lambda p: measure_policy_flows(
                p, args.flow_endpoints, placements[placement])).items():
            out[name][placement] = r
    for name, by_placement in out.items():  # the table names a side's errors, not nested ones
        if errors := [f"{k}: {v['error']}" for k, v in by_placement.items() if "error" in v]:
            by_placement["error"] = "; ".join(errors)
    return out


# --- a new endpoint among 100 policies ---------------------------------------------------------

def tier_policy(k: int) -> dict:
    """Policy k selects tier t<k>: the client may reach the probe port and one of its own;
    every other policy also admits a CIDR on UDP 53 (a rule or two, as real ones have)."""
    rules = [tcp_rule([selector(role="client")], PROBE_PORT, 10000 + k)]
    if k % 2:
        rules.append({"peers": [{"cidr": "10.99.0.0/16"}],
                      "ports": [{"protocol": "udp", "port": 53}], "action": "allow"})
    return ingress_policy(f"tier-{k}", {"tier": f"t{k}"}, rules)


def convergence_setup(pol, state: dict, policies: int) -> None:
    progress(f"convergence: {pol.name}: {policies} endpoints and {policies} policies")
    if policies:
        pol.populate({TIERS_BASE + k: {"tier": f"t{k}"} for k in range(policies)})
        state["tiers"] = policies
    for k in range(policies):
        pol.create_policy(tier_policy(k))
        state["policies"] = k + 1
    state["client"] = labelled_container(pol, "h1", CLIENT, {"role": "client"}, "client")
    # Labelled with nothing any policy admits: a new endpoint must refuse it.
    state["other"] = labelled_container(pol, "h3", DB, {"role": "other"}, "other")
    pol.settle()


def convergence_teardown(pol, state: dict) -> None:
    unbind_all(pol, state, {"client": CLIENT, "other": DB})
    for k in range(state.get("policies", 0)):
        pol.delete_policy(tier_policy(k)["name"])
    if "tiers" in state:
        pol.depopulate([TIERS_BASE + k for k in range(state["tiers"])])


def convergence_sample(pol, state: dict, n: int, policies: int, settle: float) -> dict:
    """A container on h2 (not bound) serving the probe port, selected by policy n mod 100
    (with no policies: labelled, selected by none); the client probing it every 5 ms
    (failing: it is not there); t0 and the attach call: ms until the first answer. Then a
    source no policy admits must be refused (with policies)."""
    i = NEW_BASE + n
    c = pol.lab.add_container("h2", f"n{i}", mtu=pol.mtu)
    server = None
    try:
        c.configure(mac_for(i), ip_for(i), 16, pol.mtu)
        neighbours(c, state["client"], state["other"])
        server = serve(c)
        p = Prober(state["client"], c.ip, "success")
        try:
            p.wait_ready()
            time.sleep(settle)  # the new veth keeps ovs-vswitchd busy a moment
            t0 = time.perf_counter()
            marks = pol.bind(c, i, {"tier": f"t{n % max(policies, 1)}"})
            r = p.result()
        finally:
            p.stop()
        enforced = refused(state["other"], c.ip) if policies else None
        pol.unbind(c, i)
    finally:
        if server is not None:
            stop_all([server])
        pol.lab.remove_container(c)
    return {"ms": ms_since(t0, r["answered"]),
            "api_returned_ms": ms_since(t0, marks["api_returned"]), "enforced": enforced}


def measure_convergence(pols, args, policies: int) -> dict:
    results = alternate(
        pols, args.convergence, lambda p, st: convergence_setup(p, st, policies),
        lambda p, st, n: convergence_sample(p, st, n, policies, args.settle),
        convergence_teardown, p50_of("ms"))
    return {name: {
        **errors_of(r), "policies": policies, "settle_s": args.settle,
        "failed": r["failed"], **summarize(r["samples"]),
        "not_enforced": sum(s["enforced"] is False for s in r["samples"])}
        for name, r in results.items()}


def step_convergence(pols, args) -> dict:
    return measure_convergence(pols, args, args.policies)


def step_convergence_unpoliced(pols, args) -> dict:
    """The same with no policy at all: what the policies add, in the same run."""
    return measure_convergence(pols, args, 0)


# --- throughput -------------------------------------------------------------------------------

def iperf_policy() -> dict:
    return ingress_policy("iperf", {"app": "iperf-server"},
                          [tcp_rule([selector(role="iperf-client")], IPERF_PORT)])


def throughput_setup(pol, state: dict) -> None:
    state["server_c"] = labelled_container(pol, "h2", IPERF_SERVER, {"app": "iperf-server"},
                                           "iperfs")
    state["client"] = labelled_container(pol, "h1", IPERF_CLIENT, {"role": "iperf-client"},
                                         "iperfc")
    neighbours(state["server_c"], state["client"])
    pol.settle()
    state["iperf3"] = subprocess.Popen(
        ["ip", "netns", "exec", state["server_c"].netns, "iperf3", "-s", "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    # Untimed: in a fresh lab the first seconds of TCP ran at about half the later rate.
    iperf(state["client"], state["server_c"], WARMUP_S)


def throughput_teardown(pol, state: dict) -> None:
    if state.get("iperf3"):
        stop_all([state["iperf3"]])
    unbind_all(pol, state, {"client": IPERF_CLIENT, "server_c": IPERF_SERVER})


def throughput_round(pol, state: dict, n: int, seconds: int) -> dict:
    """One run without a policy and one with a policy admitting the client (made before the
    run, deleted after it); the order alternates by round."""
    out = {}
    for kind in (("without", "with") if n % 2 == 0 else ("with", "without")):
        if kind == "with":
            pol.create_policy(iperf_policy())
            pol.settle()
        try:
            out[kind] = {"loadavg": loadavg(), **iperf(state["client"], state["server_c"],
                                                       seconds)}
        finally:
            if kind == "with":
                pol.delete_policy(iperf_policy()["name"])
                pol.settle()
        progress(f"throughput: {pol.name}: round {n + 1}: {kind} policy "
                 f"{out[kind]['gbps']:.3f} Gbit/s (load average {out[kind]['loadavg']})")
    return out


def throughput_figures(rounds: list[dict], seconds: int, mtu: int) -> dict:
    if not rounds:
        return {"rounds": 0}
    g = {kind: [r[kind]["gbps"] for r in rounds] for kind in ("without", "with")}
    per_round = [round(r["with"]["gbps"] / r["without"]["gbps"], 3) for r in rounds
                 if r["without"]["gbps"]]
    return {"seconds": seconds, "rounds": len(rounds), "mtu": mtu, "runs": rounds,
            "without_gbps": round(statistics.median(g["without"]), 3),
            "with_gbps": round(statistics.median(g["with"]), 3),
            "with_over_without": round(statistics.median(g["with"]) /
                                       statistics.median(g["without"]), 3),
            "with_over_without_per_round": per_round,
            "with_over_without_per_round_median": round(statistics.median(per_round), 3)}


def step_throughput(pols, args) -> dict:
    """Server on h2, client on h1, one TCP stream (routing.py's iperf)."""
    results = alternate(pols, args.iperf_rounds, throughput_setup,
                        lambda p, st, n: throughput_round(p, st, n, args.iperf_seconds),
                        throughput_teardown,
                        lambda v: f"with/without {v[-1]['with']['gbps']:.3f}/"
                                  f"{v[-1]['without']['gbps']:.3f} Gbit/s")
    mtu = {p.name: p.mtu for p in pols}
    return {name: {
        **errors_of(r), "failed": r["failed"],
        **throughput_figures(r["samples"], args.iperf_seconds, mtu[name])}
        for name, r in results.items()}


STEPS = {"realization": step_realization, "flows": step_flows,
         "convergence": step_convergence, "convergence_unpoliced": step_convergence_unpoliced,
         "throughput": step_throughput}


# --- the table ----------------------------------------------------------------------------

def figures(results: dict) -> list[tuple[str, object, object]]:
    out = []

    def both(label, step, *path):
        f, o = (value_at(results, step, side, *path) for side in (FAB, OVN))
        if f is not None or o is not None:
            out.append((label, f, o))

    for kind, what in (("deny", "made, until refused"), ("allow", "deleted, until answered")):
        for p in ("p50", "p99"):
            both(f"realization {p} ms: policy {what}", "realization", kind, f"{p}_ms")
        both("  API call returned p50 ms", "realization", kind, "api_returned_p50_ms")
    both("  failed samples", "realization", "failed_samples")
    for placement in ("spread", "one_host"):
        both(f"flows ({placement}): policy flows, busiest host", "flows", placement,
             "policy_flows_max")
        both(f"flows ({placement}): flows added, busiest host", "flows", placement,
             "flows_added_max")
        both(f"flows ({placement}): policy call to in force, ms", "flows", placement,
             "policy_converged_ms")
    for p in ("p50", "p95", "p99"):
        both(f"new endpoint among policies {p} ms", "convergence", f"{p}_ms")
    both("  API call returned p50 ms", "convergence", "api_returned_p50_ms")
    both("  not enforced (a refused source answered)", "convergence", "not_enforced")
    for p in ("p50", "p99"):
        both(f"the same with no policy {p} ms", "convergence_unpoliced", f"{p}_ms")
    both("throughput without policy, Gbit/s", "throughput", "without_gbps")
    both("throughput with policy, Gbit/s", "throughput", "with_gbps")
    both("  with / without (medians)", "throughput", "with_over_without")
    both("  with / without (median of rounds)", "throughput",
         "with_over_without_per_round_median")
    return out


# --- the run ---------------------------------------------------------------------------------

def parse_args(argv=None):
    p = step_parser(__doc__, STEPS, hosts=3)
    p.add_argument("--realization", type=int, help="samples per system (default 30)")
    p.add_argument("--flow-endpoints", type=int, help="endpoints per label (default 200)")
    p.add_argument("--flow-placements", default="spread,one_host",
                   help="spread (endpoint i on host i mod N), one_host (all on h1)")
    p.add_argument("--policies", type=int, help="policies present (default 100)")
    p.add_argument("--convergence", type=int, help="samples per system (default 30)")
    p.add_argument("--iperf-seconds", type=int, default=10)
    p.add_argument("--iperf-rounds", type=int, help="per system and case (default 5)")
    p.add_argument("--systems", default=f"{FAB},{OVN}",
                   help="the systems measured (both by default; one alone to debug it)")
    p.add_argument("--out", default=os.path.join(RESULTS, "policy.json"))
    add_lab_options(p, fabric_prefix="pbf", ovn_prefix="pbo")
    p.set_defaults(fabric_underlay="198.18.120.0/24", fabric_mgmt="198.18.121.0/24",
                   ovn_underlay="198.18.122.0/24", ovn_mgmt="198.18.123.0/24",
                   api_port=18820, openflow_port=16820)
    args = parse_steps(p, argv, STEPS, dict(
        realization=(5, 30), flow_endpoints=(50, 200), policies=(20, 100),
        convergence=(5, 30), iperf_rounds=(1, 5)))
    if args.quick:
        args.iperf_seconds = min(args.iperf_seconds, 5)
    args.flow_placements = [s.strip() for s in args.flow_placements.split(",") if s.strip()]
    if set(args.flow_placements) - {"spread", "one_host"}:
        p.error("--flow-placements: spread, one_host")
    if args.hosts < 3:
        p.error("--hosts: 3 at least (client on h1, db on h2, others on h3)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sides = [s for s in make_sides(args) if s.name in args.systems.split(",")]
    sizes = ("realization", "flow_endpoints", "flow_placements", "policies", "convergence",
             "iperf_seconds", "iperf_rounds")
    results: dict = {"meta": run_meta(args, sizes)}
    try:
        for side in sides:
            progress(f"{side.name}: lab of {args.hosts} hosts")
            side.up()
        pols = [FabricPolicies(s) if isinstance(s, FabricSide) else OvnPolicies(s)
                for s in sides]
        run_steps(STEPS, pols, args, results)
    finally:
        # A daemon that died during the run (none should) is named with the figures.
        results["meta"]["stopped_daemons"] = {s.name: stopped_daemons(s.lab) for s in sides}
        for side in reversed(sides):
            progress(f"{side.name}: tearing down")
            side.down()
        results["meta"]["loadavg"]["end"] = loadavg()
        write(results, args.out)
    print(table(results, figures(results)))
    print(f"\nload average: {results['meta']['loadavg']}")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
