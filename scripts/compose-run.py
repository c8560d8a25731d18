#!/usr/bin/env python3
"""Runs a compose topology without a container engine, from the compose file's own wiring.

Reads `docker-compose -f FILE config` (interpolated, as `docker compose up` would see it)
and the Dockerfile stages the services build, then starts every service as the real
binary from the cargo target dir:
  - entrypoint/command/environment/healthcheck come from the compose file and the stage
    (ENTRYPOINT, CMD, ENV, WORKDIR); `COPY --from=... target/release/NAME DEST` is the
    host binary NAME, `COPY dir/ DEST` the context's dir, bind mounts their source and
    named volumes a fresh temporary dir;
  - service host names (`auth-server:3001`) become 127.0.0.1 and each container port a
    free loopback port; a wildcard listen address (`0.0.0.0:3001`) binds that port on
    127.0.0.1; `localhost:PORT` inside a service is the service itself unless PORT is
    published;
  - a published port (`3001:3001`) is a small proxy on another free loopback port, like
    the engine's: `localhost:3001` as the host's browser sees it becomes `localhost:` that
    port, so issuer and back-channel URLs keep their shapes. It refuses connections from
    the topology's own processes, since inside a container `localhost:3001` is not the
    host: a service that calls its issuer URL instead of its back-channel URL fails here
    as it would under an engine;
  - services start in `depends_on` order, waiting for `service_healthy` with the
    service's own health check command;
  - the other images a topology uses run as stand-ins from this machine's packages, each
    configured from the service's own compose entry: `postgres:*` a private PostgreSQL
    cluster (initdb with POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB, password
    authentication on TCP, so a wrong password fails as it would in the container),
    `redis:*` redis-server with the service's command, `nginx:*` nginx with the
    configuration files mounted into /etc/nginx/conf.d (service names and `listen` ports
    rewritten like every other address), `node:*` the service's command with e2e's
    node_modules/.bin first on PATH (the npm packages the tests pin);
  - network aliases (`aliases: [auth-server]` on two replicas) are a small proxy that
    connects to the first of the aliased services that accepts, like the engine's DNS
    answering with any live container of the alias.
Then it runs the official TypeScript SDK client through the OAuth flow
(e2e/compose-flow.test.js) against the topology's MCP URL and stops everything.

Exit status: 0 when the topology came up healthy and the flow passed, 1 on a failure,
3 when the file has a service this runner cannot start (an image not built here and
without a stand-in).
"""
import argparse
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import yaml

SKIPPED = 3
# The binaries' listeners that default to the container's loopback: {binary: (setting, port)}.
LOOPBACK_LISTENERS = {
    "auth-server": ("AUTH__SERVER__METRICS_LISTEN", 9464),
    "mcp-server": ("MCP__SERVER__METRICS_LISTEN", 9465),
}
FLOW_TIMEOUT = 300


class Unsupported(Exception):
    """A service that needs a container engine (an image not built from this repo)."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seconds(value, default):
    """Compose durations: `5s`, `1m30s`, `500ms`, or a number of seconds."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|us|s|m|h)", str(value)):
        total += float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    return total


# --- Dockerfile stages ------------------------------------------------------------------

def dockerfile_stages(path):
    """{stage: {parent, ENTRYPOINT, CMD, ENV, WORKDIR, COPY: [(from, src, dest)]}}."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else parts[0]
            current = stages.setdefault(name, {"parent": parts[0], "COPY": [], "ENV": {}})
        elif current is None:
            continue
        elif word in ("ENTRYPOINT", "CMD"):
            current[word] = json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
        elif word == "WORKDIR":
            current["WORKDIR"] = rest
        elif word == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', rest):
                current["ENV"][key] = value.strip('"')
        elif word == "COPY":
            args = shlex.split(rest)
            source_stage = next((a.split("=", 1)[1] for a in args if a.startswith("--from=")), None)
            paths = [a for a in args if not a.startswith("--")]
            for src in paths[:-1]:
                current["COPY"].append((source_stage, src, paths[-1]))
    return stages


def stage_chain(stages, name):
    """The stage and its ancestors, nearest first."""
    chain = []
    while name in stages and name not in [c[0] for c in chain]:
        chain.append((name, stages[name]))
        name = stages[name]["parent"]
    return chain


# --- published ports ----------------------------------------------------------------------

def socket_owner_pids(client_port, pids):
    """Which of `pids` holds the loopback TCP socket whose local port is `client_port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == client_port:
                inodes.add(f"socket:[{fields[9]}]")
    owners = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    owners.add(pid)
                    break
            except OSError:
                continue
    return owners


class LoopbackForwarder(threading.Thread):
    """A listener on a free loopback port whose connections `serve` forwards somewhere."""

    def __init__(self):
        super().__init__(daemon=True)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]

    def run(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client):
        raise NotImplementedError

    def splice(self, client, upstream):
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


class PublishedPort(LoopbackForwarder):
    """The host side of a published port: forwards the host's connections to the service
    and refuses the topology's own processes (for them the address is not the host)."""

    def __init__(self, topology, host_port, service, container_port):
        super().__init__()
        self.topology, self.service = topology, service
        self.label = f"localhost:{host_port}"
        self.target_port = topology.port[(service, container_port)]
        # Inside the target's own container `localhost:HOST_PORT` is still the service
        # when it listens on that same port number.
        self.reaches_itself = host_port == container_port

    def serve(self, client):
        pids = {s.process.pid: s.name for s in self.topology.services.values() if s.process}
        owners = {pids[pid] for pid in socket_owner_pids(client.getpeername()[1], pids)}
        if owners and not (self.reaches_itself and owners == {self.service}):
            for name in owners:
                self.topology.refused.add((name, self.label))
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        self.splice(client, upstream)


# --- network aliases ----------------------------------------------------------------------

class AliasProxy(LoopbackForwarder):
    """A network alias shared by several services: each connection goes to the first of
    them that accepts, starting from the next one each time (the engine's DNS answers with
    any live container of the alias)."""

    def __init__(self, target_ports, label):
        super().__init__()
        self.targets, self.label, self.next = target_ports, label, 0

    def serve(self, client):
        order = self.targets[self.next:] + self.targets[:self.next]
        self.next = (self.next + 1) % len(self.targets)
        for port in order:
            try:
                upstream = socket.create_connection(("127.0.0.1", port))
            except OSError:
                continue
            self.splice(client, upstream)
            return
        client.close()


# --- stand-ins for images not built here ---------------------------------------------------

class StandIn:
    """Runs a service whose image is not built from this repository with this machine's
    own package of the same software, configured from the service's compose entry."""

    def load(self, topology, service):
        env = service.spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env if "=" in item)
        service.env = {k: "" if v is None else str(v) for k, v in env.items()}
        command = service.spec.get("command") or []
        service.command = shlex.split(command) if isinstance(command, str) else list(command)

    def fixed_port(self, port):
        return None

    def strings(self, topology, service):
        return []

    def prepare(self, topology, service, cwd):
        raise NotImplementedError

    def environment(self, topology, service, env):
        return env

    def started(self, topology, service):
        pass

    def health(self, topology, service):
        return None

    def cleanup(self):
        pass


def as_postgres_user(argv):
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` account."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + argv
    return argv


def postgres_bin(name):
    found = shutil.which(name)
    if found and name not in ("postgres", "initdb"):
        return found
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name),
                      key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    if versions:
        return versions[-1]
    if found:
        return found
    raise Unsupported(f"PostgreSQL's {name} is not installed (Debian: postgresql)")


class PostgresStandIn(StandIn):
    """A private PostgreSQL cluster, as the official image makes one: POSTGRES_USER the
    superuser with POSTGRES_PASSWORD, POSTGRES_DB created, password authentication on TCP."""

    def load(self, topology, service):
        super().load(topology, service)
        service.container_ports.add(5432)
        self.data = None

    def user(self, service):
        return service.env.get("POSTGRES_USER") or "postgres"

    def database(self, service):
        return service.env.get("POSTGRES_DB") or self.user(service)

    def prepare(self, topology, service, cwd):
        self.data = tempfile.mkdtemp(prefix="compose-run-pg-")
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        password = service.env.get("POSTGRES_PASSWORD", "")
        if not password:
            raise SystemExit(f"service {service.name}: POSTGRES_PASSWORD is empty (the image "
                             "refuses to start without one)")
        pwfile = os.path.join(self.data, "pwfile")
        with open(pwfile, "w") as f:
            f.write(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        cluster = os.path.join(self.data, "cluster")
        init = subprocess.run(as_postgres_user([
            postgres_bin("initdb"), "-D", cluster, "-U", self.user(service), f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-instructions"]),
            capture_output=True, text=True)
        if init.returncode != 0:
            raise SystemExit(f"service {service.name}: initdb failed: {init.stderr.strip()[-500:]}")
        os.unlink(pwfile)
        database = self.database(service)
        if database != "postgres":
            create = subprocess.run(as_postgres_user([postgres_bin("postgres"), "--single", "-D", cluster, "postgres"]),
                                    input=f'CREATE DATABASE "{database}" OWNER "{self.user(service)}";\n',
                                    capture_output=True, text=True)
            if create.returncode != 0:
                raise SystemExit(f"service {service.name}: creating {database} failed: {create.stderr.strip()[-500:]}")
        port = topology.port[(service.name, 5432)]
        return as_postgres_user([postgres_bin("postgres"), "-D", cluster, "-p", str(port), "-k", self.data,
                                 "-c", "listen_addresses=127.0.0.1"])

    def health(self, topology, service):
        return ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", str(topology.port[(service.name, 5432)]),
                "-U", self.user(service), "-d", self.database(service)]

    def cleanup(self):
        if self.data:
            shutil.rmtree(self.data, ignore_errors=True)


class RedisStandIn(StandIn):
    """redis-server with the service's own arguments, on its loopback port."""

    def load(self, topology, service):
        super().load(topology, service)
        service.container_ports.add(6379)

    def prepare(self, topology, service, cwd):
        args = service.command[1:] if service.command[:1] == ["redis-server"] else service.command
        port = topology.port[(service.name, 6379)]
        return [shutil.which("redis-server") or "redis-server", *args, "--port", str(port), "--bind", "127.0.0.1"]

    def health(self, topology, service):
        return ["CMD", "redis-cli", "-h", "127.0.0.1", "-p", str(topology.port[(service.name, 6379)]), "ping"]


class NginxStandIn(StandIn):
    """nginx with the configuration files mounted into /etc/nginx/conf.d, inside a minimal
    main configuration like the image's (which includes conf.d/*.conf in its http block)."""

    def load(self, topology, service):
        super().load(topology, service)
        self.confs = []
        for volume in service.spec.get("volumes") or []:
            source, target = ((volume.get("source"), volume.get("target")) if isinstance(volume, dict)
                              else volume.split(":")[:2])
            if target.startswith("/etc/nginx/conf.d/") and target.endswith(".conf"):
                with open(os.path.abspath(source), encoding="utf-8") as f:
                    self.confs.append((os.path.basename(target), f.read()))
        if not self.confs:
            raise Unsupported(f"service {service.name}: no configuration mounted into /etc/nginx/conf.d")
        for _, text in self.confs:
            for port in re.findall(r"(?m)^\s*listen\s+(\d+)\s*;", text):
                service.container_ports.add(int(port))

    def strings(self, topology, service):
        return [text for _, text in self.confs]

    def prepare(self, topology, service, cwd):
        conf_dir = os.path.join(cwd, "nginx")
        os.makedirs(os.path.join(conf_dir, "conf.d"), exist_ok=True)
        includes = []
        for name, text in self.confs:
            text = topology.rewrite(service, text)
            text = re.sub(r"(?m)^(\s*)listen\s+(\d+)\s*;",
                          lambda m: f"{m.group(1)}listen 127.0.0.1:{topology.port[(service.name, int(m.group(2)))]};",
                          text)
            path = os.path.join(conf_dir, "conf.d", name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            includes.append(f"    include {path};")
        main = os.path.join(conf_dir, "nginx.conf")
        with open(main, "w", encoding="utf-8") as f:
            f.write("worker_processes 1;\n"
                    f"pid {conf_dir}/nginx.pid;\n"
                    f"error_log {conf_dir}/error.log warn;\n"
                    "events { worker_connections 1024; }\n"
                    "http {\n    access_log off;\n"
                    + "".join(f"    {kind}_temp_path {conf_dir}/{kind};\n"
                              for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
                    + "\n".join(includes) + "\n}\n")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        check = subprocess.run([nginx, "-t", "-q", "-p", conf_dir, "-c", main], capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"service {service.name}: nginx rejects the configuration: {check.stderr.strip()[-800:]}")
        return [nginx, "-p", conf_dir, "-c", main, "-g", "daemon off;"]


class NodeStandIn(StandIn):
    """The service's command with this machine's Node.js, run from e2e/ with its
    node_modules/.bin first on PATH: the npm packages the test suite pins, so `npx -y PKG`
    runs the pinned package and fetches nothing. A PORT variable naming one of the
    service's container ports becomes its loopback port."""

    def load(self, topology, service):
        super().load(topology, service)
        entrypoint = service.spec.get("entrypoint") or []
        service.entrypoint = shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)
        if service.env.get("PORT", "").isdigit():
            service.container_ports.add(int(service.env["PORT"]))
        self.e2e = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e")

    def prepare(self, topology, service, cwd):
        argv = topology.argv(service, list(service.entrypoint) + list(service.command))
        if not argv:
            raise SystemExit(f"service {service.name}: a node image with no command")
        return ["/bin/sh", "-c", 'cd "$0" && exec "$@"', os.path.abspath(self.e2e), *argv]

    def health(self, topology, service):
        # An image's health check that probes its port by number (`connect(3005)`) would
        # probe this host's port 3005: the same probe, a TCP connect, on its loopback port.
        port = service.env.get("PORT", "")
        if port.isdigit() and (service.name, int(port)) in topology.port:
            return ["CMD", sys.executable, "-c",
                    f"import socket; socket.create_connection(('127.0.0.1', {topology.port[(service.name, int(port))]}), 2)"]
        return None

    def environment(self, topology, service, env):
        env = dict(env)
        env["PATH"] = os.path.join(os.path.abspath(self.e2e), "node_modules", ".bin") + ":" + env.get("PATH", "")
        if env.get("PORT", "").isdigit() and (service.name, int(service.env["PORT"])) in topology.port:
            env["PORT"] = str(topology.port[(service.name, int(service.env["PORT"]))])
        return env


STAND_INS = {"postgres": PostgresStandIn, "redis": RedisStandIn, "nginx": NginxStandIn, "node": NodeStandIn}


def stand_in_for(service):
    image = str(service.spec.get("image") or "")
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    stand_in = STAND_INS.get(name)
    return stand_in() if stand_in else None


# --- the runner -------------------------------------------------------------------------

def signal_group(process, sig):
    try:
        os.killpg(process.pid, sig)
    except OSError:
        try:
            process.send_signal(sig)
        except OSError:
            pass


class Service:
    def __init__(self, name, spec):
        self.name, self.spec = name, spec
        self.entrypoint, self.command, self.env = [], [], {}
        self.workdir = None
        self.paths = []  # (container prefix, host path), later entries win
        self.container_ports = set()
        self.process = None
        self.log_path = None
        self.stand_in = None  # a StandIn for an image not built from this repository
        self.aliases = []


class Topology:
    def __init__(self, compose_file, bin_dir, workdir):
        self.compose_file = os.path.abspath(compose_file)
        self.bin_dir = bin_dir
        self.workdir = workdir
        config = subprocess.run(["docker-compose", "-f", self.compose_file, "config"],
                                capture_output=True, text=True)
        if config.returncode != 0:
            raise SystemExit(f"docker-compose config rejects {compose_file}:\n{config.stderr}")
        self.config = yaml.safe_load(config.stdout)
        self.services = {n: Service(n, s) for n, s in (self.config.get("services") or {}).items()}
        self.port = {}  # (service, container port) -> free loopback port
        self.published = {}  # host port -> (service, container port)
        self.proxies = {}  # host port -> PublishedPort
        self.refused = set()  # (service, published address) it wrongly called
        self.alias_proxies = {}  # (alias, port) -> AliasProxy
        # Before anything else (binaries, Dockerfile stages): a topology with services
        # that run other images with no stand-in here cannot run at all.
        for service in self.services.values():
            if not service.spec.get("build"):
                service.stand_in = stand_in_for(service)
        foreign = [f"{s.name} ({s.spec.get('image')})" for s in self.services.values()
                   if not s.spec.get("build") and s.stand_in is None]
        if foreign:
            raise Unsupported(f"services {', '.join(foreign)} run images not built from this "
                              "repository, with no stand-in here")
        for service in self.services.values():
            service.aliases = [a for network in (service.spec.get("networks") or {}).values()
                               for a in ((network or {}).get("aliases") or [])
                               if a not in self.services]
            if service.stand_in is None:
                self.load_image(service)
            else:
                service.stand_in.load(self, service)
        self.allocate_ports()

    # Image side: what the Dockerfile stage gives the container.
    def load_image(self, service):
        spec = service.spec
        build = spec.get("build")
        if isinstance(build, str):
            build = {"context": build}
        if not build:
            raise Unsupported(f"service {service.name} runs image {spec.get('image')!r}, "
                              "which is not built from this repository")
        context = build.get("context", ".")
        dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
        stages = dockerfile_stages(dockerfile)
        target = build.get("target") or list(stages)[-1]
        chain = stage_chain(stages, target)
        if not chain:
            raise Unsupported(f"service {service.name}: no stage {target!r} in {dockerfile}")

        def inherited(key):
            return next((stage[key] for _, stage in chain if key in stage), None)

        for _, stage in reversed(chain):
            service.env.update(stage["ENV"])
            for source_stage, src, dest in stage["COPY"]:
                built = re.search(r"/target/[^/]+/([^/]+)$", src)
                if source_stage and built:
                    host = os.path.join(self.bin_dir, built.group(1))
                    if not os.access(host, os.X_OK):
                        raise SystemExit(f"{host} is missing: build the binaries first")
                    service.paths.append((dest.rstrip("/"), host))
                elif source_stage is None:
                    service.paths.append((dest.rstrip("/"), os.path.join(context, src).rstrip("/")))
        service.entrypoint = spec.get("entrypoint") or inherited("ENTRYPOINT") or []
        service.command = spec.get("command") or ([] if spec.get("entrypoint") else inherited("CMD") or [])
        if isinstance(service.entrypoint, str):
            service.entrypoint = shlex.split(service.entrypoint)
        if isinstance(service.command, str):
            service.command = shlex.split(service.command)
        service.workdir = spec.get("working_dir") or inherited("WORKDIR")
        env = spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env if "=" in item)
        service.env.update({k: "" if v is None else str(v) for k, v in env.items()})
        # Listeners our binaries bind to the container's own loopback by default: every
        # container has its own, this host has one, so each service gets its own port.
        for binary, (key, default) in LOOPBACK_LISTENERS.items():
            if any(os.path.basename(str(a)) == binary for a in service.entrypoint[:1] + [h for _, h in service.paths]):
                address = service.env.setdefault(key, f"127.0.0.1:{default}")
                own = re.fullmatch(r"(?:127\.0\.0\.1|localhost):(\d+)", address)
                if own:
                    service.container_ports.add(int(own.group(1)))
        for volume in spec.get("volumes") or []:
            if isinstance(volume, dict):
                source, target, kind = volume.get("source"), volume["target"], volume.get("type")
            else:
                parts = volume.split(":")
                source, target = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
                kind = "bind" if source and source.startswith(("/", ".")) else "volume"
            if kind == "bind":
                host = os.path.abspath(source)
            else:
                host = os.path.join(self.workdir, "volumes", source or f"{service.name}-anonymous")
                os.makedirs(host, exist_ok=True)
            service.paths.append((target.rstrip("/"), host))

    def strings(self, service):
        extra = service.stand_in.strings(self, service) if service.stand_in else []
        return (list(service.env.values()) + list(service.entrypoint) + list(service.command)
                + (list(self.health_test(service) or []) if not service.stand_in else []) + extra)

    def alias_members(self):
        """{alias: [services that carry it]}."""
        members = {}
        for service in self.services.values():
            for alias in service.aliases:
                members.setdefault(alias, []).append(service.name)
        return members

    def host_names(self):
        """Service names and aliases, longest first (for one regex alternation)."""
        return "|".join(re.escape(n) for n in sorted(list(self.services) + list(self.alias_members()),
                                                     key=len, reverse=True))

    def allocate_ports(self):
        names = self.host_names()
        members = self.alias_members()
        for service in self.services.values():
            for port in service.spec.get("ports") or []:
                if isinstance(port, dict):
                    target, published = int(port["target"]), port.get("published")
                else:
                    parts = str(port).split(":")
                    target = int(parts[-1].split("/")[0])
                    published = parts[-2] if len(parts) > 1 else None
                service.container_ports.add(target)
                if published:
                    self.published[int(published)] = (service.name, target)
            for port in service.spec.get("expose") or []:
                service.container_ports.add(int(str(port).split("/")[0]))
            for text in self.strings(service):
                for port in re.findall(r"(?:0\.0\.0\.0|\[::\]):(\d+)", text):
                    service.container_ports.add(int(port))
                for other, port in re.findall(rf"\b({names}):(\d+)\b", text):
                    for name in members.get(other, [other]):
                        self.services[name].container_ports.add(int(port))
                    if other in members:
                        self.alias_proxies[(other, int(port))] = None
        for service in self.services.values():
            for port in sorted(service.container_ports):
                self.port[(service.name, port)] = (service.stand_in.fixed_port(port)
                                                   if service.stand_in else None) or free_port()
        for alias, port in list(self.alias_proxies):
            self.alias_proxies[(alias, port)] = AliasProxy(
                [self.port[(name, port)] for name in members[alias]], f"{alias}:{port}")
        for host_port, (name, target) in self.published.items():
            self.proxies[host_port] = PublishedPort(self, host_port, name, target)

    def health_test(self, service):
        if service.stand_in and service.stand_in.health(self, service):
            return service.stand_in.health(self, service)
        health = service.spec.get("healthcheck") or {}
        if health.get("disable"):
            return None
        test = health.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if not test or test[0] == "NONE":
            return None
        return test

    def rewrite(self, service, text):
        """A string of `service`'s container as the same thing on this host."""
        names = self.host_names()

        def address(m):
            if m.group("service"):  # another service by its compose host name or alias
                key = (m.group("service"), int(m.group("service_port")))
                if key in self.alias_proxies:
                    return f"127.0.0.1:{self.alias_proxies[key].port}"
                return f"127.0.0.1:{self.port[key]}"
            if m.group("wildcard"):  # a listen address on every interface
                return f"127.0.0.1:{self.port[(service.name, int(m.group('wildcard_port')))]}"
            port = int(m.group("loopback_port"))
            # A published port keeps the host's view, so identifiers (issuer, resource)
            # read the same in every service and in the browser.
            if port in self.proxies:
                return f"{m.group('loopback')}:{self.proxies[port].port}"
            if (service.name, port) in self.port:  # its own port, seen from inside
                return f"{m.group('loopback')}:{self.port[(service.name, port)]}"
            return m.group(0)

        # One pass, so that an address written once is never rewritten again.
        text = re.sub(
            rf"\b(?P<service>{names}):(?P<service_port>\d+)\b"
            r"|(?P<wildcard>0\.0\.0\.0|\[::\]):(?P<wildcard_port>\d+)"
            r"|\b(?P<loopback>localhost|127\.0\.0\.1):(?P<loopback_port>\d+)\b",
            address, text)
        # Container paths: the last mount or copy onto a path wins, the longest path first.
        hosts = dict(service.paths)
        if hosts:
            prefixes = "|".join(re.escape(p) for p in sorted(hosts, key=len, reverse=True))
            text = re.sub(rf"(?<![\w/.:-])({prefixes})(?=/|$|[^\w.-])",
                          lambda m: hosts[m.group(1)], text)
        return text

    def argv(self, service, args):
        return [self.rewrite(service, a) for a in args]

    def environment(self, service):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update({k: self.rewrite(service, v) for k, v in service.env.items()})
        return env

    def start(self, service):
        cwd = os.path.join(self.workdir, "cwd", service.name)
        os.makedirs(cwd, exist_ok=True)
        service.log_path = os.path.join(self.workdir, f"{service.name}.log")
        if service.stand_in:
            argv = service.stand_in.prepare(self, service, cwd)
        else:
            argv = self.argv(service, list(service.entrypoint) + list(service.command))
        ports = ", ".join(f"{p}->127.0.0.1:{self.port[(service.name, p)]}"
                          for p in sorted(service.container_ports))
        ports += "".join(f", published {proxy.label}->localhost:{proxy.port}"
                         for proxy in self.proxies.values() if proxy.service == service.name)
        print(f"compose-run: starting {service.name}: {shlex.join(argv)}  [ports {ports}]", flush=True)
        log = open(service.log_path, "wb")
        env = self.environment(service)
        if service.stand_in:
            env = service.stand_in.environment(self, service, env)
        service.process = subprocess.Popen(argv, cwd=cwd, env=env,
                                           stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
        if service.stand_in:
            service.stand_in.started(self, service)

    def healthy_once(self, service):
        test = self.health_test(service)
        if test[0] == "CMD-SHELL":
            argv = ["/bin/sh", "-c", self.rewrite(service, test[1])]
        else:
            argv = self.argv(service, test[1:])
        health = service.spec.get("healthcheck") or {}
        try:
            done = subprocess.run(argv, env=self.environment(service), capture_output=True,
                                  text=True, timeout=seconds(health.get("timeout"), 30))
            return done.returncode == 0, (done.stdout + done.stderr).strip()
        except subprocess.TimeoutExpired:
            return False, "timed out"

    def wait_healthy(self, service):
        health = service.spec.get("healthcheck") or {}
        if self.health_test(service) is None:
            raise SystemExit(f"service {service.name} has no health check to wait for")
        budget = seconds(health.get("start_period"), 0) + \
            seconds(health.get("interval"), 30) * int(health.get("retries", 3))
        deadline = time.monotonic() + max(budget, 10)
        while True:
            if service.process.poll() is not None:
                raise SystemExit(f"service {service.name} exited with {service.process.returncode} "
                                 f"before it was healthy:\n{self.tail(service)}")
            ok, said = self.healthy_once(service)
            if ok:
                print(f"compose-run: {service.name} is healthy ({said})", flush=True)
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"service {service.name} not healthy after {budget:.0f}s: {said}\n"
                                 f"{self.tail(service)}")
            time.sleep(0.3)

    def wiring_faults(self):
        return [f"service {name} called {address}, the host's published address: inside its "
                f"container that is the container itself (use the service name, e.g. a "
                f"back-channel URL)" for name, address in sorted(self.refused)]

    def tail(self, service, lines=40):
        if not service.log_path or not os.path.exists(service.log_path):
            return ""
        with open(service.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def up(self):
        for proxy in list(self.proxies.values()) + list(self.alias_proxies.values()):
            proxy.start()
        started = set()
        while len(started) < len(self.services):
            ready = [s for s in self.services.values() if s.name not in started
                     and set(self.depends_on(s)) <= started]
            if not ready:
                raise SystemExit("depends_on has a cycle")
            for service in ready:
                for dependency, condition in self.depends_on(service).items():
                    if condition == "service_healthy":
                        self.wait_healthy(self.services[dependency])
                self.start(service)
                started.add(service.name)
        for service in self.services.values():
            if self.health_test(service) is not None:
                self.wait_healthy(service)

    def depends_on(self, service):
        deps = service.spec.get("depends_on") or {}
        if isinstance(deps, list):
            return {d: "service_started" for d in deps}
        return {d: (c or {}).get("condition", "service_started") for d, c in deps.items()}

    def down(self):
        for proxy in list(self.proxies.values()) + list(self.alias_proxies.values()):
            proxy.close()
        # Each service is the leader of its own process group (start_new_session): the
        # signal reaches what it started too (runuser's postgres, npx's node, nginx's
        # workers).
        for service in reversed(list(self.services.values())):
            if service.process and service.process.poll() is None:
                signal_group(service.process, signal.SIGTERM)
        for service in self.services.values():
            if service.process:
                try:
                    service.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    signal_group(service.process, signal.SIGKILL)
                    service.process.wait()
            if service.stand_in:
                service.stand_in.cleanup()

    def gateway_services(self):
        """The services that run mcp-server in gateway mode (an upstream in their
        environment or command line)."""
        return sorted(s.name for s in self.services.values()
                      if any(k.endswith(("__UPSTREAM__URL", "__UPSTREAM__COMMAND")) and v for k, v in s.env.items())
                      or any(a in ("--upstream-url", "--upstream-cmd") for a in s.command))

    def entry_urls(self):
        """The MCP URL and issuer a browser on the host uses: the resource (and issuer) a
        service is configured with whose port is published."""
        published_ports = {proxy.port for proxy in self.proxies.values()}

        def browser_facing(key_suffix):
            found = set()
            for service in self.services.values():
                for key, value in service.env.items():
                    if key.endswith(key_suffix):
                        url = self.rewrite(service, value)
                        port = re.match(r"https?://localhost:(\d+)", url)
                        if port and int(port.group(1)) in published_ports:
                            found.add(url)
            return found

        return browser_facing("__SERVER__RESOURCE"), browser_facing("__SERVER__ISSUER")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compose_file")
    parser.add_argument("--bin-dir", required=True, help="where the built binaries are")
    parser.add_argument("--mcp-url", help="the MCP URL as written in the compose file "
                        "(default: the one published resource the services are configured with)")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    # A stop from outside (CI timeout, Ctrl-C) still stops the services (`finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    workdir = tempfile.mkdtemp(prefix="compose-run-")
    topology = None
    try:
        try:
            topology = Topology(args.compose_file, os.path.abspath(args.bin_dir), workdir)
        except Unsupported as e:
            print(f"compose-run: SKIPPED {args.compose_file}: {e}; it needs a container engine")
            return SKIPPED
        resources, issuers = topology.entry_urls()
        if args.mcp_url:
            any_service = next(iter(topology.services.values()))
            resources = {topology.rewrite(any_service, args.mcp_url)}
        if len(resources) != 1:
            print(f"compose-run: cannot tell the MCP URL ({sorted(resources)}); pass --mcp-url")
            return 1
        topology.up()
        mcp_url = resources.pop()
        env = dict(os.environ, MCP_URL=mcp_url)
        if len(issuers) == 1:
            env["ISSUER"] = issuers.pop()
        if topology.gateway_services():
            env["GATEWAY"] = ",".join(topology.gateway_services())
        print(f"compose-run: OAuth flow of the official TypeScript SDK client against {mcp_url}", flush=True)
        try:
            flow = subprocess.run(["node", "--test", "--test-concurrency=1", "compose-flow.test.js"],
                                  cwd=os.path.join(repo, "e2e"), env=env, timeout=FLOW_TIMEOUT)
        except subprocess.TimeoutExpired:
            flow = subprocess.CompletedProcess([], 1)
            print(f"compose-run: the OAuth flow did not finish in {FLOW_TIMEOUT} s")
        faults = topology.wiring_faults()
        for fault in faults:
            print(f"compose-run: {fault}")
        if flow.returncode != 0 or faults:
            for service in topology.services.values():
                print(f"--- {service.name} log (tail)\n{topology.tail(service)}")
            return 1
        return 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(f"compose-run: {e.code}")
            for fault in topology.wiring_faults() if topology else []:
                print(f"compose-run: {fault}")
            return 1
        raise
    finally:
        if topology:
            topology.down()
        if not args.keep_logs:
            subprocess.run(["rm", "-rf", workdir], check=False)
        else:
            print(f"compose-run: logs kept in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
