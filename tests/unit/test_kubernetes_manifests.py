"""deploy/kubernetes, checked without a cluster: the structure, and that what the containers
run is what this project provides, run here the way kubelet would run it (its ``$(VAR)``
expansion, the downward API, the Service's environment variables, the volumes as
directories), the ``ovsfabric`` command lines through the real argument parser."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml
from tests.helpers import ROOT
from tests.unit.test_compose import SERVICES as COMPOSE_SERVICES
from tests.unit.test_compose import dockerfile, ignored, provided

DIR = os.path.join(ROOT, "deploy", "kubernetes")
KUSTOMIZATION = "kustomization.yaml"
KNOWN_KINDS = {"Namespace": "v1", "PersistentVolumeClaim": "v1", "Service": "v1",
               "Secret": "v1", "Deployment": "apps/v1", "DaemonSet": "apps/v1"}
CNI_BIN, CNI_CONF = "/opt/cni/bin", "/etc/cni/net.d"
# What kubelet would give the downward API and the Service's variables, made up.
POD = {"spec.nodeName": "node-1", "status.hostIP": "192.0.2.21",
       "status.podIP": "192.0.2.21"}  # hostNetwork: the pod's address is the node's
CLUSTER_IP = "10.96.0.42"


def load(name: str) -> list[dict]:
    with open(os.path.join(DIR, name)) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


KUSTOM = load(KUSTOMIZATION)[0]
FILES = {name: load(name) for name in KUSTOM["resources"]}
OBJECTS = [doc for docs in FILES.values() for doc in docs]
NAMESPACE = KUSTOM["namespace"]


def the(kind: str, name: str | None = None) -> dict:
    found = [o for o in OBJECTS if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def pod_spec(kind: str) -> dict:
    return the(kind)["spec"]["template"]["spec"]


def container(kind: str, name: str) -> dict:
    spec = pod_spec(kind)
    found = [c for c in spec.get("initContainers", []) + spec["containers"]
             if c["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def all_containers() -> list[tuple[str, dict]]:
    return [(o["kind"], c) for o in OBJECTS if o["kind"] in ("Deployment", "DaemonSet")
            for c in o["spec"]["template"]["spec"].get("initContainers", [])
            + o["spec"]["template"]["spec"]["containers"]]


# ---- kubelet, imitated ----------------------------------------------------------------------

REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, defined: dict[str, str]) -> str:
    """``$(VAR)`` as kubelet expands it; a reference it would leave as it is fails here."""
    assert "$$" not in text, text

    def value(match):
        assert match.group(1) in defined, f"$({match.group(1)}) in {text!r} is not defined"
        return defined[match.group(1)]
    return REFERENCE.sub(value, text)


def service_variables() -> dict[str, str]:
    """What kubelet puts in the environment of a pod of the namespace for each Service."""
    variables = {}
    for service in (o for o in OBJECTS if o["kind"] == "Service"):
        prefix = service["metadata"]["name"].upper().replace("-", "_")
        ports = service["spec"]["ports"]
        variables[f"{prefix}_SERVICE_HOST"] = CLUSTER_IP
        variables[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            variables[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = \
                str(port["port"])
    return variables


def environment(c: dict) -> dict[str, str]:
    """The container's own variables, in order: a value may use the earlier ones and the
    Services' (as the API documents for env values)."""
    env, services = {}, service_variables()
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], {**services, **env})
        else:
            field = var["valueFrom"]["fieldRef"]["fieldPath"]
            assert field in POD, f"{var['name']}: {field} is not from the downward API here"
            env[var["name"]] = POD[field]
    return env


def argv(c: dict) -> list[str]:
    """command and args, expanded with the container's own variables only (kubelet's
    documented scope for them; the Services' reach them through an env value)."""
    env = environment(c)
    return [expand(arg, env) for arg in c["command"] + c.get("args", [])]


def mounts(kind: str, c: dict) -> dict[str, dict]:
    """mount path -> the volume mounted there."""
    volumes = {v["name"]: v for v in pod_spec(kind).get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts", [])}


class Node:
    """A node and a pod's volumes as directories of tmp_path."""

    def __init__(self, tmp_path, admin_token: str):
        self.root = tmp_path / "node"
        self.tmp = tmp_path
        self.admin_token = admin_token

    def on_node(self, node_path: str) -> str:
        return str(self.root) + node_path

    def locate(self, kind: str, c: dict, path: str) -> str:
        """Where a path in container ``c`` is, which must be in one of its volumes."""
        found = [(mount, volume) for mount, volume in mounts(kind, c).items()
                 if path == mount or path.startswith(mount + "/")]
        assert found, f"{c['name']}: {path} is in none of its volumes"
        mount, volume = max(found, key=lambda f: len(f[0]))
        rest = path[len(mount):]
        if "hostPath" in volume:
            return self.on_node(volume["hostPath"]["path"]) + rest
        assert "secret" in volume, volume
        directory = self.tmp / f"secret-{volume['secret']['secretName']}"
        if not directory.exists():
            directory.mkdir()
            for key in secret_keys(volume["secret"]["secretName"]):
                (directory / key).write_text(self.admin_token + "\n")
                os.chmod(directory / key, volume["secret"].get("defaultMode", 0o644))
        return str(directory) + rest

    def prepare(self, kind: str, c: dict) -> None:
        """hostPath volumes of type DirectoryOrCreate exist before the container starts."""
        for volume in mounts(kind, c).values():
            if "hostPath" in volume:
                assert volume["hostPath"]["type"] == "DirectoryOrCreate", volume
                os.makedirs(self.on_node(volume["hostPath"]["path"]), exist_ok=True)

    def rewrite(self, kind: str, c: dict, args: list[str]) -> list[str]:
        """The container's paths in its volumes as this test's directories."""
        return [self.locate(kind, c, a) if in_volume(kind, c, a) else a for a in args]


def in_volume(kind: str, c: dict, path: str) -> bool:
    return any(path == mount or path.startswith(mount + "/") for mount in mounts(kind, c))


def secret_keys(name: str) -> list[str]:
    generator = next(g for g in KUSTOM["secretGenerator"] if g["name"] == name)
    return [entry.split("=", 1)[0] for entry in generator["files"]]


# ---- the files ------------------------------------------------------------------------------

def test_every_file_parses_and_the_kustomization_lists_it():
    on_disk = sorted(f for f in os.listdir(DIR) if f.endswith((".yaml", ".yml")))
    assert sorted(KUSTOM["resources"]) == sorted(set(on_disk) - {KUSTOMIZATION})
    assert len(set(KUSTOM["resources"])) == len(KUSTOM["resources"])
    assert KUSTOM["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert KUSTOM["kind"] == "Kustomization"
    for name, docs in FILES.items():
        assert docs, f"{name} is empty"
        for doc in docs:
            assert KNOWN_KINDS.get(doc["kind"]) == doc["apiVersion"], (name, doc["kind"])
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    assert the("Namespace")["metadata"]["name"] == NAMESPACE
    for doc in OBJECTS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
    keys = [(o["kind"], o["metadata"]["name"]) for o in OBJECTS]
    assert len(keys) == len(set(keys))
    # hostNetwork and hostPath need the privileged Pod Security level.
    assert the("Namespace")["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "privileged"


def test_the_admin_token_secret_is_generated_from_an_uncommitted_file():
    generators = {g["name"]: g for g in KUSTOM["secretGenerator"]}
    referenced = {v["secret"]["secretName"] for o in OBJECTS
                  if o["kind"] in ("Deployment", "DaemonSet")
                  for v in o["spec"]["template"]["spec"].get("volumes", []) if "secret" in v}
    assert referenced and referenced <= set(generators) | {
        o["metadata"]["name"] for o in OBJECTS if o["kind"] == "Secret"}
    for name in referenced & set(generators):
        for entry in generators[name]["files"]:
            source = os.path.join("deploy", "kubernetes", entry.split("=", 1)[-1])
            # Never in git, never in the image built from this directory.
            assert ignored(source), f"{source} is not in .dockerignore"
            done = subprocess.run(["git", "check-ignore", "-q", source], cwd=ROOT)
            assert done.returncode == 0, f"{source} is not in .gitignore"
    for _, c in all_containers():
        for mount in c.get("volumeMounts", []):
            if mount["mountPath"].startswith("/etc/ovsfabric/admin"):
                assert mount.get("readOnly") is True, c["name"]
    for o in OBJECTS:
        if o["kind"] in ("Deployment", "DaemonSet"):
            for v in o["spec"]["template"]["spec"]["volumes"]:
                if "secret" in v:  # security/tokens.py warns of a token others may read
                    assert v["secret"]["defaultMode"] & 0o077 == 0, o["kind"]


def test_labels_and_selectors_match():
    workloads = [o for o in OBJECTS if o["kind"] in ("Deployment", "DaemonSet")]
    for o in workloads:
        template = o["spec"]["template"]["metadata"]["labels"]
        assert o["spec"]["selector"]["matchLabels"].items() <= template.items(), o["kind"]
    service = the("Service")["spec"]["selector"]
    selected = [o["kind"] for o in workloads
                if service.items() <= o["spec"]["template"]["metadata"]["labels"].items()]
    assert selected == ["Deployment"]
    deployment, daemonset = the("Deployment"), the("DaemonSet")
    assert deployment["spec"]["selector"]["matchLabels"] != \
        daemonset["spec"]["selector"]["matchLabels"]


def test_every_image_is_the_one_the_dockerfile_builds():
    image = COMPOSE_SERVICES["controller"]["image"]
    for kind, c in all_containers():
        assert c["image"] == image, (kind, c["name"])
        assert c["imagePullPolicy"] == "IfNotPresent"


def test_every_program_is_in_the_image():
    tools = provided()
    assert dockerfile()[0][1].startswith("debian:")  # sh (dash) and sleep (coreutils)
    base = {"sh", "sleep"}
    for kind, c in all_containers():
        program = c["command"][0]
        assert tools.get(program) or program in base, (kind, c["name"], program)


# ---- the controller -------------------------------------------------------------------------

def serve_args(monkeypatch) -> object:
    from cli import main, serve
    c = container("Deployment", "controller")
    for name, value in environment(c).items():
        monkeypatch.setenv(name, value)
    seen = []
    monkeypatch.setattr(serve, "run", lambda args: seen.append(args) or 0)
    command = argv(c)
    assert command[:2] == ["ovsfabric", "serve"]
    assert main.main(command[1:]) == 0
    return seen[0]


def port_of(c: dict, name: str) -> int:
    return next(p["containerPort"] for p in c["ports"] if p["name"] == name)


def test_the_controller_is_one_replica_on_its_volume(monkeypatch):
    deployment = the("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec("Deployment")
    assert spec["hostNetwork"] is True  # no pod network before the controller answers
    args = serve_args(monkeypatch)
    c = container("Deployment", "controller")
    volume = mounts("Deployment", c)[os.path.dirname(args.state)]
    claim = the("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    token_file = environment(c)["OVSFABRIC_TOKEN_FILE"]
    secret = mounts("Deployment", c)[os.path.dirname(token_file)]["secret"]
    assert os.path.basename(token_file) in secret_keys(secret["secretName"])


def test_the_service_and_probes_reach_the_ports_serve_listens_on(monkeypatch, tmp_path):
    from api.app import create_app
    from api.browsers import Audience
    from cli.serve import split_host_port
    from controller.fabric import Fabric
    from model import Store

    args = serve_args(monkeypatch)
    c = container("Deployment", "controller")
    api_host, api_port = split_host_port(args.api_listen, "--api-listen")
    _, of_port = split_host_port(args.openflow_listen, "--openflow-listen")
    assert port_of(c, "api") == api_port and port_of(c, "openflow") == of_port
    assert args.advertise == f"tcp:{POD['status.podIP']}:{of_port}"
    service = {p["name"]: p for p in the("Service")["spec"]["ports"]}
    assert set(service) == {"api", "openflow"}
    for name, port in service.items():
        assert port["targetPort"] in (name, port_of(c, name)) and port["protocol"] == "TCP"
    assert service["api"]["port"] == api_port
    # The probes: kubelet sends no token and names the pod's address in Host.
    store = Store(str(tmp_path / "state.db"))
    try:
        app = create_app(Fabric(store, args.advertise), "admin-token", Audience(api_host))
        client = app.test_client()
        for probe in ("readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["port"] in ("api", api_port)
            answer = client.get(get["path"], headers={"Host": f"{POD['status.podIP']}:"
                                                              f"{api_port}"})
            assert answer.status_code == 200, (probe, answer.json)
    finally:
        store.close()


# ---- the nodes ------------------------------------------------------------------------------

def test_the_daemonset_runs_everywhere_and_mounts_only_the_cni_and_token_dirs():
    spec = pod_spec("DaemonSet")
    assert spec["hostNetwork"] is True
    assert {"operator": "Exists"} in spec["tolerations"]
    host_paths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert host_paths == {CNI_BIN, CNI_CONF, "/etc/ovsfabric"}
    for c in spec["initContainers"] + spec["containers"]:
        for mount_path, volume in mounts("DaemonSet", c).items():
            if "hostPath" in volume:
                assert mount_path == "/host" + volume["hostPath"]["path"], c["name"]
    names = [c["name"] for c in spec["initContainers"]]
    # The node is a host before its .conflist lets kubelet send it pods.
    assert names.index("register-host") < names.index("install-cni")
    assert names.index("host-token") < names.index("install-cni")


def test_the_services_variables_exist_and_are_in_the_daemonsets_namespace():
    daemonset = the("DaemonSet")
    used = {m for _, c in all_containers() for var in c.get("env", []) if "value" in var
            for m in REFERENCE.findall(var["value"])}
    service_vars = service_variables()
    assert used & set(service_vars)
    for name in used - {v["name"] for _, c in all_containers() for v in c.get("env", [])}:
        assert name in service_vars, name
    # Kubelet gives a pod the variables of its own namespace's Services only.
    assert the("Service")["metadata"]["namespace"] == daemonset["metadata"]["namespace"]


def run_ovsfabric(monkeypatch, c: dict, command: list[str]) -> None:
    from cli import main
    for name, value in environment(c).items():
        monkeypatch.setenv(name, value)
    assert command[0] == "ovsfabric", command
    assert main.main(command[1:]) == 0, command


def test_the_init_containers_make_a_node_the_plugin_can_run_on(monkeypatch, tmp_path):
    """Each init container in turn, as kubelet runs it, on a node made of directories: the
    host token, the registration (against a recording client), the plugin and its
    .conflist."""
    from api.schemas import HostCreate
    from cli import commands
    from cni.request import netconf
    from security import tokens

    node = Node(tmp_path, tokens.new_token())
    name, node_ip = POD["spec.nodeName"], POD["status.hostIP"]

    token_c = container("DaemonSet", "host-token")
    node.prepare("DaemonSet", token_c)
    run_ovsfabric(monkeypatch, token_c, node.rewrite("DaemonSet", token_c, argv(token_c)))

    register_c = container("DaemonSet", "register-host")
    shell, flag, script = argv(register_c)
    assert (shell, flag) == ("sh", "-c")
    calls = []
    monkeypatch.setattr(commands, "run", lambda args: calls.append(args) or 0)
    steps = script.split(" || ")
    assert len(steps) == 2
    for step in steps:
        run_ovsfabric(monkeypatch, register_c, shlex.split(step))
    show, create = calls
    assert (show.handler.__name__, show.name) == ("show_host", name)
    assert create.handler.__name__ == "create_host"
    body = HostCreate(name=create.name, ovsdb=create.ovsdb, tunnel_ip=create.tunnel_ip)
    assert (body.name, body.ovsdb, str(body.tunnel_ip)) == (name, f"tcp:{node_ip}:6640",
                                                           node_ip)
    env = environment(register_c)
    assert show.api == create.api == env["OVSFABRIC_API"] == \
        f"http://{CLUSTER_IP}:{the('Service')['spec']['ports'][0]['port']}"
    admin_file = node.locate("DaemonSet", register_c, env["OVSFABRIC_TOKEN_FILE"])
    assert tokens.load_token(admin_file) == node.admin_token

    install_c = container("DaemonSet", "install-cni")
    node.prepare("DaemonSet", install_c)
    run_ovsfabric(monkeypatch, install_c, node.rewrite("DaemonSet", install_c,
                                                       argv(install_c)))

    conflists = os.listdir(node.on_node(CNI_CONF))
    assert len(conflists) == 1 and conflists[0].startswith("10-ovsfabric-")
    with open(os.path.join(node.on_node(CNI_CONF), conflists[0])) as f:
        conf = json.load(f)
    plugin = conf["plugins"][0]
    netconf({"cniVersion": conf["cniVersion"], "name": conf["name"], **plugin})
    assert plugin["host"] == name and plugin["controller"] == env["OVSFABRIC_API"]
    # The token file is named as the node sees it, and holds this node's host token.
    assert not in_volume("DaemonSet", install_c, plugin["token_file"])
    with open(node.on_node(plugin["token_file"])) as f:
        assert f.read().strip() == tokens.host_token(node.admin_token, name)
    with open(os.path.join(node.on_node(CNI_BIN), plugin["type"]), "rb") as f:
        assert f.readline().startswith(b"#!/usr/bin/python3 ")


def test_the_plugin_is_let_in_by_the_controllers_api(monkeypatch, tmp_path):
    """What the plugin sends: Host is the Service's address, the token the node's."""
    from api.app import create_app
    from api.browsers import Audience
    from cli.serve import split_host_port
    from controller.fabric import Fabric
    from model import Store
    from security import tokens

    args = serve_args(monkeypatch)
    url = environment(container("DaemonSet", "install-cni"))["CONTROLLER_URL"]
    admin = tokens.new_token()
    store = Store(str(tmp_path / "state.db"))
    try:
        app = create_app(Fabric(store, args.advertise), admin,
                         Audience(split_host_port(args.api_listen, "--api-listen")[0]))
        answer = app.test_client().get("/v1/hosts", headers={
            "Host": urlsplit(url).netloc,
            "Authorization": f"Bearer {tokens.host_token(admin, POD['spec.nodeName'])}"})
        assert answer.status_code == 200, answer.json
    finally:
        store.close()


def test_show_fails_for_an_unknown_host_so_that_create_runs(monkeypatch):
    """The registration's `show || create`: show's exit status says whether the host exists."""
    from api.client import ApiError
    from cli import commands, main

    class Client:
        def __init__(self, *args, **kwargs):
            self.url = "http://controller"

        def host(self, name):
            if name != "known":
                raise ApiError(404, f"no host {name}")
            return {"name": name, "ovsdb": "tcp:192.0.2.1:6640", "tunnel_ip": "192.0.2.1",
                    "datapath_type": "system", "bridge": "br-int", "connected": True}

    monkeypatch.setattr(commands, "FabricClient", Client)
    assert main.main(["hosts", "show", "node-1"]) != 0
    assert main.main(["--json", "hosts", "show", "known"]) == 0


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl")
def test_kubectl_kustomize_builds_it(tmp_path):
    """kubectl's own kustomize (offline): the Secret generated, and the volumes given its
    name with the hash."""
    build = tmp_path / "kubernetes"
    shutil.copytree(DIR, build)
    for generator in KUSTOM["secretGenerator"]:
        for entry in generator["files"]:
            (build / entry.split("=", 1)[-1]).write_text("made-up-admin-token\n")
    done = subprocess.run(["kubectl", "kustomize", str(build)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    built = list(yaml.safe_load_all(done.stdout))
    assert len(built) == len(OBJECTS) + len(KUSTOM["secretGenerator"])
    secret = next(o for o in built if o["kind"] == "Secret")
    for o in built:
        if o["kind"] in ("Deployment", "DaemonSet"):
            names = {v["secret"]["secretName"] for v in o["spec"]["template"]["spec"]["volumes"]
                     if "secret" in v}
            assert names == {secret["metadata"]["name"]}, o["kind"]
