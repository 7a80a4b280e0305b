"""python -m lab up --hosts 3 [--prefix ovf] | python -m lab down [--prefix ovf]"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

from .lab import Lab, cleanup


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab", description="namespace lab for ovsfabric")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="(re)build the lab; it keeps running after this exits")
    up.add_argument("--hosts", type=int, default=3)
    down = sub.add_parser("down", help="remove everything with the prefix, leftovers included")
    for sp in (up, down):
        sp.add_argument("--prefix", default="ovf")
        sp.add_argument("--workdir", default=None, help="default /tmp/<prefix>-lab")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="lab: %(message)s", stream=sys.stderr)

    if args.cmd == "down":
        cleanup(args.prefix, args.workdir)
        return 0
    lab = Lab(n_hosts=args.hosts, prefix=args.prefix, workdir=args.workdir)
    try:
        lab.up()  # on failure, up() has already removed what it built
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    print(f"controller_ip {lab.controller_ip}")
    for h in lab.hosts:
        print(f"{h.name}  netns={h.netns}  ovsdb={h.ovsdb}  tunnel_ip={h.tunnel_ip}  "
              f"mgmt_ip={h.mgmt_ip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
