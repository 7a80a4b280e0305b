"""The Docker remote NetworkDriver and IpamDriver plugin (`ovsfabric plugin`).

It keeps no state of its own: everything it needs later is in the controller, named so that
a restarted plugin finds it again (see naming.py).
"""

DEFAULT_SOCKET = "/run/docker/plugins/ovsfabric.sock"  # where dockerd finds `ovsfabric`
