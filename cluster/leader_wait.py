"""How a follower answers a write only once the flows are in: it asks the leader, which
programs the switches, to wait for them (``POST /v1/cluster/programmed`` on the leader's
API), instead of watching switch tables it may not write.
"""
from __future__ import annotations

import logging
import time

import requests

LOG = logging.getLogger(__name__)
PATH = "/v1/cluster/programmed"
# While no leader is known (an election under way), how often to look again.
RETRY_S = 0.1


class LeaderWait:
    def __init__(self, election, token: str | None = None):
        self.election = election
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.session = requests.Session()

    def __call__(self, hosts: set[str], revision: int, bound: dict[str, str],
                 timeout: float) -> bool | None:
        """Whether the leader's connected switches among ``hosts`` applied ``revision``
        within ``timeout`` (and ``bound``'s ports are attached): False when they did not, or
        no leader answered; None as soon as this replica leads (it programs them now, and
        waits for its own switches with the time left)."""
        deadline = time.monotonic() + timeout
        body = {"hosts": sorted(hosts), "revision": revision, "bound": bound}
        while (left := deadline - time.monotonic()) > 0:
            if self.election.leads():
                return None
            leader = next((m for m in self.election.members() if m["leader"]), None)
            # Our own name on the leader key while we do not lead: the lease of a process of
            # ours that died (restarted under the same name), until etcd expires it.
            if leader is None or leader["name"] == self.election.name:
                time.sleep(min(RETRY_S, left))
                continue
            try:
                response = self.session.post(leader["api"] + PATH, json={**body, "timeout": left},
                                             headers=self.headers, timeout=left + 1)
                if response.status_code == 200:
                    return bool(response.json()["programmed"])
                LOG.warning("the leader %s answered %d to a wait: %s", leader["name"],
                            response.status_code, response.text[:200])
            except requests.RequestException as exc:
                LOG.info("the leader %s did not answer a wait: %s", leader["name"], exc)
            time.sleep(min(RETRY_S, max(deadline - time.monotonic(), 0)))
        return False
