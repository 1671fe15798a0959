package keyspec

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultTPMDevice is the kernel's resource-managed TPM device, used when
// config.json's ggcore.tpm.device and ggprov's --tpm-device are empty.
const DefaultTPMDevice = "/dev/tpmrm0"

// The networks a TPMDevice can be reached over.
const (
	TPMNetworkDevice = "file" // a character device such as /dev/tpmrm0
	TPMNetworkUnix   = "unix" // a swtpm --server type=unixio socket
	TPMNetworkTCP    = "tcp"  // a swtpm --server type=tcp socket
)

// TPMDevice is where a TPM is reached: a device node, a Unix socket or a
// TCP address (the last two are swtpm's).
type TPMDevice struct {
	// Network is TPMNetworkDevice, TPMNetworkUnix or TPMNetworkTCP.
	Network string
	// Address is the device or socket path, or HOST:PORT.
	Address string
}

// String returns the device in the syntax ParseTPMDevice reads.
func (d TPMDevice) String() string {
	switch d.Network {
	case TPMNetworkUnix:
		return "unix://" + d.Address
	case TPMNetworkTCP:
		return "tcp://" + d.Address
	}
	return d.Address
}

const tpmDeviceForms = "a device such as /dev/tpmrm0, unix:///path/to/socket or tcp://127.0.0.1:2321"

// ParseTPMDevice reads the one TPM device syntax of config.json's
// ggcore.tpm.device and ggprov's --tpm-device: a device node such as
// /dev/tpmrm0, unix:///absolute/path of a socket, or tcp://HOST:PORT.
// "" is DefaultTPMDevice.
func ParseTPMDevice(s string) (TPMDevice, error) {
	switch {
	case s == "":
		return TPMDevice{Network: TPMNetworkDevice, Address: DefaultTPMDevice}, nil
	case strings.HasPrefix(s, "/"):
		p, ok := filePath(s)
		if !ok {
			return TPMDevice{}, fmt.Errorf("%q is not a device path: want %s", s, tpmDeviceForms)
		}
		return TPMDevice{Network: TPMNetworkDevice, Address: p}, nil
	case strings.HasPrefix(s, "unix://"):
		p, ok := filePath(strings.TrimPrefix(s, "unix://"))
		if !ok {
			return TPMDevice{}, fmt.Errorf("%q: want unix:///absolute/path/to/socket (three slashes)", s)
		}
		return TPMDevice{Network: TPMNetworkUnix, Address: p}, nil
	case strings.HasPrefix(s, "tcp://"):
		hp := strings.TrimPrefix(s, "tcp://")
		host, port, err := net.SplitHostPort(hp)
		if err != nil || host == "" {
			return TPMDevice{}, fmt.Errorf("%q: want tcp://HOST:PORT, such as tcp://127.0.0.1:2321", s)
		}
		if err := checkHost(host); err != nil {
			return TPMDevice{}, fmt.Errorf("%q: %v", s, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strings.Trim(port, "0123456789") != "" {
			return TPMDevice{}, fmt.Errorf("%q: port %q is not a port (1-65535)", s, port)
		}
		return TPMDevice{Network: TPMNetworkTCP, Address: hp}, nil
	}
	return TPMDevice{}, fmt.Errorf("%q is not a TPM device: want %s", s, tpmDeviceForms)
}

// filePath cleans the absolute path of a device node or socket. It
// refuses relative paths, paths ending in "/" or naming the root
// directory, and NUL bytes.
func filePath(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.IndexByte(p, 0) >= 0 {
		return "", false
	}
	p = filepath.Clean(p)
	return p, p != "/"
}

// checkHost accepts an IP address or a DNS host name.
func checkHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("host name %q is longer than 253 characters", h)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a host name or IP address", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a host name or IP address (character %q)", h, c)
			}
		}
	}
	return nil
}
