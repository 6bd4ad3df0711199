#!/usr/bin/env python3
# stayup's resident VIP helper: adds an IPv4 address over netlink and sends gratuitous ARP over a packet
# socket, without starting a process per operation (a failover then spawns nothing). Started once per
# mirror engine by src/vip/resident-helper.ts; one JSON request per line on stdin, one JSON answer per
# line on stdout: {"id":N,"ok":true} or {"id":N,"ok":false,"errno":E,"error":"..."}.
#   {"id":1,"op":"add","ip":"198.18.0.100","prefix":24,"iface":"eth0","label":"eth0:vip","garp":1}
#        ("garp": N gratuitous ARP pairs sent as soon as the kernel has the address, so a takeover's first
#         announcement does not wait for another request; if only they fail the answer is
#         {"id":N,"ok":true,"garpError":"..."}: the address is there)
#   {"id":2,"op":"garp","ip":"198.18.0.100","iface":"eth0","count":1}
#   {"id":3,"op":"warm","iface":"eth0"}        (opens the interface's packet socket ahead of time)
import json, os, socket, struct, sys

RTM_NEWADDR = 20
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3
seq = 0


def rta(kind, data):
    length = 4 + len(data)
    return struct.pack("HH", length, kind) + data + b"\0" * ((4 - length % 4) % 4)


def add_address(ip, prefix, iface, label):
    global seq
    seq += 1
    addr = socket.inet_aton(ip)
    body = struct.pack("BBBBI", socket.AF_INET, prefix, 0, 0, socket.if_nametoindex(iface))
    body += rta(IFA_LOCAL, addr) + rta(IFA_ADDRESS, addr)
    if label:
        body += rta(IFA_LABEL, label.encode() + b"\0")
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    msg = struct.pack("IHHII", 16 + len(body), RTM_NEWADDR, flags, seq, 0) + body
    # A socket per add: creating one costs microseconds, and a late answer can never be mistaken for
    # the next request's.
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.settimeout(5)
        s.send(msg)
        while True:
            data = s.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind, _flags, rseq, _pid = struct.unpack_from("IHHII", data, off)
                if kind == NLMSG_ERROR and rseq == seq:
                    err = -struct.unpack_from("i", data, off + 16)[0]
                    if err != 0:
                        raise OSError(err, os.strerror(err))
                    return
                off += max(16, (length + 3) & ~3)


# One packet socket per interface, kept open: binding one waits for an RCU grace period (~10 ms).
packet_sockets = {}


def packet_socket(iface):
    s = packet_sockets.get(iface)
    if s is None:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((iface, 0))
        packet_sockets[iface] = s
    return s


def garp(ip, iface, count):
    addr = socket.inet_aton(ip)
    s = packet_socket(iface)
    mac = s.getsockname()[4]
    if len(mac) != 6:
        raise OSError(22, "interface %s has no Ethernet address" % iface)
    bcast = b"\xff" * 6
    try:
        for _ in range(count):
            # An unsolicited request (arping -U) and a reply (arping -A): hosts update their cache on either.
            for op, target_mac in ((1, b"\0" * 6), (2, bcast)):
                arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + addr + target_mac + addr
                s.send(bcast + mac + b"\x08\x06" + arp)
    except OSError:
        # The interface may have gone away and come back: a new socket next time.
        packet_sockets.pop(iface, None)
        s.close()
        raise


def warm(iface):
    packet_socket(iface)


def main():
    for line in sys.stdin:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        rid = req.get("id")
        out = {"id": rid, "ok": True}
        try:
            if req.get("op") == "add":
                add_address(req["ip"], int(req["prefix"]), req["iface"], req.get("label") or "")
                if int(req.get("garp", 0)) > 0:
                    try:
                        garp(req["ip"], req["iface"], int(req["garp"]))
                    except OSError as e:
                        out["garpError"] = e.strerror or str(e)
            elif req.get("op") == "garp":
                garp(req["ip"], req["iface"], int(req.get("count", 1)))
            elif req.get("op") == "warm":
                warm(req["iface"])
            else:
                raise OSError(22, "unknown op %r" % req.get("op"))
        except OSError as e:
            out = {"id": rid, "ok": False, "errno": e.errno or 0, "error": e.strerror or str(e)}
        except Exception as e:  # a bad request must not end the helper
            out = {"id": rid, "ok": False, "errno": 0, "error": str(e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
