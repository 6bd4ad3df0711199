/*
 * stayup_net: the two kernel calls of a virtual IP takeover, made from the daemon's own thread.
 *
 *   addAddress(ip, prefixLen, iface, label)  RTM_NEWADDR over rtnetlink (create, exclusive), ACK awaited
 *   garp(ip, iface, count)                   `count` gratuitous ARP pairs (request + reply) on a packet socket
 *   warm(iface)                              opens the interface's packet socket ahead of the first garp
 *
 * Why in-process: a takeover is on the client's outage path. `ip` and `arping` cost a process start each
 * (~9 ms on a small machine), and a resident helper process still costs two wake-ups per request (1 to
 * 3 ms on a loaded machine, measured by bench/failover.ts --wire-trace). Both calls here are synchronous
 * and short: rtnetlink handles the request in the sender's context (the ACK is already queued when
 * sendmsg returns), and a packet socket send is a copy into the device queue.
 *
 * Errors are thrown shaped like Node's (code 'EEXIST', errno 17, syscall): the caller (src/vip/manager.ts)
 * treats EEXIST as "already there" and anything else as a reason to fall back to `ip`/`arping`.
 * IPv4 only: IPv6 VIPs keep going through `ip` (no ARP; NDP is the kernel's).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <node_api.h>
#include "napi_util.h"

/* How long an rtnetlink ACK may take before the add is reported as failed (the kernel answers at once;
 * this only bounds a wedged kernel lock, as `ip` would hang on it). */
#define NETLINK_ACK_TIMEOUT_MS 5000
/* Interfaces whose packet socket stays open: binding one waits for an RCU grace period (~10 ms), so it is
 * bound once, ahead of time (warm) or at the first garp, and kept. A VIP lives on one or two interfaces. */
#define MAX_PACKET_SOCKETS 16

struct packet_socket {
	int ifindex; /* 0: free slot */
	int fd;
	unsigned char mac[ETH_ALEN];
};
/* Only the JavaScript thread calls this addon: no lock. */
static struct packet_socket packet_sockets[MAX_PACKET_SOCKETS];
static uint32_t netlink_seq;

static int parse_ipv4(napi_env env, napi_value v, struct in_addr *out)
{
	char buf[INET_ADDRSTRLEN + 1];
	if (get_string(env, v, buf, sizeof buf) != 0) return -1;
	return inet_pton(AF_INET, buf, out) == 1 ? 0 : -1;
}

static int ifindex_of(napi_env env, napi_value v, char *name, size_t len)
{
	if (get_string(env, v, name, len) != 0) return -1;
	unsigned idx = if_nametoindex(name);
	return idx ? (int)idx : 0;
}

static void add_rta(struct nlmsghdr *h, size_t cap, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
	size_t need = RTA_LENGTH(len);
	if (NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(need) > cap) return; /* sized below: cannot happen */
	rta->rta_type = type;
	rta->rta_len = (unsigned short)need;
	memcpy(RTA_DATA(rta), data, len);
	h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(need);
}

/* Returns 0 or a positive errno (the kernel's answer, or the socket's). */
static int netlink_add_address(struct in_addr addr, int prefix_len, int ifindex, const char *label)
{
	char buf[NLMSG_SPACE(sizeof(struct ifaddrmsg)) + 3 * RTA_SPACE(IFNAMSIZ)] __attribute__((aligned(4)));
	memset(buf, 0, sizeof buf);
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	h->nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
	h->nlmsg_type = RTM_NEWADDR;
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
	h->nlmsg_seq = ++netlink_seq;
	struct ifaddrmsg *ifa = NLMSG_DATA(h);
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix_len;
	ifa->ifa_index = (unsigned)ifindex;
	add_rta(h, sizeof buf, IFA_LOCAL, &addr, sizeof addr);
	add_rta(h, sizeof buf, IFA_ADDRESS, &addr, sizeof addr);
	if (label[0]) add_rta(h, sizeof buf, IFA_LABEL, label, strlen(label) + 1);

	/* A socket per add: creating one costs microseconds, and a late answer can never be taken for the
	 * next request's. */
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0) return errno;
	struct timeval tv = { NETLINK_ACK_TIMEOUT_MS / 1000, (NETLINK_ACK_TIMEOUT_MS % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	int err = 0;
	if (sendto(fd, h, h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
		err = errno;
		goto out;
	}
	for (;;) {
		char ans[8192] __attribute__((aligned(4)));
		ssize_t n = recv(fd, ans, sizeof ans, 0);
		if (n < 0) {
			if (errno == EINTR) continue;
			err = errno == EAGAIN ? ETIMEDOUT : errno;
			goto out;
		}
		int left = (int)n;
		for (struct nlmsghdr *r = (struct nlmsghdr *)ans; NLMSG_OK(r, left); r = NLMSG_NEXT(r, left)) {
			if (r->nlmsg_seq != h->nlmsg_seq || r->nlmsg_type != NLMSG_ERROR) continue;
			if (r->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
				err = EPROTO;
				goto out;
			}
			err = -((struct nlmsgerr *)NLMSG_DATA(r))->error; /* 0: the ACK */
			goto out;
		}
	}
out:
	close(fd);
	return err;
}

static struct packet_socket *packet_socket_for(int ifindex, int *err)
{
	struct packet_socket *free_slot = NULL;
	for (int i = 0; i < MAX_PACKET_SOCKETS; i++) {
		if (packet_sockets[i].ifindex == ifindex) return &packet_sockets[i];
		if (!packet_sockets[i].ifindex && !free_slot) free_slot = &packet_sockets[i];
	}
	if (!free_slot) {
		/* More interfaces than expected: recycle the first slot rather than fail a takeover. */
		close(packet_sockets[0].fd);
		packet_sockets[0].ifindex = 0;
		free_slot = &packet_sockets[0];
	}
	/* Protocol 0: the socket sends and receives nothing, so nothing queues up on it. */
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = ifindex };
	socklen_t len = sizeof sll;
	if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0 || getsockname(fd, (struct sockaddr *)&sll, &len) < 0) {
		*err = errno;
		close(fd);
		return NULL;
	}
	if (sll.sll_halen != ETH_ALEN) {
		*err = EAFNOSUPPORT; /* not Ethernet: no ARP */
		close(fd);
		return NULL;
	}
	free_slot->ifindex = ifindex;
	free_slot->fd = fd;
	memcpy(free_slot->mac, sll.sll_addr, ETH_ALEN);
	return free_slot;
}

static void drop_packet_socket(struct packet_socket *ps)
{
	close(ps->fd);
	ps->ifindex = 0;
}

/* An ARP frame as hosts expect a gratuitous one: sender and target protocol address both the VIP. */
struct __attribute__((packed)) arp_frame {
	unsigned char dst[ETH_ALEN], src[ETH_ALEN];
	uint16_t ethertype;
	uint16_t htype, ptype;
	uint8_t hlen, plen;
	uint16_t op;
	unsigned char sha[ETH_ALEN];
	uint32_t spa;
	unsigned char tha[ETH_ALEN];
	uint32_t tpa;
};

/* Returns 0 or a positive errno. A failed send drops the socket: the interface may have gone and come back. */
static int send_garp(struct packet_socket *ps, struct in_addr addr, int count)
{
	struct arp_frame f;
	memset(f.dst, 0xff, ETH_ALEN);
	memcpy(f.src, ps->mac, ETH_ALEN);
	f.ethertype = htons(ETH_P_ARP);
	f.htype = htons(1);
	f.ptype = htons(ETH_P_IP);
	f.hlen = ETH_ALEN;
	f.plen = 4;
	memcpy(f.sha, ps->mac, ETH_ALEN);
	f.spa = addr.s_addr;
	f.tpa = addr.s_addr;
	for (int i = 0; i < count; i++) {
		/* An unsolicited request (arping -U) and a reply (arping -A): hosts update their cache on either. */
		for (int op = 1; op <= 2; op++) {
			f.op = htons((uint16_t)op);
			memset(f.tha, op == 1 ? 0x00 : 0xff, ETH_ALEN);
			if (send(ps->fd, &f, sizeof f, 0) < 0) {
				int err = errno;
				drop_packet_socket(ps);
				return err;
			}
		}
	}
	return 0;
}

/* The call's arguments: exactly n, or a TypeError naming the signature (returns -1, exception pending). */
static int get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv, const char *signature)
{
	size_t argc = n;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != n) {
		throw_type(env, signature);
		return -1;
	}
	return 0;
}

/* The interface argument's index (name in iface), or -1 with an exception pending (0 is never returned). */
static int iface_arg(napi_env env, napi_value v, const char *op, char iface[IFNAMSIZ + 1])
{
	int ifindex = ifindex_of(env, v, iface, IFNAMSIZ + 1);
	if (ifindex < 0) {
		throw_type(env, "iface must be an interface name");
		return -1;
	}
	if (ifindex == 0) {
		throw_errno(env, ENODEV, op, iface);
		return -1;
	}
	return ifindex;
}

/* The interface argument's packet socket (opened at its first use), or NULL with an exception pending. */
static struct packet_socket *packet_socket_arg(napi_env env, napi_value v, const char *op, char iface[IFNAMSIZ + 1])
{
	int ifindex = iface_arg(env, v, op, iface);
	if (ifindex < 0) return NULL;
	int err = 0;
	struct packet_socket *ps = packet_socket_for(ifindex, &err);
	if (!ps) throw_errno(env, err, op, iface);
	return ps;
}

static napi_value js_add_address(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	if (get_args(env, info, 4, argv, "addAddress(ip, prefixLen, iface, label)") != 0) return NULL;
	struct in_addr addr;
	if (parse_ipv4(env, argv[0], &addr) != 0) return throw_type(env, "addAddress: ip must be an IPv4 address");
	int64_t prefix_len;
	if (get_int64(env, argv[1], &prefix_len) != 0 || prefix_len < 0 || prefix_len > 32)
		return throw_type(env, "addAddress: prefixLen must be an integer 0..32");
	char label[IFNAMSIZ + 1];
	if (get_string(env, argv[3], label, sizeof label) != 0 || strlen(label) >= IFNAMSIZ)
		return throw_type(env, "addAddress: label must be a string of at most 15 characters");
	char iface[IFNAMSIZ + 1];
	int ifindex = iface_arg(env, argv[2], "addAddress", iface);
	if (ifindex < 0) return NULL;
	int err = netlink_add_address(addr, (int)prefix_len, ifindex, label);
	if (err) return throw_errno(env, err, "addAddress", iface);
	return NULL;
}

static napi_value js_garp(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (get_args(env, info, 3, argv, "garp(ip, iface, count)") != 0) return NULL;
	struct in_addr addr;
	if (parse_ipv4(env, argv[0], &addr) != 0) return throw_type(env, "garp: ip must be an IPv4 address");
	int64_t count;
	if (get_int64(env, argv[2], &count) != 0 || count < 1 || count > 100) return throw_type(env, "garp: count must be an integer 1..100");
	char iface[IFNAMSIZ + 1];
	struct packet_socket *ps = packet_socket_arg(env, argv[1], "garp", iface);
	if (!ps) return NULL;
	int err = send_garp(ps, addr, (int)count);
	if (err) return throw_errno(env, err, "garp", iface);
	return NULL;
}

static napi_value js_warm(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (get_args(env, info, 1, argv, "warm(iface)") != 0) return NULL;
	char iface[IFNAMSIZ + 1];
	packet_socket_arg(env, argv[0], "warm", iface);
	return NULL;
}

static napi_value init_module(napi_env env, napi_value exports)
{
	napi_property_descriptor props[] = {
		{ "addAddress", NULL, js_add_address, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "garp", NULL, js_garp, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "warm", NULL, js_warm, NULL, NULL, NULL, napi_enumerable, NULL },
	};
	NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
