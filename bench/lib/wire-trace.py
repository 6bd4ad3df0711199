#!/usr/bin/env python3
# The bench's wire trace: run inside the lab's switch namespace, it sees every frame a lab host sends to
# the switch, stamped by the kernel when the frame entered the switch port. One JSON line per frame of
# interest on stdout, times on CLOCK_MONOTONIC in ms (the clock of the bench and of its prober):
#
#   {"t":T,"p":"su1n1","k":"hb","d":8888}              a stayup heartbeat (UDP to 8888..8919)
#   {"t":T,"p":"su1n2","k":"vrrp"}                     a VRRP advert
#   {"t":T,"p":"su1n2","k":"arp","op":1,"ip":"198.18.1.101","tip":"198.18.1.101"}
#   {"t":T,"p":"su1c","k":"syn","ip":"198.18.1.101","mac":"aa:..."}   the client's SYN (dst MAC)
#   {"t":T,"p":"su1n2","k":"synack","ip":"198.18.1.101"}
#
# It is a measuring instrument, not part of stayup: both products are traced the same way, at the same
# point (the switch), so the phases of a failover (last heartbeat out of the frozen node, gratuitous ARP
# of the new holder, its first SYN-ACK) are compared on one clock. Exits on SIGTERM or when stdin closes.
#   python3 wire-trace.py PORT...      (the switch-side veth ends to watch)
import json, os, selectors, signal, socket, struct, sys, time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
HB_PORT_MIN, HB_PORT_MAX = 8888, 8888 + 31


def mac(b):
    return ":".join("%02x" % x for x in b)


def main(ports):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    watched = set(ports)
    # The kernel stamps frames on CLOCK_REALTIME; the bench measures on CLOCK_MONOTONIC.
    def offset():
        return time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_MONOTONIC)

    off = offset()
    off_at = time.monotonic()
    out = sys.stdout
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(json.dumps({"ready": 1, "t": round(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000, 3)}), flush=True)
    while True:
        for key, _ in sel.select(1.0):
            if key.fileobj is sys.stdin:
                if not sys.stdin.buffer.read1(4096):
                    return
                continue
            while True:
                try:
                    data, anc, _flags, addr = s.recvmsg(256, socket.CMSG_SPACE(16))
                except BlockingIOError:
                    break
                ifname, _proto, pkttype = addr[0], addr[1], addr[2]
                if pkttype == PACKET_OUTGOING or ifname not in watched or len(data) < 14:
                    continue
                ts = None
                for level, kind, cdata in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                        sec, nsec = struct.unpack("qq", cdata[:16])
                        ts = sec + nsec / 1e9
                if time.monotonic() - off_at > 5:
                    off, off_at = offset(), time.monotonic()
                t = (ts if ts is not None else time.clock_gettime(time.CLOCK_REALTIME)) - off
                rec = classify(data)
                if rec is None:
                    continue
                rec["t"] = round(t * 1000, 3)
                rec["p"] = ifname
                out.write(json.dumps(rec) + "\n")
            out.flush()


def classify(f):
    eth_type = struct.unpack_from("!H", f, 12)[0]
    if eth_type == 0x0806 and len(f) >= 42:
        op = struct.unpack_from("!H", f, 20)[0]
        return {"k": "arp", "op": op, "mac": mac(f[22:28]), "ip": socket.inet_ntoa(f[28:32]), "tip": socket.inet_ntoa(f[38:42])}
    if eth_type != 0x0800 or len(f) < 34:
        return None
    ihl = (f[14] & 0x0F) * 4
    proto = f[23]
    src, dst = socket.inet_ntoa(f[26:30]), socket.inet_ntoa(f[30:34])
    l4 = 14 + ihl
    if proto == 112:
        return {"k": "vrrp", "ip": src}
    if proto == 17 and len(f) >= l4 + 4:
        dport = struct.unpack_from("!H", f, l4 + 2)[0]
        if HB_PORT_MIN <= dport <= HB_PORT_MAX:
            return {"k": "hb", "ip": src, "d": dport}
        return None
    if proto == 6 and len(f) >= l4 + 14:
        flags = f[l4 + 13]
        syn, ack = flags & 0x02, flags & 0x10
        if syn and not ack:
            return {"k": "syn", "ip": dst, "mac": mac(f[0:6])}
        if syn and ack:
            return {"k": "synack", "ip": src}
    return None


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (KeyboardInterrupt, BrokenPipeError):
        pass
