package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
)

// DHCP timing: the first lease is waited for up to dhcpFirstWait before
// ggcore starts anyway (it keeps being asked for in the background); a
// lease is renewed at half its time, a failed request retried after
// dhcpRetry.
const (
	dhcpFirstWait = 30 * time.Second
	dhcpRetry     = 10 * time.Second
)

// netPlan is how the first Ethernet interface is configured, from the
// kernel command line: DHCP unless ggcore.ip names a static address.
type netPlan struct {
	dhcp bool
	addr *netlink.Addr // static address
	gw   net.IP        // static default gateway; nil for none
	dns  []net.IP      // static name servers
}

// planNetwork reads ggcore.ip (CIDR, or "dhcp", the default), ggcore.gw
// and ggcore.dns (comma-separated) from the command line's settings.
func planNetwork(args map[string]string) (netPlan, error) {
	ip := args["ggcore.ip"]
	if ip == "" || ip == "dhcp" {
		if args["ggcore.gw"] != "" || args["ggcore.dns"] != "" {
			return netPlan{}, errors.New("ggcore.gw and ggcore.dns go with a static ggcore.ip; DHCP gives its own")
		}
		return netPlan{dhcp: true}, nil
	}
	addr, err := netlink.ParseAddr(ip)
	if err != nil {
		return netPlan{}, fmt.Errorf("ggcore.ip=%s: want an address with its prefix, such as 192.168.7.2/24, or dhcp: %w", ip, err)
	}
	p := netPlan{addr: addr}
	if gw := args["ggcore.gw"]; gw != "" {
		if p.gw = net.ParseIP(gw); p.gw == nil {
			return netPlan{}, fmt.Errorf("ggcore.gw=%s is not an IP address", gw)
		}
	}
	if dns := args["ggcore.dns"]; dns != "" {
		for _, s := range strings.Split(dns, ",") {
			a := net.ParseIP(s)
			if a == nil {
				return netPlan{}, fmt.Errorf("ggcore.dns=%s: %q is not an IP address", dns, s)
			}
			p.dns = append(p.dns, a)
		}
	}
	return p, nil
}

// nonlocalBind are the sysctls that let a program listen on an address
// the machine does not have yet.
var nonlocalBind = []string{"/proc/sys/net/ipv4/ip_nonlocal_bind", "/proc/sys/net/ipv6/ip_nonlocal_bind"}

// startNetwork brings, in the background, the first Ethernet interface up
// by the command line's plan; it says how that went. A core whose
// config.json binds one address (ggcore.localMqttBind) listens on it
// before DHCP assigns it (prepareNetwork).
func startNetwork(args map[string]string) {
	go func() {
		if err := network(args); err != nil {
			say("network: %v (devices cannot reach ggcore until the network is up)", err)
		}
	}()
}

// prepareNetwork does, before ggcore reads its config, what ggcore's
// listener needs from the network: loopback up, and binding to an
// address not assigned yet allowed.
func prepareNetwork() {
	allowNonlocalBind()
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		say("network: lo: %v", err)
	}
}

// allowNonlocalBind lets programs listen on addresses not assigned yet.
func allowNonlocalBind() {
	for _, p := range nonlocalBind {
		if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			say("network: %s: %v", p, err)
		}
	}
}

// network brings the first Ethernet interface up, by plan.
func network(args map[string]string) error {
	plan, err := planNetwork(args)
	if err != nil {
		return err
	}
	eth, err := firstEthernet(5 * time.Second)
	if err != nil {
		return err
	}
	if plan.dhcp {
		// Without a carrier yet, dhcp asks anyway, and again until it
		// gets a lease.
		if err := linkUp(eth, 5*time.Second); err != nil {
			say("network: %v", err)
		}
		return dhcp(eth)
	}
	return static(eth, plan)
}

// linkUp sets eth up and waits for its carrier: from then on the kernel
// sends on it. (Its operational state, which the u-root DHCP client
// waits for, follows up to a second later: the kernel updates it at
// most once a second, and a boot reaches here within a second of the
// interface's probe.)
func linkUp(eth netlink.Link, wait time.Duration) error {
	name := eth.Attrs().Name
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("%s: up: %w", name, err)
	}
	carrier := "/sys/class/net/" + name + "/carrier"
	for deadline := time.Now().Add(wait); ; {
		if data, err := os.ReadFile(carrier); err == nil && strings.TrimSpace(string(data)) == "1" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no carrier after %s", name, wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// firstEthernet waits for the first Ethernet interface.
func firstEthernet(wait time.Duration) (netlink.Link, error) {
	for deadline := time.Now().Add(wait); ; {
		links, _ := netlink.LinkList()
		for _, l := range links {
			if l.Type() == "device" && l.Attrs().Name != "lo" && len(l.Attrs().HardwareAddr) == 6 {
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no Ethernet interface within %s", wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// static sets the plan's address, default route and name servers.
func static(eth netlink.Link, p netPlan) error {
	name := eth.Attrs().Name
	if err := netlink.AddrReplace(eth, p.addr); err != nil {
		return fmt.Errorf("%s: address %s: %w", name, p.addr.IPNet, err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("%s: up: %w", name, err)
	}
	gw := "none"
	if p.gw != nil {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: p.gw}); err != nil {
			return fmt.Errorf("%s: default route via %s: %w", name, p.gw, err)
		}
		gw = p.gw.String()
	}
	if len(p.dns) > 0 {
		if err := dhclient.WriteDNSSettings(p.dns, nil, "", dhclient.ResolvConfPath); err != nil {
			return fmt.Errorf("name servers: %w", err)
		}
	}
	say("network: %s %s (static), gateway %s, name servers %s", name, p.addr.IPNet, gw, ipList(p.dns))
	return nil
}

// dhcp configures eth from a DHCPv4 lease, waiting up to dhcpFirstWait
// for the first; it keeps the lease renewed in the background.
func dhcp(eth netlink.Link) error {
	// The DHCP packages log through the standard logger; gginit says
	// what matters itself.
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), dhcpFirstWait)
	leaseTime, err := lease(ctx, eth)
	cancel()
	if err != nil {
		go keepLease(eth, 0)
		return fmt.Errorf("%s: no DHCP lease within %s (asking again every %s): %w", eth.Attrs().Name, dhcpFirstWait, dhcpRetry, err)
	}
	go keepLease(eth, leaseTime)
	return nil
}

// keepLease renews the lease at half its time, or asks for one every
// dhcpRetry while there is none. The address stays while renewals fail.
func keepLease(eth netlink.Link, leaseTime time.Duration) {
	for {
		wait := dhcpRetry
		if leaseTime > 0 {
			wait = max(leaseTime/2, dhcpRetry)
		}
		time.Sleep(wait)
		ctx, cancel := context.WithTimeout(context.Background(), dhcpFirstWait)
		lt, err := lease(ctx, eth)
		cancel()
		if err != nil {
			say("network: DHCP renewal on %s: %v; asking again in %s", eth.Attrs().Name, err, dhcpRetry)
			leaseTime = 0
			continue
		}
		leaseTime = lt
	}
}

// lease asks for a DHCPv4 lease on eth, configures it (address, routes,
// name servers) and returns how long it lasts (0: for ever).
func lease(ctx context.Context, eth netlink.Link) (time.Duration, error) {
	// A short timeout with more retries: a request lost while the link
	// comes up is sent again within a second.
	client, err := nclient4.New(eth.Attrs().Name, nclient4.WithTimeout(time.Second), nclient4.WithRetry(8))
	if err != nil {
		return 0, fmt.Errorf("DHCP client: %w", err)
	}
	defer client.Close()
	l, err := client.Request(ctx, dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
		dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName))
	if err != nil {
		return 0, err
	}
	if err := dhclient.NewPacket4(eth, l.ACK).Configure(); err != nil {
		return 0, fmt.Errorf("configure: %w", err)
	}
	msg := l.ACK
	mask := net.IPMask(msg.SubnetMask())
	ones, _ := mask.Size()
	gw := "none"
	if routers := msg.Router(); len(routers) > 0 {
		gw = routers[0].String()
	}
	lt := msg.IPAddressLeaseTime(0)
	say("network: %s %s/%d by DHCP from %s, gateway %s, name servers %s, lease %s", eth.Attrs().Name, msg.YourIPAddr,
		ones, msg.ServerIPAddr, gw, ipList(msg.DNS()), lt)
	return lt, nil
}

func ipList(ips []net.IP) string {
	if len(ips) == 0 {
		return "none"
	}
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}
