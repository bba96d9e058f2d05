"""Shared pieces of meridian's benchmark scripts (bench-plan, bench-scale, bench-bytes).

Test hosts, the delaying proxy, fleets, the OpenSSH handshake floor, and
timing a command with its own wall time, CPU time and peak memory (from
wait4, so each figure belongs to that one command and its children).
Nothing here is used by tests; ansible-core and pyinfra come from a private
virtualenv made only for the benchmarks.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MERIDIAN_BENCH_BUILD=debug runs the debug binaries: only to try a script out, never for recorded numbers.
BUILD = os.environ.get("MERIDIAN_BENCH_BUILD", "release")
MERIDIAN = os.path.join(ROOT, ".build", BUILD, "meridian")
TESTHOSTS = os.path.join(ROOT, ".build", BUILD, "meridian-testhosts")
PROXY = os.path.join(ROOT, "scripts", "wan-proxy")
PROXY_PORT_OFFSET = 2000  # the proxy for HOST:PORT listens on HOST:PORT+2000


def arg(name, default):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def require_binaries():
    for tool in (MERIDIAN, TESTHOSTS):
        if not os.path.exists(tool):
            sys.exit(f"{tool} is missing: run `swift build -c {BUILD} --product meridian` and "
                     f"`swift build -c {BUILD} --product meridian-testhosts` first (one product per build)")
    if BUILD != "release":
        print(f"note: {BUILD} binaries (MERIDIAN_BENCH_BUILD): these numbers are not for the record", file=sys.stderr)


def run(argv, env=None, check=True):
    result = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and result.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])}… exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


class Sample:
    """One timed command: wall seconds, CPU seconds (user + system, with its children), peak RSS in KiB."""

    def __init__(self, wall, cpu, rss_kib, round_trips=None):
        self.wall, self.cpu, self.rss_kib = wall, cpu, rss_kib
        # Per host, counted by the delaying proxy (None without one).
        self.round_trips = round_trips


def timed(argv, env=None, expect=(0,), stdin=None, cwd=None):
    """Runs argv to completion and measures it alone (wait4's rusage of this child)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err,
                                   stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
        if stdin is not None:
            process.stdin.write(stdin.encode())
            process.stdin.close()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode not in expect:
            out.seek(0)
            err.seek(0)
            sys.exit(f"{' '.join(argv[:4])}… exited {process.returncode} (expected {expect}):\n"
                     f"{out.read().decode(errors='replace')[-3000:]}\n{err.read().decode(errors='replace')[-3000:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def median(samples):
    def mid(values):
        values = sorted(values)
        return values[len(values) // 2]
    trips = [s.round_trips for s in samples if s.round_trips is not None]
    return Sample(mid(s.wall for s in samples), mid(s.cpu for s in samples), mid(s.rss_kib for s in samples),
                  mid(trips) if len(trips) == len(samples) else None)


def cell(sample):
    return f"{sample.wall:.2f} s ({sample.cpu:.2f} s CPU)"


def venv():
    """ansible-core and pyinfra in a private virtualenv, made once."""
    path = os.path.join(tempfile.gettempdir(), "meridian-bench-venv")
    if not os.path.exists(os.path.join(path, "bin", "pyinfra")) or not os.path.exists(os.path.join(path, "bin", "ansible-playbook")):
        run([sys.executable, "-m", "venv", path])
        run([os.path.join(path, "bin", "pip"), "install", "-q", "ansible-core", "pyinfra"])
    return os.path.join(path, "bin")


def versions(bench_bin):
    ansible = run([os.path.join(bench_bin, "ansible-playbook"), "--version"], check=False).stdout.split("\n")[0]
    pyinfra = run([os.path.join(bench_bin, "pyinfra"), "--version"], check=False).stdout.strip()
    return ansible, pyinfra


class Cluster:
    """sshd test hosts started with meridian-testhosts, each listening on `ports`."""

    def __init__(self, directory, count, prefix, extra_ports=None):
        self.directory = directory
        argv = [TESTHOSTS, "up", "--count", str(count), "--dir", directory, "--prefix", prefix]
        if extra_ports:
            argv += ["--extra-ports", f"{extra_ports[0]}-{extra_ports[-1]}"]
        run(argv)
        self.ports = [22] + list(extra_ports or [])
        self.identity = os.path.join(directory, "id_ed25519")
        self.keys = {}
        with open(os.path.join(directory, "known_hosts")) as f:
            for line in f:
                name, key = line.strip().split(" ", 1)
                self.keys[re.sub(r"^\[(.*)\]:\d+$", r"\1", name)] = key
        self.machines = [{"name": f"host{i + 1}", "address": f"{prefix}.{i + 1}", "dir": f"{directory}/hosts/host{i + 1}"} for i in range(count)]

    def down(self):
        run([TESTHOSTS, "down", "--dir", self.directory], check=False)

    def hosts(self, count, via_proxy=False):
        """`count` fleet hosts: every port of the first machine, then of the next, … (each with its own root)."""
        out = []
        for port in self.ports:
            for machine in self.machines:
                if len(out) == count:
                    break
                suffix = "" if port == 22 else f"-{port}"
                root = f"{machine['dir']}/root" + ("" if port == 22 else f"/p{port}")
                os.makedirs(root, exist_ok=True)
                out.append({"name": machine["name"] + suffix, "address": machine["address"], "target_port": port,
                            "port": port + PROXY_PORT_OFFSET if via_proxy else port, "root": root})
        if len(out) < count:
            sys.exit(f"{count} hosts asked for, the cluster offers {len(out)}")
        return sorted(out, key=lambda h: (h["port"], h["address"]))

    def known_hosts(self, path, hosts):
        with open(path, "w") as f:
            for h in hosts:
                name = h["address"] if h["port"] == 22 else f"[{h['address']}]:{h['port']}"
                f.write(f"{name} {self.keys[h['address']]}\n")


class Proxy:
    """scripts/wan-proxy in front of the given hosts, adding `rtt_ms` to every round trip
    and counting each connection's round trips in its log."""

    def __init__(self, work, hosts, rtt_ms):
        mapping = os.path.join(work, "proxy-map")
        self.log = os.path.join(work, "proxy-log")
        self.rtt_ms = rtt_ms
        open(self.log, "w").close()
        with open(mapping, "w") as f:
            for h in hosts:
                f.write(f"{h['address']}:{h['port']}={h['address']}:{h['target_port']}\n")
        self.process = subprocess.Popen([sys.executable, PROXY, "--rtt-ms", str(rtt_ms), "--map-file", mapping, "--log", self.log],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            sys.exit(f"wan-proxy did not start: {line}{self.process.stderr.read()}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)

    def entries(self):
        with open(self.log) as f:
            return [line.split() for line in f if line.strip()]

    def counted(self, hosts, measure):
        """Runs `measure` and sets its sample's round trips per host from the connections it closed."""
        before = len(self.entries())
        sample = measure()
        # A connection's line is written once the proxy has passed its end on, half a round trip later.
        time.sleep(self.rtt_ms / 1000 + 0.5)
        sample.round_trips = sum(int(e[1]) for e in self.entries()[before:]) / len(hosts)
        return sample


def ssh_argv(cluster, known_hosts):
    return ["ssh", "-F", "/dev/null", "-i", cluster.identity, "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "KexAlgorithms=curve25519-sha256", "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-l", "root"]


def handshake_floor(work, cluster, hosts, known_hosts, parallelism):
    """`ssh HOST true` to every host, `parallelism` at a time: what opening the connections costs."""
    listing = os.path.join(work, "floor-hosts")
    with open(listing, "w") as f:
        for h in hosts:
            f.write(f"{h['port']} {h['address']}\n")
    command = f"xargs -P {parallelism} -L 1 sh -c '{' '.join(ssh_argv(cluster, known_hosts))} -p \"$0\" \"$1\" true' < {listing}"
    return timed(["sh", "-c", command])


def write_fleet(fleet, cluster, hosts, known_hosts, files, value, parallelism, extra_template_text=""):
    """5 regions (or fewer) whose hosts each get the rendered `files` plus the region's governance bundle."""
    for sub in ("regions", "policies", "templates"):
        os.makedirs(os.path.join(fleet, sub), exist_ok=True)
    for old in os.listdir(os.path.join(fleet, "regions")):
        os.remove(os.path.join(fleet, "regions", old))
    with open(os.path.join(fleet, "meridian.yaml"), "w") as f:
        f.write(f"""version: 1
name: bench
defaults:
  parallelism: {max(1, parallelism)}
  ssh:
    user: root
    identity: {cluster.identity}
    agent: false
    known_hosts: {known_hosts}
    connect_timeout: 30s
    command_timeout: 300s
components:
  idle:
    artifact: artifacts/idle/{{version}}
    start: [bin/idle]
    ports: {{ blue: 18000, green: 18001 }}
platform:
  idle: 1.0.0
""")
    for index, name in enumerate(files):
        with open(os.path.join(fleet, "templates", f"{index}.tmpl"), "w") as f:
            f.write(f"file: {name}\nregion: {{{{ region.name }}}}\nhost: {{{{ host.name }}}}\n")
            if index == 0:
                f.write(f"value: {value}\n")
                f.write(extra_template_text)
    with open(os.path.join(fleet, "policies", "residency.yaml"), "w") as f:
        f.write("residency:\n  - data: EU\n    allowed: [EU]\n")
    per_region = max(1, (len(hosts) + 4) // 5)
    for r in range(0, len(hosts), per_region):
        region = f"r{r // per_region}"
        text = f"name: {region}\njurisdiction: EU\nhosts:\n"
        for host in hosts[r:r + per_region]:
            text += f"  - {{ name: {host['name']}, address: {host['address']}, port: {host['port']}, root: {host['root']}, roles: [gateway] }}\n"
        text += "config:\n"
        for index, name in enumerate(files):
            text += f"  - {{ template: templates/{index}.tmpl, destination: {name} }}\n"
        text += "policies: [residency]\n"
        with open(os.path.join(fleet, "regions", f"{region}.yaml"), "w") as f:
            f.write(text)
