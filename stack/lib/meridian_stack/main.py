"""The command line of a slot process: which release this is, the region's
settings, where to listen, and serving until SIGTERM."""

import argparse
import os
import signal
import sys
import threading

from . import inference, knowledge
from .config import ConfigError, Release, read_mappings
from .service import Server

BUILDERS = {"inference": inference.build, "knowledge-base": knowledge.build}


def arguments(argv):
    parser = argparse.ArgumentParser(prog="serve", description="A service of meridian's example stack.")
    parser.add_argument("--address", required=True, help="the address to bind: the host's service address")
    parser.add_argument("--port", required=True, type=int, help="the slot's port")
    parser.add_argument("--slot", required=True, choices=["blue", "green"], help="the slot this process runs in")
    parser.add_argument("--root", help="the host root, whose config/<component>/server.yaml is read")
    parser.add_argument("--release", help="the release folder (default: the folder above bin/)")
    return parser.parse_args(argv)


def load(options, entry):
    """(release folder, release, the region's settings) named by the command line."""
    folder = options.release or os.path.dirname(os.path.dirname(os.path.abspath(entry)))
    release = Release.read(os.path.join(folder, "release.json"))
    if release.component not in BUILDERS:
        raise ConfigError(f"{folder}/release.json: component {release.component!r} is not one of {', '.join(sorted(BUILDERS))}")
    settings = {}
    if options.root:
        settings = read_mappings(os.path.join(options.root, "config", release.component, "server.yaml"))
    return folder, release, settings


def run(argv, entry):
    """Builds the release's service and serves until SIGTERM or SIGINT; requests
    in flight are answered before it exits. Returns the exit status."""
    options = arguments(argv)
    try:
        folder, release, settings = load(options, entry)
        service = BUILDERS[release.component](folder, release, settings, options.slot)
        server = Server(options.address, options.port, service)
    except ConfigError as failure:
        sys.stderr.write(f"serve: {failure}\n")
        return 2
    except OSError as failure:
        sys.stderr.write(f"serve: cannot listen on {options.address} port {options.port}: {failure.strerror or failure}\n")
        return 1

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # A parent may have blocked them (some process launchers do); a stop must reach us.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    faults = release.faults
    detail = f"; faults: error_rate {faults.error_rate}, added_latency {faults.added_latency} s" if faults.any else ""
    service.log("info", f"listening on {options.address} port {options.port}{detail}")
    server.serve_forever()
    server.server_close()
    service.log("info", "stopped")
    return 0
