package sim

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// istioRules returns the nat table Istio's istio-iptables installs for a
// sidecar with default settings (REDIRECT mode, all inbound ports captured
// except the proxy's own, all outbound captured), in iptables-restore form.
// The loopback addresses are 127.0.0.6/127.0.0.1 for IPv4 and ::6/::1 for
// IPv6.
func istioRules(v6 bool) string {
	src, local := "127.0.0.6/32", "127.0.0.1/32"
	if v6 {
		src, local = "::6/128", "::1/128"
	}
	uid, gid := strconv.Itoa(SidecarUID), strconv.Itoa(SidecarGID)
	in, out := strconv.Itoa(InboundPort), strconv.Itoa(OutboundPort)
	return strings.Join([]string{
		"*nat",
		":PREROUTING ACCEPT [0:0]",
		":INPUT ACCEPT [0:0]",
		":OUTPUT ACCEPT [0:0]",
		":POSTROUTING ACCEPT [0:0]",
		":ISTIO_INBOUND - [0:0]",
		":ISTIO_IN_REDIRECT - [0:0]",
		":ISTIO_OUTPUT - [0:0]",
		":ISTIO_REDIRECT - [0:0]",
		"-A PREROUTING -p tcp -j ISTIO_INBOUND",
		"-A OUTPUT -p tcp -j ISTIO_OUTPUT",
		"-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN",
		"-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN",
		"-A ISTIO_INBOUND -p tcp -m tcp --dport 15021 -j RETURN",
		"-A ISTIO_INBOUND -p tcp -m tcp --dport 15020 -j RETURN",
		"-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
		"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports " + in,
		"-A ISTIO_OUTPUT -s " + src + " -o lo -j RETURN",
		"-A ISTIO_OUTPUT ! -d " + local + " -o lo -p tcp -m tcp ! --dport 15008 -m owner --uid-owner " + uid + " -j ISTIO_IN_REDIRECT",
		"-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner " + uid + " -j RETURN",
		"-A ISTIO_OUTPUT -m owner --uid-owner " + uid + " -j RETURN",
		"-A ISTIO_OUTPUT ! -d " + local + " -o lo -p tcp -m tcp ! --dport 15008 -m owner --gid-owner " + gid + " -j ISTIO_IN_REDIRECT",
		"-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner " + gid + " -j RETURN",
		"-A ISTIO_OUTPUT -m owner --gid-owner " + gid + " -j RETURN",
		"-A ISTIO_OUTPUT -d " + local + " -j RETURN",
		"-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
		"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports " + out,
		"COMMIT",
		"",
	}, "\n")
}

// emptyNat is a nat table without rules: restoring it (without --noflush)
// removes Istio's rules and chains.
const emptyNat = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"

// inNetns runs argv in the network namespace at path (as root) and returns
// its stdout.
func inNetns(nsenter, path string, stdin string, argv ...string) (string, error) {
	cmd := exec.Command(nsenter, append([]string{"--net=" + path, "--"}, argv...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), path, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// setIstioRules replaces the nat tables (IPv4 and IPv6) of the namespace at
// path with Istio's rules (on) or with empty tables (off). Only the pod's own
// namespace is touched.
func setIstioRules(nsenter, path string, on bool) error {
	for _, v6 := range []bool{false, true} {
		rules, cmd := emptyNat, "iptables-restore"
		if on {
			rules = istioRules(v6)
		}
		if v6 {
			cmd = "ip6tables-restore"
		}
		if _, err := inNetns(nsenter, path, rules, cmd, "-w"); err != nil {
			return fmt.Errorf("set sidecar rules: %w", err)
		}
	}
	return nil
}

// RedirectCounts are the packet counters of the two REDIRECT rules of a pod,
// per family. NAT rules only see the first packet of a connection, so each
// count is the number of connections the rule redirected.
type RedirectCounts struct {
	Outbound4, Inbound4 uint64 // to 15001 and 15006, IPv4
	Outbound6, Inbound6 uint64 // the same for IPv6
}

// redirectCounts reads the counters with iptables-save -c.
func redirectCounts(nsenter, path string) (RedirectCounts, error) {
	var rc RedirectCounts
	for _, v6 := range []bool{false, true} {
		cmd, out, in := "iptables-save", &rc.Outbound4, &rc.Inbound4
		if v6 {
			cmd, out, in = "ip6tables-save", &rc.Outbound6, &rc.Inbound6
		}
		dump, err := inNetns(nsenter, path, "", cmd, "-c", "-t", "nat")
		if err != nil {
			return rc, fmt.Errorf("redirect counters: %w", err)
		}
		*out, *in = countRedirects(dump)
	}
	return rc, nil
}

// countRedirects parses "[pkts:bytes] -A ... REDIRECT --to-ports N" lines.
func countRedirects(dump string) (out, in uint64) {
	for line := range strings.Lines(dump) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "[") || !strings.Contains(line, "-j REDIRECT") {
			continue
		}
		counters, _, _ := strings.Cut(line[1:], "]")
		pkts, _, _ := strings.Cut(counters, ":")
		n, err := strconv.ParseUint(pkts, 10, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(line, "--to-ports "+strconv.Itoa(OutboundPort)):
			out += n
		case strings.HasSuffix(line, "--to-ports "+strconv.Itoa(InboundPort)):
			in += n
		}
	}
	return out, in
}
