#!/usr/bin/env python3
# Memory a relay holds for unauthenticated WebSocket messages (security review finding 11,
# docs/SECURITY.md): 40 connections, each sends one Hello-kind binary message of 8 MiB minus its
# last byte, then the relay's RSS is read. Usage: ws_mem.py PORT RELAY_PID (a relay started with
# --listen 127.0.0.1:PORT). Certificates are not checked: this measures, it does not test TLS.
import socket, ssl, struct, sys, time, subprocess, os
port = int(sys.argv[1]); pid = int(sys.argv[2]); n = 40
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])//1024
ctx = ssl.create_default_context(); ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE
print("before", rss(), "MiB")
conns=[]
L = 8*1024*1024
for i in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(b"GET /v1/agent HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    h=b""
    while not h.endswith(b"\r\n\r\n"): h+=s.recv(1)
    msg = bytes([0x82, 0x80|127]) + struct.pack(">Q", L) + b"\0\0\0\0" + b"\x01" + struct.pack(">I", L-5)
    s.settimeout(0.5)
    body = b"x"*(L-6)
    try:
        s.sendall(msg+body)
    except Exception as e:
        pass
    conns.append(s)
time.sleep(1)
print("holding", n, "connections:", rss(), "MiB")
