"""The installed CNI plugin run with a stopwatch on its parts (bench/cni.py's ADD breakdown):
run as ``/usr/bin/python3 -IS cni_breakdown.py <plugin>`` exactly where and as the plugin
runs (same interpreter and flags, the plugin's modules imported from its zipapp), it times
the imports, every controller request and every command the plugin runs, and writes the
plugin's result on stdout and one JSON line of timings on stderr:

    {"t_main": <CLOCK_REALTIME at this script's first line>, "imports_ms", "run_ms",
     "calls": [[kind, what, ms], ...]}

Standard library only. The plugin's code is not changed: two of its functions are wrapped.
"""
import time

T_MAIN = time.time()
P_MAIN = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    sys.path.insert(0, sys.argv[1])  # the zipapp: its modules, as the executable imports them
    from cni import links, plugin  # noqa: F401 - what the executable imports first
    from cni import controller, request, verbs  # noqa: F401 - and what an ADD then imports
    imports_ms = (time.perf_counter() - P_MAIN) * 1000
    calls = []

    real_run = links._run

    def timed_run(argv, stdin=None):
        t = time.perf_counter()
        try:
            return real_run(argv, stdin)
        finally:
            what = " ".join(argv[:2]) if argv[0] != "nsenter" else "nsenter " + argv[2]
            calls.append(["command", what, (time.perf_counter() - t) * 1000])

    links._run = timed_run

    real_request = controller.Controller.request

    def timed_request(self, method, path, body=None, **params):
        t = time.perf_counter()
        try:
            return real_request(self, method, path, body, **params)
        finally:
            where = path.split("?")[0]
            if where.startswith("/v1/endpoints/"):
                where = "/v1/endpoints/{id}"
            calls.append(["rest", f"{method} {where}",
                          (time.perf_counter() - t) * 1000])

    controller.Controller.request = timed_request

    stdin = sys.stdin.buffer.read()
    t = time.perf_counter()
    status, output = plugin.run(os.environ, stdin)
    run_ms = (time.perf_counter() - t) * 1000
    if output is not None:
        sys.stdout.write(json.dumps(output) + "\n")
    sys.stderr.write(json.dumps({"t_main": T_MAIN, "imports_ms": imports_ms,
                                 "run_ms": run_ms, "calls": calls}) + "\n")
    sys.exit(status)


main()
