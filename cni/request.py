"""What a runtime asks: the verb and the container from the environment, the network
configuration from stdin. Everything is checked before anything is touched."""
from __future__ import annotations

import json
import os
import re
from collections import namedtuple
from urllib.parse import urlsplit

from .errors import DECODE_FAILURE, INVALID_CONFIG, INVALID_ENVIRONMENT, CniError
from .versions import NEWEST, SUPPORTED, checked

VERBS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
# The variables each verb needs, as the spec's reference runtime (libcni's skel) checks them.
NEEDS = {
    "CNI_CONTAINERID": ("ADD", "DEL", "CHECK"),
    "CNI_NETNS": ("ADD", "CHECK"),
    "CNI_IFNAME": ("ADD", "DEL", "CHECK"),
    "CNI_PATH": ("ADD", "DEL", "CHECK", "STATUS", "GC"),
}
CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NETWORK_NAME = CONTAINER_ID  # the spec's rule for a configuration's name
HOSTNAME = re.compile(r"[A-Za-z0-9.:-]+")  # a name, an IPv4 or an IPv6 address
# CNI_ARGS that become the endpoint's labels, under the same names.
LABEL_ARGS = ("K8S_POD_NAMESPACE", "K8S_POD_NAME")
LABEL_VALUE = re.compile(r"[A-Za-z0-9._-]{0,63}")  # the controller's rule for label values
PROTOCOLS = ("tcp", "udp")


# Named tuples, not dataclasses: importing dataclasses costs this plugin milliseconds at every
# start, and every verb of every pod starts it.
class PortMapping(namedtuple("PortMapping", "host_port container_port protocol")):
    __slots__ = ()


class Attachment(namedtuple("Attachment", "container_id ifname")):
    __slots__ = ()


class NetConf(namedtuple("NetConf", "cni_version name controller host network token_file "
                                    "ca_cert mtu dns port_mappings prev_result "
                                    "valid_attachments")):
    __slots__ = ()

    def token(self) -> str | None:
        if not self.token_file:
            return None
        try:
            with open(self.token_file) as f:
                return f.read().strip()
        except OSError as exc:
            raise CniError(INVALID_CONFIG, f"token_file {self.token_file}: "
                                           f"{exc.strerror}") from None


class Request(namedtuple("Request", "command conf version container_id netns ifname args")):
    """``version``: the one to answer in, errors included."""
    __slots__ = ()

    @property
    def labels(self) -> dict[str, str]:
        """The Kubernetes pod's namespace and name, where they fit a label value."""
        return {key: self.args[key] for key in LABEL_ARGS
                if key in self.args and LABEL_VALUE.fullmatch(self.args[key])}


def command_of(environ) -> str:
    command = environ.get("CNI_COMMAND", "")
    if command not in VERBS:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND {command!r} is not one of "
                                            f"{', '.join(VERBS)}")
    return command


def parse(environ, document) -> Request:
    """Every verb but VERSION (which plugin.version_result answers); ``document`` is the
    decoded stdin."""
    command = command_of(environ)
    missing = [name for name, verbs in NEEDS.items()
               if command in verbs and not environ.get(name)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"{command} needs {', '.join(missing)} in the "
                                            f"environment")
    container_id = environ.get("CNI_CONTAINERID", "")
    if container_id and not CONTAINER_ID.fullmatch(container_id):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_CONTAINERID {container_id!r} is not "
                                            f"letters, digits, '_', '.' and '-'")
    ifname = environ.get("CNI_IFNAME", "")
    if ifname:
        _check_ifname(ifname, "CNI_IFNAME", INVALID_ENVIRONMENT)
    netns = environ.get("CNI_NETNS", "")
    if netns and command in ("ADD", "CHECK") and not os.path.exists(netns):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {netns} does not exist")
    conf = netconf(document)
    return Request(command, conf, conf.cni_version, container_id, netns, ifname,
                   cni_args(environ.get("CNI_ARGS", "")))


def cni_args(text: str) -> dict[str, str]:
    """``K=V;K2=V2`` as a dict."""
    args = {}
    for pair in filter(None, text.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS {text!r}: {pair!r} is not KEY=VALUE")
        args[key] = value
    return args


def decode(stdin: bytes):
    if not stdin.strip():
        return {}
    try:
        return json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODE_FAILURE, "the network configuration on stdin is not JSON",
                       str(exc)) from None


def answer_version(document) -> str:
    """The version to answer in: the configuration's, when this plugin speaks it."""
    version = document.get("cniVersion") if isinstance(document, dict) else None
    return version if version in SUPPORTED else NEWEST


def netconf(document) -> NetConf:
    if not isinstance(document, dict) or not document:
        raise CniError(DECODE_FAILURE, "the network configuration on stdin is not a JSON "
                                       "object")
    version = checked(document.get("cniVersion"))
    name = _string(document, "name")
    if not NETWORK_NAME.fullmatch(name):
        raise CniError(INVALID_CONFIG, f"name {name!r} is not letters, digits, '_', '.' and "
                                       f"'-', starting with a letter or digit")
    controller = _string(document, "controller")
    _check_url(controller)
    mtu = document.get("mtu")
    if mtu is not None and (type(mtu) is not int or not 576 <= mtu <= 9000):
        raise CniError(INVALID_CONFIG, f"mtu {mtu!r} is not a number in 576..9000")
    dns = document.get("dns", {})
    if not isinstance(dns, dict):
        raise CniError(INVALID_CONFIG, "dns must be an object")
    runtime = document.get("runtimeConfig", {})
    if not isinstance(runtime, dict):
        raise CniError(INVALID_CONFIG, "runtimeConfig must be an object")
    prev = document.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise CniError(INVALID_CONFIG, "prevResult must be an object")
    return NetConf(
        cni_version=version, name=name, controller=controller,
        host=_string(document, "host"), network=_string(document, "network"),
        token_file=_string(document, "token_file", required=False),
        ca_cert=_string(document, "ca_cert", required=False), mtu=mtu, dns=dns,
        port_mappings=_port_mappings(runtime.get("portMappings", [])), prev_result=prev,
        valid_attachments=_attachments(document.get("cni.dev/valid-attachments", [])))


def _check_url(controller: str) -> None:
    url = urlsplit(controller)
    try:
        url.port  # noqa: B018 - raises for a port that is no number
        well_formed = bool(HOSTNAME.fullmatch(url.hostname or ""))
    except ValueError:
        well_formed = False
    if url.scheme not in ("http", "https") or not well_formed:
        raise CniError(INVALID_CONFIG, f"controller {controller!r} is not an http:// or "
                                       f"https:// URL of a host and port")


def _string(document: dict, key: str, required: bool = True) -> str | None:
    value = document.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise CniError(INVALID_CONFIG, f"the network configuration needs {key!r}, a "
                                       f"non-empty string" + (f", not {value!r}"
                                                              if value is not None else ""))
    return value


def _port_mappings(value) -> tuple[PortMapping, ...]:
    if not isinstance(value, list):
        raise CniError(INVALID_CONFIG, "runtimeConfig.portMappings must be a list")
    mappings = []
    for i, item in enumerate(value):
        where = f"runtimeConfig.portMappings[{i}]"
        if not isinstance(item, dict):
            raise CniError(INVALID_CONFIG, f"{where} must be an object")
        ports = [item.get("hostPort"), item.get("containerPort")]
        if any(type(p) is not int or not 1 <= p <= 65535 for p in ports):
            raise CniError(INVALID_CONFIG, f"{where}: hostPort and containerPort must be "
                                           f"numbers in 1..65535")
        protocol = str(item.get("protocol", "tcp")).lower()
        if protocol not in PROTOCOLS:
            raise CniError(INVALID_CONFIG, f"{where}: protocol {item.get('protocol')!r} is "
                                           f"not tcp or udp")
        mappings.append(PortMapping(ports[0], ports[1], protocol))
    return tuple(mappings)


def _attachments(value) -> tuple[Attachment, ...]:
    if not isinstance(value, list):
        raise CniError(INVALID_CONFIG, "cni.dev/valid-attachments must be a list")
    attachments = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("containerID", "ifname")):
            raise CniError(INVALID_CONFIG, f"cni.dev/valid-attachments[{i}] needs "
                                           f"containerID and ifname, strings")
        attachments.append(Attachment(item["containerID"], item["ifname"]))
    return tuple(attachments)


def _check_ifname(name: str, what: str, code: int) -> None:
    if len(name.encode()) > 15 or name in (".", "..") or any(
            c in name for c in "/:") or any(c.isspace() for c in name):
        raise CniError(code, f"{what} {name!r} is not an interface name (at most 15 bytes, "
                             f"no '/', ':' or space)")
