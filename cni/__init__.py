"""The ``ovsfabric`` CNI plugin: the executable a CNI runtime (kubelet through containerd or
CRI-O, Podman, Nomad) runs to attach a container to a fabric network.

Kubelet runs it for every pod, so it imports only the standard library: it works the host's
interfaces through iproute2 and ethtool, and speaks to the controller's REST API over
``http.client``. That also lets ``ovsfabric cni install`` put it in a CNI bin dir as one
self-contained file (a zipapp), which any Python 3.9+ on the node runs.
"""
