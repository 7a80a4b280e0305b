# One image for the controller and the hosts of docker-compose.yml.
FROM debian:12-slim

# openvswitch-switch: ovsdb-server, ovs-vswitchd and their tools (Open vSwitch 3.1).
# iproute2: the host set-up (lab/hostsetup.py). curl: health checks and the plugin's socket.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        openvswitch-switch iproute2 iputils-ping ethtool procps curl ca-certificates \
        python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/ovsfabric
COPY . /opt/ovsfabric
# At the versions the tests ran with (constraints.txt), the build backend included.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -c /opt/ovsfabric/constraints.txt --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir /opt/ovsfabric \
        -c /opt/ovsfabric/constraints.txt --build-constraint /opt/ovsfabric/constraints.txt
ENV PATH=/opt/venv/bin:$PATH

CMD ["ovsfabric", "--help"]
