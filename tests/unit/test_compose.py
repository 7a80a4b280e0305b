"""docker-compose.yml and its Dockerfile, checked without a Docker engine: the structure, and
that every command and path they name exists in the image built from this directory."""
from __future__ import annotations

import fnmatch
import importlib.util
import ipaddress
import os
import py_compile
import re
import shlex
import tomllib

import pytest
import yaml
from tests.helpers import ROOT

HOSTS = ("host1", "host2", "host3")
APP_DIR = "/opt/ovsfabric"  # where the Dockerfile copies the build context
ENTRYPOINT = "compose/host_entrypoint.py"


def read(path: str) -> str:
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


COMPOSE = yaml.safe_load(read("docker-compose.yml"))
SERVICES = COMPOSE["services"]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in read("Dockerfile").splitlines()
                                         if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip()]


def ignored(path: str) -> bool:
    patterns = [p.strip() for p in read(".dockerignore").splitlines()
                if p.strip() and not p.startswith("#")]
    parts = path.split("/")
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.replace("**/", ""))
               or any(fnmatch.fnmatch(part, p.replace("**/", "")) for part in parts)
               or path.startswith(p.rstrip("/") + "/") for p in patterns)


def in_context(image_path: str) -> str:
    """The build-context file an image path under APP_DIR comes from; it must be there and
    not left out by .dockerignore."""
    assert image_path.startswith(APP_DIR + "/"), image_path
    relative = image_path[len(APP_DIR) + 1:]
    assert os.path.exists(os.path.join(ROOT, relative)), f"{relative} is not in the context"
    assert not ignored(relative), f"{relative} is excluded by .dockerignore"
    return os.path.join(ROOT, relative)


def commands() -> list[tuple[str, list[str]]]:
    found = []
    for name, service in SERVICES.items():
        if "command" in service:
            command = service["command"]
            found.append((name, command if isinstance(command, list) else shlex.split(command)))
        test = service.get("healthcheck", {}).get("test")
        if test:
            assert test[0] == "CMD", "exec form: no shell needed in the image"
            found.append((name, test[1:]))
    return found


def apt_packages() -> set[str]:
    runs = " ".join(args for instr, args in dockerfile() if instr == "RUN")
    match = re.search(r"apt-get install ([^&]*)", runs)
    return {w for w in match.group(1).split() if not w.startswith("-")}


# Executables the image provides, and why.
def provided() -> dict[str, bool]:
    packages = apt_packages()
    scripts = tomllib.loads(read("pyproject.toml"))["project"]["scripts"]
    installs_project = any(instr == "RUN" and f"pip install --no-cache-dir {APP_DIR}" in args
                           for instr, args in dockerfile())
    return {"ovsfabric": "ovsfabric" in scripts and installs_project,
            "python3": "python3-venv" in packages, "curl": "curl" in packages}


# ---- the image ----------------------------------------------------------------------------------

def test_dockerfile_builds_what_the_services_run():
    instructions = dockerfile()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("debian:12")
    assert {"openvswitch-switch", "iproute2", "python3-venv", "curl"} <= apt_packages()
    copies = [args.split() for instr, args in instructions if instr == "COPY"]
    assert copies == [[".", APP_DIR]]
    assert ("ENV", "PATH=/opt/venv/bin:$PATH") in instructions
    for needed in ("pyproject.toml", ENTRYPOINT, "docker_plugin/app.py", "lab/hostsetup.py"):
        in_context(f"{APP_DIR}/{needed}")
    assert ignored(".venv") and ignored(".git") and ignored("api/__pycache__/x.pyc")


def test_the_packages_the_entrypoint_imports_are_installed():
    installed = set(tomllib.loads(read("pyproject.toml"))["tool"]["setuptools"]["packages"]
                    ["find"]["include"])
    source = read(ENTRYPOINT)
    imported = set(re.findall(r"^(?:from|import) (\w+)", source, re.M)) - {"__future__"}
    ours = {name for name in imported if os.path.isdir(os.path.join(ROOT, name))}
    assert ours and ours <= installed, ours - installed
    for name in imported - ours:
        assert importlib.util.find_spec(name) is not None, name


def test_every_command_exists_in_the_image(monkeypatch):
    from cli import credentials, main, plugin, serve
    ran = []
    for module, attr in ((serve, "run"), (plugin, "run"), (credentials, "make_token")):
        monkeypatch.setattr(module, attr, lambda args, _n=f"{module.__name__}.{attr}":
                            ran.append(_n) or 0)
    tools = provided()
    for service, argv in commands():
        program, args = argv[0], argv[1:]
        assert tools.get(program), f"{service}: {program} is not in the image"
        for arg in args:
            if arg.startswith(APP_DIR + "/"):
                in_context(arg)
        if program == "python3":
            py_compile.compile(in_context(args[0]), doraise=True)
        elif program == "ovsfabric":
            # The real command line parser: subcommand and every option must be accepted.
            before = len(ran)
            assert main.main(args) == 0, (service, args)
            assert len(ran) == before + 1
    assert sorted(set(ran)) == ["cli.credentials.make_token", "cli.serve.run"]


# ---- the services -------------------------------------------------------------------------------

def test_services_and_roles():
    assert {"controller", *HOSTS} <= set(SERVICES)
    image = SERVICES["controller"]["image"]
    for name, service in SERVICES.items():
        assert service["build"] == "." and service["image"] == image, name
    for name in HOSTS:
        host = SERVICES[name]
        assert host["privileged"] is True and host["init"] is True
        assert host["command"] == ["python3", f"{APP_DIR}/{ENTRYPOINT}"]
        assert host["depends_on"] == {"controller": {"condition": "service_healthy"}}
        assert "/run/ovsfabric" in host["tmpfs"]
    assert SERVICES["controller"]["depends_on"]["token"] == {
        "condition": "service_completed_successfully"}


def addresses(service: str) -> dict[str, ipaddress.IPv4Address]:
    return {net: ipaddress.ip_address(cfg["ipv4_address"])
            for net, cfg in SERVICES[service]["networks"].items()}


def test_addressing_is_consistent():
    subnets = {name: ipaddress.ip_network(net["ipam"]["config"][0]["subnet"])
               for name, net in COMPOSE["networks"].items()}
    seen = set()
    for service in ("controller", *HOSTS):
        for net, ip in addresses(service).items():
            assert ip in subnets[net] and ip not in seen, (service, net, ip)
            seen.add(ip)
    assert set(addresses("controller")) == {"mgmt"}
    assert COMPOSE["networks"]["underlay"].get("internal") is True


def controller_option(option: str) -> str:
    command = SERVICES["controller"]["command"]
    return command[command.index(option) + 1]


def test_hosts_reach_the_controller_and_each_other():
    controller_ip = addresses("controller")["mgmt"]
    api_port = controller_option("--api-listen").rsplit(":", 1)[1]
    assert controller_option("--advertise") == \
        f"tcp:{controller_ip}:{controller_option('--openflow-listen').rsplit(':', 1)[1]}"
    healthcheck = " ".join(SERVICES["controller"]["healthcheck"]["test"])
    assert f"127.0.0.1:{api_port}/" in healthcheck
    required = set(re.findall(r'setting\("(OVSFABRIC_\w+)"\)', read(ENTRYPOINT)))
    assert required == {"OVSFABRIC_HOST", "OVSFABRIC_CONTROLLER", "OVSFABRIC_MGMT_IP",
                        "OVSFABRIC_TUNNEL_IP"}
    for name in HOSTS:
        env, ips = SERVICES[name]["environment"], addresses(name)
        assert required <= set(env), name
        assert env["OVSFABRIC_HOST"] == name
        assert env["OVSFABRIC_CONTROLLER"] == f"http://{controller_ip}:{api_port}"
        assert ipaddress.ip_address(env["OVSFABRIC_MGMT_IP"]) == ips["mgmt"]
        assert ipaddress.ip_address(env["OVSFABRIC_TUNNEL_IP"]) == ips["underlay"]


def test_token_and_plugin_socket_paths_line_up():
    from docker_plugin import DEFAULT_SOCKET
    token_file = SERVICES["token"]["command"][-1]
    declared = set(COMPOSE["volumes"])
    for name in ("controller", *HOSTS):
        service = SERVICES[name]
        assert service["environment"]["OVSFABRIC_TOKEN_FILE"] == token_file
        mounts = dict(v.split(":")[:2] for v in service["volumes"])
        assert mounts["secrets"] == os.path.dirname(token_file)
        assert {src for src in mounts if not src.startswith(".")} <= declared
    for name in HOSTS:
        mounts = dict(v.split(":")[:2] for v in SERVICES[name]["volumes"])
        assert mounts[f"./run/{name}"] == os.path.dirname(DEFAULT_SOCKET)
        assert DEFAULT_SOCKET in SERVICES[name]["healthcheck"]["test"]


def test_entrypoint_finds_the_underlay_nic():
    spec = importlib.util.spec_from_file_location("host_entrypoint",
                                                  os.path.join(ROOT, ENTRYPOINT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = ("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
              "52: eth0    inet 198.18.250.11/24 brd 198.18.250.255 scope global eth0\n"
              "54: eth1    inet 198.18.251.11/24 brd 198.18.251.255 scope global eth1\n")
    assert module.nic_with("198.18.251.11", output) == ("eth1", 24)
    with pytest.raises(SystemExit, match="no interface"):
        module.nic_with("198.18.251.99", output)
