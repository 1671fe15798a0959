package keyspec

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseTPMDevice(t *testing.T) {
	tests := []struct {
		in               string
		network, address string
		wantErr          string
	}{
		{"", TPMNetworkDevice, DefaultTPMDevice, ""},
		{"/dev/tpmrm0", TPMNetworkDevice, "/dev/tpmrm0", ""},
		{"/dev/tpm0", TPMNetworkDevice, "/dev/tpm0", ""},
		{"/dev//tpm0", TPMNetworkDevice, "/dev/tpm0", ""},
		{"unix:///run/swtpm/sock", TPMNetworkUnix, "/run/swtpm/sock", ""},
		{"unix:///run/swtpm/../sock", TPMNetworkUnix, "/run/sock", ""},
		{"tcp://127.0.0.1:2321", TPMNetworkTCP, "127.0.0.1:2321", ""},
		{"tcp://[::1]:2321", TPMNetworkTCP, "[::1]:2321", ""},
		{"tcp://localhost:2321", TPMNetworkTCP, "localhost:2321", ""},
		{"tcp://swtpm.example:65535", TPMNetworkTCP, "swtpm.example:65535", ""},

		{"dev/tpm0", "", "", `"dev/tpm0" is not a TPM device: want a device such as /dev/tpmrm0`},
		{"tpmrm0", "", "", "/dev/tpmrm0, unix:///path/to/socket or tcp://127.0.0.1:2321"},
		{"/dev/", "", "", "is not a device path"},
		{"/", "", "", "is not a device path"},
		{"/.", "", "", "is not a device path"},
		{"/dev/..", "", "", "is not a device path"},
		{"/dev/tpm\x000", "", "", "is not a device path"},
		{"unix://sock", "", "", "three slashes"},
		{"unix://run/sock", "", "", "three slashes"},
		{"unix:///run/", "", "", "three slashes"},
		{"unix:///", "", "", "three slashes"},
		{"tcp://:2321", "", "", "want tcp://HOST:PORT"},
		{"tcp://127.0.0.1", "", "", "want tcp://HOST:PORT"},
		{"tcp://no-port", "", "", "want tcp://HOST:PORT"},
		{"tcp://127.0.0.1:0", "", "", "is not a port"},
		{"tcp://127.0.0.1:99999", "", "", "is not a port"},
		{"tcp://127.0.0.1:+1", "", "", "is not a port"},
		{"tcp://127.0.0.1:http", "", "", "is not a port"},
		{"tcp://bad host:2321", "", "", "is not a host name or IP address"},
		{"tcp://a..b:2321", "", "", "is not a host name or IP address"},
		{"http://127.0.0.1:2321", "", "", "is not a TPM device"},
		{"file:///dev/tpm0", "", "", "is not a TPM device"},
	}
	for _, tt := range tests {
		d, err := ParseTPMDevice(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseTPMDevice(%q) = %+v, %v; want an error containing %q", tt.in, d, err, tt.wantErr)
			}
			if d != (TPMDevice{}) {
				t.Errorf("ParseTPMDevice(%q) returned %+v with its error", tt.in, d)
			}
			continue
		}
		if err != nil || d.Network != tt.network || d.Address != tt.address {
			t.Errorf("ParseTPMDevice(%q) = %+v, %v; want {%s %s}", tt.in, d, err, tt.network, tt.address)
		}
	}
}

func TestTPMDeviceString(t *testing.T) {
	tests := []struct {
		d    TPMDevice
		want string
	}{
		{TPMDevice{TPMNetworkDevice, "/dev/tpmrm0"}, "/dev/tpmrm0"},
		{TPMDevice{TPMNetworkUnix, "/run/swtpm.sock"}, "unix:///run/swtpm.sock"},
		{TPMDevice{TPMNetworkTCP, "127.0.0.1:2321"}, "tcp://127.0.0.1:2321"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.d, got, tt.want)
		}
		if back, err := ParseTPMDevice(tt.want); err != nil || back != tt.d {
			t.Errorf("ParseTPMDevice(%q) = %+v, %v; want %+v", tt.want, back, err, tt.d)
		}
	}
}

// FuzzParseTPMDevice: a refusal names the device; whatever
// ParseTPMDevice accepts is a device it can name again: String reads
// back as the same TPMDevice, the address is non-empty and free of NUL
// bytes, and paths are absolute and clean.
func FuzzParseTPMDevice(f *testing.F) {
	for _, s := range []string{
		"", "/dev/tpmrm0", "/dev/tpm0", "/dev//tpm0/.", "/.", "unix:///run/swtpm.sock", "unix://x", "unix:///../x",
		"tcp://127.0.0.1:2321", "tcp://[::1]:2321", "tcp://localhost:2321", "tcp://h:+1", "tcp://h:02321", "tcp://[fe80::1%eth0]:1",
		"http://x", "unix:///a\x00b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseTPMDevice(s)
		if err != nil {
			if d != (TPMDevice{}) {
				t.Fatalf("ParseTPMDevice(%q) returned %+v with error %v", s, d, err)
			}
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("ParseTPMDevice(%q) error %q does not name the device", s, err)
			}
			return
		}
		if d.Address == "" || strings.IndexByte(d.Address, 0) >= 0 {
			t.Fatalf("ParseTPMDevice(%q) = %+v: bad address", s, d)
		}
		switch d.Network {
		case TPMNetworkDevice, TPMNetworkUnix:
			if !strings.HasPrefix(d.Address, "/") || d.Address == "/" || strings.Contains(d.Address, "//") || strings.HasSuffix(d.Address, "/") {
				t.Fatalf("ParseTPMDevice(%q) = %+v: not a clean absolute path", s, d)
			}
		case TPMNetworkTCP:
		default:
			t.Fatalf("ParseTPMDevice(%q) = %+v: unknown network", s, d)
		}
		again, err := ParseTPMDevice(d.String())
		if err != nil || again != d {
			t.Fatalf("ParseTPMDevice(%q) = %+v, whose String %q reads back as %+v, %v", s, d, d.String(), again, err)
		}
	})
}
