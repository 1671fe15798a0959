package config

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// marshal writes v as JSON without HTML escaping, so that kept raw JSON
// (Functions, Resources) comes back byte for byte.
func marshal(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		goldenConfig, v1Config, minimalConfig, "", "{}", "[]", "null", `{"coreThing":{}}`,
		`{"coreThing":{"thingArn":"arn:aws:iot:us-east-1:000000000000:thing/c"},"writeDirectory":"/w","crypto":` +
			`{"caPath":"file:///ca%20x.pem","principals":{"IoTCertificate":{"privateKeyPath":"pkcs11:object=k;type=private;token=t?module-path=/m.so&pin-value=1","certificatePath":"file:///c.pem"}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if c != nil {
				t.Fatal("config and error both returned")
			}
			return
		}
		// What was accepted marshals to a config.json that is accepted
		// again and reads the same.
		out := marshal(t, c)
		c2, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("accepted config does not re-validate: %v\n%s", err, out)
		}
		c.Ignored = nil
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
		for _, k := range []string{c.Crypto.Principals.IoTCertificate.PrivateKey, c.Crypto.Principals.MQTTServerCertificate.PrivateKey,
			c.Crypto.Principals.SecretsManager.PrivateKey} {
			if k == "" {
				continue
			}
			if _, err := ParseKeyRef(k); err != nil {
				t.Fatalf("accepted key reference %q does not parse: %v", k, err)
			}
		}
		if c.CoreThing.ThingName == "" || c.WriteDirectory == "" || c.Crypto.CAPath == "" {
			t.Fatalf("accepted without a required field: %+v", c)
		}
	})
}

func FuzzParseGroup(f *testing.F) {
	for _, s := range []string{
		goldenGroup, fullGroup, "", "{}", "[]", `{"GroupId":"g","Cores":[{}]}`,
		`{"GroupId":"g","Cores":[{"Id":"c","ThingArn":"arn:aws:iot:r:000000000000:thing/c","CertificateArn":"arn:aws:iot:r:000000000000:cert/` +
			"0000000000000000000000000000000000000000000000000000000000000000" + `"}],"Subscriptions":[{"Id":"s","Source":"cloud","Subject":"a/+/#","Target":"GGShadowService"}],"Functions":[{"FunctionArn":"arn:aws:lambda:r:000000000000:function:f","X":"<&>"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseGroup(data)
		if err != nil {
			if g != nil {
				t.Fatal("group and error both returned")
			}
			return
		}
		out := marshal(t, g)
		g2, err := ParseGroup(out)
		if err != nil {
			t.Fatalf("accepted group does not re-validate: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(g, g2) {
			t.Fatalf("round trip changed the group:\n%+v\n%+v", g, g2)
		}
		if len(g.Cores) != 1 {
			t.Fatalf("accepted %d cores", len(g.Cores))
		}
		for _, list := range [][]Thing{g.Cores, g.Devices} {
			for _, th := range list {
				if found, ok := g.ThingByName(th.Name()); !ok || found != th {
					t.Fatalf("ThingByName(%q) = %+v, %v", th.Name(), found, ok)
				}
				if found, ok := g.ThingByCertificateID(th.CertificateID()); !ok || found != th {
					t.Fatalf("ThingByCertificateID(%q) = %+v, %v", th.CertificateID(), found, ok)
				}
			}
		}
	})
}

func FuzzParseKeyRef(f *testing.F) {
	for _, s := range []string{
		"file:///greengrass/certs/core.key.pem", "file:///a%20b/../k", "file://localhost/k", "file://h/k", "/k",
		"tpm2:handle=0x81000002", "handle:0x81FFFFFF", "tpm2:handle=0x80000000",
		"pkcs11:object=k;type=private", "pkcs11:token=t;object=a%2Fb;type=private;id=%01?module-path=/m.so&pin-value=1",
		"pkcs11:object=a&b;type=private?pin-source=file:/p|x", "pkcs11:object=k;type=private;x-a=1", "pkcs11:", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyRef(s)
		if err != nil {
			return
		}
		// The canonical form of an accepted reference is accepted and
		// means the same.
		canon := k.format(false)
		k2, err := ParseKeyRef(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if !reflect.DeepEqual(k, k2) {
			t.Fatalf("%q and its canonical form %q differ: %+v, %+v", s, canon, k, k2)
		}
		switch k.Scheme {
		case SchemeFile:
			if k.Path == "" || k.Path[0] != '/' {
				t.Fatalf("file reference %q with path %q", s, k.Path)
			}
		case SchemeTPM2:
			if k.Handle < MinPersistentHandle || k.Handle > MaxPersistentHandle {
				t.Fatalf("handle %#x accepted", k.Handle)
			}
		case SchemePKCS11:
			if k.PKCS11["object"] == "" || k.PKCS11["type"] != "private" {
				t.Fatalf("pkcs11 reference %q without object or type=private", s)
			}
		default:
			t.Fatalf("scheme %q", k.Scheme)
		}
	})
}
