package store

import (
	"crypto/rsa"
	"fmt"
	"slices"
	"unicode"

	bolt "go.etcd.io/bbolt"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/topic"
)

// checkGroupID reports why id cannot name a group: it is used in URL
// paths, ARNs and keys of the store (group.json's rule).
func checkGroupID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("store: group ID %q: want 1-128 characters", id)
	}
	for _, r := range id {
		if r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("store: group ID %q contains %q: a group ID has no '/', spaces or control characters", id, r)
		}
	}
	return nil
}

// checkGroup reports the first thing wrong with g: its ID, CAs and key,
// expiry, members and their certificates, or subscriptions.
func checkGroup(tx *bolt.Tx, g Group) error {
	if err := checkGroupID(g.ID); err != nil {
		return err
	}
	if err := checkCA(g); err != nil {
		return fmt.Errorf("store: group %s: %w", g.ID, err)
	}
	if g.CertificateExpiryMs < 0 || g.CertificateExpiryMs > config.MaxCertificateExpiryMs {
		return fmt.Errorf("store: group %s: CertificateExpiryMs %d: want 1 to %d (30 days), or 0 for 7 days",
			g.ID, g.CertificateExpiryMs, config.MaxCertificateExpiryMs)
	}
	if err := checkMembers(tx, g); err != nil {
		return err
	}
	return checkSubscriptions(tx, g)
}

// checkCA checks that the group has CA certificates and that its CA key,
// if any, is the RSA key of the first one.
func checkCA(g Group) error {
	if len(g.CAs) == 0 {
		return fmt.Errorf("want at least one CA")
	}
	var first *pki.CA
	for i, pemText := range g.CAs {
		certs, err := pki.ParseCertificates([]byte(pemText))
		if err != nil {
			return fmt.Errorf("CAs[%d]: %w", i, err)
		}
		if i == 0 {
			first = &pki.CA{Cert: certs[0]}
		}
	}
	if g.CAKey == "" {
		return nil
	}
	key, err := keys.ParsePEM([]byte(g.CAKey))
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	pub, ok := key.Public().(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("CA key: %s; want RSA (MQTT server certificates are signed SHA256-RSA)", keys.Describe(key.Public()))
	}
	if !pub.Equal(first.Cert.PublicKey) {
		return fmt.Errorf("CA key is not the key of the CA certificate %q", first.Cert.Subject.CommonName)
	}
	return nil
}

// checkMembers checks the core and devices: registered, each once, their
// named certificates theirs, and the core the core of no other group.
func checkMembers(tx *bolt.Tx, g Group) error {
	if err := checkThingName(g.Core); err != nil {
		return fmt.Errorf("store: group %s: core: %w", g.ID, err)
	}
	if !thingExists(tx, g.Core) {
		return fmt.Errorf("store: group %s: core: thing %s: %w", g.ID, g.Core, ErrNotFound)
	}
	if g.CoreCert != "" {
		if _, err := certificateOf(tx, g.Core, g.CoreCert); err != nil {
			return fmt.Errorf("store: group %s: core: %w", g.ID, err)
		}
	}
	if other, err := groupOfCore(tx, g.Core); err == nil && other.ID != g.ID {
		return fmt.Errorf("store: group %s: thing %s is already the core of group %s", g.ID, g.Core, other.ID)
	}
	for i, d := range g.Devices {
		switch {
		case !thingExists(tx, d):
			return fmt.Errorf("store: group %s: device: thing %s: %w", g.ID, d, ErrNotFound)
		case d == g.Core:
			return fmt.Errorf("store: group %s: thing %s is the group's core, it cannot also be a device", g.ID, d)
		case slices.Contains(g.Devices[:i], d):
			return fmt.Errorf("store: group %s: device %s is listed twice", g.ID, d)
		}
	}
	for d, cert := range g.DeviceCerts {
		if !slices.Contains(g.Devices, d) {
			return fmt.Errorf("store: group %s: DeviceCerts names %s, which is not a device of the group", g.ID, d)
		}
		if _, err := certificateOf(tx, d, cert); err != nil {
			return fmt.Errorf("store: group %s: device: %w", g.ID, err)
		}
	}
	return nil
}

// checkSubscriptions checks each subscription as group.json will: a
// unique Id, a topic filter, and endpoints that are "cloud",
// "GGShadowService" or the ARN of a thing of the group.
func checkSubscriptions(tx *bolt.Tx, g Group) error {
	if len(g.Subscriptions) == 0 {
		return nil
	}
	id, err := fixIdentity(tx)
	if err != nil {
		return err
	}
	endpoints := []string{config.EndpointCloud, config.EndpointShadow, id.ThingARN(g.Core)}
	for _, d := range g.Devices {
		endpoints = append(endpoints, id.ThingARN(d))
	}
	endpoints = append(endpoints, groupFunctionARNs(tx, g.ID)...)
	for i, s := range g.Subscriptions {
		where := fmt.Sprintf("store: group %s: subscription %q", g.ID, s.Id)
		if !thingName.MatchString(s.Id) {
			return fmt.Errorf("%s: Id: want 1-128 characters [a-zA-Z0-9:_-]", where)
		}
		if slices.ContainsFunc(g.Subscriptions[:i], func(o Subscription) bool { return o.Id == s.Id }) {
			return fmt.Errorf("%s: Id is used twice", where)
		}
		if err := topic.ValidFilter(s.Subject); err != nil {
			return fmt.Errorf("%s: Subject %q is not an MQTT topic filter: %v", where, s.Subject, err)
		}
		for _, e := range []struct{ name, value string }{{"Source", s.Source}, {"Target", s.Target}} {
			if !slices.Contains(endpoints, e.value) {
				return fmt.Errorf("%s: %s %q: want a thing of the group (its name or %s), a function of the group, %q or %q",
					where, e.name, e.value, id.ThingARN("NAME"), config.EndpointCloud, config.EndpointShadow)
			}
		}
		if s.Source == s.Target {
			return fmt.Errorf("%s: Source and Target are both %q", where, s.Source)
		}
	}
	return nil
}
