package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// clientTLS is the device side of mutual TLS: the group CA (which signs the
// MQTT server certificate) as root, server name localhost.
func (f *fleet) clientTLS(t *testing.T, cert tls.Certificate) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(f.groupCA())
	if err != nil {
		t.Fatalf("read group CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", f.groupCA())
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}}
}

// dial5 opens a TLS connection with cert and sends CONNECT with clientID
// (and will, if not nil); see mqtttest.Dial.
func (f *fleet) dial5(t *testing.T, cert tls.Certificate, clientID string, will *paho.WillMessage) (*mqtttest.Client, *paho.Connack, error) {
	t.Helper()
	return f.dial5With(t, f.clientTLS(t, cert), &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30, WillMessage: will})
}

// dial5With is dial5 with the TLS configuration and CONNECT packet given.
func (f *fleet) dial5With(t *testing.T, tlsCfg *tls.Config, cp *paho.Connect) (*mqtttest.Client, *paho.Connack, error) {
	t.Helper()
	return mqtttest.Dial(t, f.addr(), tlsCfg, cp)
}

// connect5 connects device dev with its own certificate and client ID,
// failing the test if that does not work.
func (f *fleet) connect5(t *testing.T, dev string) *mqtttest.Client {
	t.Helper()
	return mqtttest.Connect(t, f.addr(), f.clientTLS(t, f.identity(dev).tlsCertificate(t)), dev)
}
