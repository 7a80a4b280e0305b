"""ADD, DEL, CHECK, STATUS and GC: each turns a checked request into host links and
controller calls, and leaves nothing half-made when it fails."""
from __future__ import annotations

from . import links
from .controller import Controller, ControllerError
from .errors import (INTERFACE_PROBLEM, INVALID_CONFIG, NOT_AVAILABLE, UNSUPPORTED_FIELD,
                     CniError)
from .naming import VETH_PREFIX, alias, endpoint_name, host_veth, made_here, parse_alias
from .request import Request
from .versions import at_least


def controller_of(request: Request) -> Controller:
    conf = request.conf
    return Controller(conf.controller, token=conf.token(), ca_cert=conf.ca_cert)


def endpoints_of(controller: Controller, request: Request, name: str) -> list[dict]:
    """The attachment's endpoints on this host: one, or none; more only after an ADD whose
    controller died after making the endpoint and before answering."""
    return [ep for ep in controller.endpoints(request.conf.host)
            if ep["name"] == name and made_here(ep)]


def add(request: Request) -> dict:
    conf = request.conf
    controller = controller_of(request)
    name = endpoint_name(request.container_id, request.ifname)
    host_end = host_veth(name)
    # What an earlier ADD of this attachment left (killed, or never followed by a DEL).
    for stale in endpoints_of(controller, request, name):
        controller.delete_endpoint(stale["id"])
    links.delete_host_link(host_end)
    net = controller.network(conf.network)
    mtu = conf.mtu or net["mtu"]
    if mtu > net["mtu"]:
        raise CniError(INVALID_CONFIG, f"mtu {mtu} is more than network {net['name']}'s "
                                       f"{net['mtu']}")
    ep = None
    try:
        links.create_pair(host_end, request.netns, request.ifname, mtu,
                          alias(conf.name, request.container_id, request.ifname))
        ep = controller.create_endpoint(network=net["id"], host=conf.host, port=host_end,
                                        name=name, labels=request.labels)
        address = f"{ep['ip']}/{ep['prefix_len']}"
        links.configure(request.netns, request.ifname, ep["mac"], address, ep["gateway"])
        for mapping in conf.port_mappings:
            controller.publish(ep["id"], mapping.protocol, mapping.container_port,
                               mapping.host_port)
        return {
            "interfaces": [
                {"name": host_end, "mac": links.host_mac(host_end), "mtu": mtu},
                {"name": request.ifname, "mac": ep["mac"], "mtu": mtu,
                 "sandbox": request.netns},
            ],
            "ips": [{"address": address, "gateway": ep["gateway"], "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": ep["gateway"]}],
            "dns": conf.dns,
        }
    except BaseException:
        _undo(controller, ep, host_end)
        raise


def _undo(controller: Controller, ep: dict | None, host_end: str) -> None:
    """Removes what a failed ADD made; what cannot be removed now, GC removes later."""
    try:
        links.delete_host_link(host_end)
    except CniError:
        pass
    if ep is not None:
        try:
            controller.delete_endpoint(ep["id"])
        except ControllerError:
            pass


def delete(request: Request) -> None:
    """Idempotent: an attachment whose namespace, veth or endpoint is gone already is fine.
    The veth goes while the controller is asked, and even when it cannot be reached; the
    endpoint then stays for a retried DEL or GC."""
    name = endpoint_name(request.container_id, request.ifname)
    deleting = links.start_deleting(host_veth(name))
    try:
        controller = controller_of(request)
        for ep in endpoints_of(controller, request, name):
            controller.delete_endpoint(ep["id"])
    finally:
        links.finish_deleting(deleting)


def check(request: Request) -> None:
    """Fails, saying what differs, unless the container's interface, its address and route,
    and the endpoint with its flows are as the previous result says."""
    if not at_least(request.version, "0.4.0"):
        raise CniError(UNSUPPORTED_FIELD, f"CHECK is not defined for CNI {request.version}")
    prev = request.conf.prev_result
    if not prev:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult")
    sandbox = next((i for i in prev.get("interfaces", [])
                    if i.get("name") == request.ifname and i.get("sandbox")), None)
    if sandbox is None:
        raise CniError(INVALID_CONFIG, f"prevResult names no sandbox interface "
                                       f"{request.ifname}")
    ips = [ip for ip in prev.get("ips", []) if ip.get("address")]
    found = links.inspect(request.netns, request.ifname)
    problems = []
    if sandbox.get("mac") and found["mac"] != sandbox["mac"].lower():
        problems.append(f"its MAC is {found['mac']}, not {sandbox['mac']}")
    if not found["up"]:
        problems.append("it is down")
    for ip in ips:
        if ip["address"] not in found["addresses"]:
            problems.append(f"it has no address {ip['address']}")
    for route in prev.get("routes", []):
        if route.get("dst") == "0.0.0.0/0" and route.get("gw") and \
                route["gw"] not in found["default_gateways"]:
            problems.append(f"its default route is not through {route['gw']}")
    controller = controller_of(request)
    name = endpoint_name(request.container_id, request.ifname)
    ep = next(iter(endpoints_of(controller, request, name)), None)
    if ep is None:
        problems.append(f"its endpoint {name} does not exist")
    else:
        if ep["mac"] != found["mac"]:
            problems.append(f"its endpoint's MAC is {ep['mac']}")
        if ips and ips[0]["address"].split("/")[0] != ep["ip"]:
            problems.append(f"its endpoint's address is {ep['ip']}")
        audit = controller.audit(request.conf.host)
        unlike = [f for f in audit["missing"] + audit["different"]
                  if f["owner"].get("kind") == "endpoint" and f["owner"].get("id") == ep["id"]]
        if unlike:
            problems.append(f"{len(unlike)} of its endpoint's flows are missing or different "
                            f"on {request.conf.host}")
    if problems:
        raise CniError(INTERFACE_PROBLEM, f"{request.ifname} in {request.netns}: "
                                          + "; ".join(problems))


def status(request: Request) -> None:
    """Ready for ADDs: the controller answers and knows this host and network."""
    controller = controller_of(request)
    try:
        controller.host(request.conf.host)
        controller.network(request.conf.network)
    except ControllerError as exc:
        raise CniError(NOT_AVAILABLE, exc.msg) from None


def gc(request: Request) -> None:
    """Removes this host's attachments of this network configuration (its ``name``) that the
    runtime no longer holds: the endpoints this plugin made, and the veths a killed ADD left
    with no endpoint. Another configuration's attachments, say another runtime's on the same
    fabric network, are not this GC's: their veths say so. An endpoint whose veth is gone
    is nobody's."""
    conf = request.conf
    valid = {host_veth(endpoint_name(a.container_id, a.ifname))
             for a in conf.valid_attachments}
    veths = {link["ifname"]: link.get("ifalias") for link in links.host_veths()
             if link["ifname"].startswith(VETH_PREFIX)}

    def ours(veth: str) -> bool:
        """Not valid, and made under this configuration; or unaliased: killed between the
        two lines of the batch that makes a pair and sets its alias."""
        if veth in valid:
            return False
        attachment = parse_alias(veths.get(veth) or "")
        return attachment[0] == conf.name if attachment else not veths.get(veth)

    controller = controller_of(request)
    net = controller.network(conf.network)
    for ep in controller.endpoints(conf.host, net["id"]):
        if made_here(ep) and ours(ep["port"]):
            controller.delete_endpoint(ep["id"])
    for veth in veths:
        if ours(veth):
            links.delete_host_link(veth)
