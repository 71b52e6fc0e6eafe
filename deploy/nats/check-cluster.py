#!/usr/bin/env python3
"""check-cluster.py — run deploy/nats/nats.conf + auth.conf as a real 3-node
cluster on loopback and check what the deployment relies on:

  * the three servers form a cluster (routes over TLS) with JetStream;
  * the permission matrix of auth.conf: what gateway, worker, admin and sys
    certificates may and may not do;
  * a client without a certificate is refused;
  * the admin creates the outcome stream from outcome-stream.json with 3
    replicas (what the compose `nats-init` service and the Kubernetes Job do).

    check-cluster.py CERT_DIR [NATS_SERVER]

CERT_DIR comes from gen-certs.sh. Ports are picked free on 127.0.0.1; the
servers are stopped at the end. Python standard library only.
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_config(text, i, certs, ports, store):
    """deploy/nats/nats.conf with loopback ports and local paths."""
    text = text.replace("/certs/", certs.rstrip("/") + "/")
    text = text.replace("/data/jetstream", store)
    text = re.sub(r"(?m)^port: 4222$", f"port: {ports[i]['client']}", text)
    text = re.sub(r"(?m)^http_port: 8222$", f"http_port: {ports[i]['http']}", text)
    text = re.sub(r"(?m)^  port: 6222$", f"  port: {ports[i]['cluster']}", text)
    for j in range(3):
        text = text.replace(f"nats-route://nats-{j + 1}:6222", f"nats-route://127.0.0.1:{ports[j]['cluster']}")
    return text


def session(certs, port, who, lines):
    """Connects (with WHO's certificate, or none), sends LINES, returns what came back."""
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    if who:
        ctx.load_cert_chain(os.path.join(certs, f"{who}.pem"), os.path.join(certs, f"{who}-key.pem"))
    raw = socket.create_connection(("localhost", port), timeout=5)
    raw.recv(65536)  # INFO, in clear before the TLS upgrade
    try:
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        payload = b'CONNECT {"verbose":true,"pedantic":false,"tls_required":true,"headers":true}\r\n'
        payload += b"".join(line.encode() + b"\r\n" for line in lines) + b"PING\r\n"
        tls.sendall(payload)
        out = b""
        while b"PONG\r\n" not in out:
            data = tls.recv(65536)
            if not data:
                break
            out += data
        tls.close()
        return out.decode(errors="replace")
    except (ssl.SSLError, OSError) as e:
        return f"TLS refused: {e}"


def request(certs, port, who, subject, body, timeout=5):
    """A request/reply as WHO; the JSON reply, or None."""
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    ctx.load_cert_chain(os.path.join(certs, f"{who}.pem"), os.path.join(certs, f"{who}-key.pem"))
    raw = socket.create_connection(("localhost", port), timeout=timeout)
    raw.recv(65536)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(b'CONNECT {"verbose":false,"pedantic":false,"tls_required":true}\r\n'
                b"SUB _INBOX.check 1\r\n"
                + f"PUB {subject} _INBOX.check {len(body)}\r\n".encode() + body + b"\r\n")
    out, end = b"", time.time() + timeout
    try:
        while time.time() < end:
            m = re.search(rb"MSG _INBOX\.check 1 (\d+)\r\n", out)
            if m and len(out) >= m.end() + int(m.group(1)):
                return json.loads(out[m.end():m.end() + int(m.group(1))])
            data = tls.recv(65536)
            if not data:
                break
            out += data
            if b"PING\r\n" in out:
                tls.sendall(b"PONG\r\n")
                out = out.replace(b"PING\r\n", b"")
    except (OSError, ValueError):
        pass
    finally:
        tls.close()
    return None


def main():
    certs = os.path.abspath(sys.argv[1])
    server = sys.argv[2] if len(sys.argv) > 2 else "nats-server"
    conf = open(os.path.join(HERE, "nats.conf")).read()
    stream_json = open(os.path.join(HERE, "outcome-stream.json")).read()
    tmp = tempfile.mkdtemp(prefix="routemesh-nats-")
    with open(os.path.join(HERE, "auth.conf")) as src, open(os.path.join(tmp, "auth.conf"), "w") as dst:
        dst.write(src.read())
    ports = [{"client": free_port(), "cluster": free_port(), "http": free_port()} for _ in range(3)]
    procs = []
    failures = []
    try:
        for i in range(3):
            path = os.path.join(tmp, f"nats-{i + 1}.conf")
            with open(path, "w") as f:
                f.write(node_config(conf, i, certs, ports, os.path.join(tmp, f"js-{i + 1}")))
            log = open(os.path.join(tmp, f"nats-{i + 1}.log"), "w")
            env = dict(os.environ, SERVER_NAME=f"nats-{i + 1}")
            procs.append(subprocess.Popen([server, "-c", path], env=env, stdout=log, stderr=subprocess.STDOUT))
        # Ready: every server healthy with JetStream, and routed to both others.
        deadline = time.time() + 30
        while True:
            try:
                ok = True
                for p in ports:
                    urllib.request.urlopen(f"http://127.0.0.1:{p['http']}/healthz", timeout=2)
                    routez = json.load(urllib.request.urlopen(f"http://127.0.0.1:{p['http']}/routez", timeout=2))
                    ok &= routez.get("num_routes", 0) >= 2
                if ok:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit(f"check-cluster: the cluster did not form in 30 s (logs in {tmp})")
            time.sleep(0.3)
        print("check-cluster: 3 servers up, each routed to the other two (TLS routes), JetStream on")

        port = ports[0]["client"]
        cases = [
            ("worker", ["SUB routemesh.classify.minilm minilm 1"], None, "worker: subscribe in its pool's queue group"),
            ("worker", ["SUB $SRV.PING 1"], None, "worker: answer $SRV discovery"),
            ("worker", ["SUB routemesh.classify.minilm 1"], "Permissions Violation", "worker: plain subscribe (outside a queue group) refused"),
            ("worker", ["PUB routemesh.outcome.v1 2", "{}"], "Permissions Violation", "worker: publish refused"),
            ("gateway", ["PUB routemesh.classify.minilm 2", "{}"], None, "gateway: send classify requests"),
            ("gateway", ["PUB routemesh.outcome.v1 2", "{}"], None, "gateway: publish outcomes"),
            ("gateway", ["SUB _INBOX.abc.* 1"], None, "gateway: receive replies on its inbox"),
            ("gateway", ["SUB routemesh.classify.minilm minilm 1"], "Permissions Violation", "gateway: serving a pool refused"),
            ("gateway", ["PUB $JS.API.STREAM.DELETE.ROUTEMESH_OUTCOMES 0", ""], "Permissions Violation", "gateway: deleting the stream refused"),
            ("sys", ["SUB $SYS.REQ.SERVER.PING 1"], None, "sys: system account subjects"),
            (None, [], "TLS refused", "no certificate: refused"),
        ]
        for who, lines, expect, what in cases:
            out = session(certs, port, who, lines)
            good = (expect is None and "-ERR" not in out and "PONG" in out) or (expect is not None and expect in out)
            print(f"  {'ok  ' if good else 'FAIL'} {what}")
            if not good:
                failures.append(f"{what}: {out.strip()[:200]}")

        # The admin creates the outcome stream (what nats-init / the Job do).
        # Creating it again with the same config succeeds, so retry while the
        # JetStream meta leader is still being elected.
        reply, deadline = None, time.time() + 30
        while time.time() < deadline:
            reply = request(certs, ports[1]["client"], "admin",
                            "$JS.API.STREAM.CREATE.ROUTEMESH_OUTCOMES", stream_json.encode())
            if reply and "error" not in reply:
                break
            time.sleep(0.5)
        replicas = (reply or {}).get("config", {}).get("num_replicas")
        good = replicas == 3 and reply is not None and "error" not in reply
        print(f"  {'ok  ' if good else 'FAIL'} admin: outcome stream created from outcome-stream.json, replicas={replicas}")
        if not good:
            failures.append(f"stream create: {reply}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    if failures:
        print(f"check-cluster: {len(failures)} check(s) failed (server logs in {tmp}):", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(tmp, ignore_errors=True)
    print("check-cluster: all checks passed")


if __name__ == "__main__":
    main()
