"""Starts os-ken inside this process (os-ken 4 ships no ryu-manager) on native threads."""
from __future__ import annotations

from os_ken import cfg
from os_ken.base import app_manager

from security.tls import os_ken_options

from . import os_ken_fixes


def start_openflow(fabric, listen_host: str, listen_port: int, identity=None) -> list:
    """Starts the OpenFlow listener and the fabric app; returns os-ken's service threads.

    With a TLS identity the listener speaks only TLS and requires the switches' certificates
    to be signed by the identity's CA."""
    import os_ken.controller.controller  # noqa: F401  (registers the ofp_* options)

    from .app import FabricApp

    os_ken_fixes.apply(fabric.session_for)  # first: another os-ken stops here
    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", listen_host)
    if identity is None:
        cfg.CONF.set_override("ofp_tcp_listen_port", listen_port)
    else:
        cfg.CONF.set_override("ofp_ssl_listen_port", listen_port)
        for option, value in os_ken_options(identity).items():
            cfg.CONF.set_override(option, value)
    FabricApp.fabric = fabric
    manager = app_manager.AppManager.get_instance()
    manager.load_apps(["controller.app"])
    contexts = manager.create_contexts()
    return manager.instantiate_apps(**contexts)

