package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Group is a Greengrass group: its core, its devices, the subscriptions
// that route between them, and its group CA. Discovery and deployments
// are made from it.
type Group struct {
	ID   string `json:"id"`
	Core string `json:"core"` // the core's thing name
	// CoreCert is the ID of the core's certificate in the group; empty
	// means the core's only registered certificate, found at deployment.
	CoreCert string   `json:"coreCert,omitempty"`
	Devices  []string `json:"devices"` // thing names
	// DeviceCerts maps a device to the ID of its certificate in the
	// group; a device missing here takes part with its only registered
	// certificate, found at deployment.
	DeviceCerts map[string]string `json:"deviceCerts,omitempty"`
	// Subscriptions route messages between the group's things, the cloud
	// and the shadow service.
	Subscriptions []Subscription `json:"subscriptions,omitempty"`
	CAs           []string       `json:"cas"` // PEM certificates devices trust the core's server certificate by
	// CAKey is the group CA's private key (PEM) that signs the core's
	// MQTT server certificates; it never leaves ggcloud.
	CAKey string `json:"caKey,omitempty"`
	// Resources are the group's secret resources (v1's
	// SecretsManagerSecretResourceData).
	Resources []SecretResource `json:"resources,omitempty"`
	// CertificateExpiryMs is the validity of the MQTT server
	// certificates ggcloud signs (v1's CertificateExpiryInMilliseconds);
	// zero means 7 days.
	CertificateExpiryMs int64 `json:"certificateExpiryMs,omitempty"`
}

// Subscription allows messages from Source on topics matching Subject to
// reach Target, as in group.json. Source and Target are a thing ARN of
// the group, "cloud" or "GGShadowService".
type Subscription struct {
	Id      string `json:"Id"`
	Source  string `json:"Source"`
	Subject string `json:"Subject"`
	Target  string `json:"Target"`
}

// Member roles in the membership index.
const (
	roleCore   = "core"
	roleDevice = "device"
)

// PutGroup creates or replaces a group; its core and devices must be
// registered things, and the certificates it names must be theirs.
// Certificates it does not name are found at deployment.
func (s *Store) PutGroup(g Group) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return saveGroup(tx, g)
	})
}

// CreateGroup creates a group, pinning the certificates of its core and
// devices: the ones named, else each thing's only registered
// certificate. Creating the same group again (same core, certificate,
// CAs, CA key and expiry; devices and subscriptions not given or the
// same) changes nothing; a different group under a taken ID is ErrExists.
// A group made here must have its CA key, which signs the core's MQTT
// server certificates.
func (s *Store) CreateGroup(g Group) error {
	if g.CAKey == "" {
		return fmt.Errorf("store: group %s: want the group CA's private key, which signs the core's MQTT server certificates", g.ID)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := pinCertificates(tx, &g); err != nil {
			return err
		}
		var old Group
		if err := get(tx.Bucket(bGroups), "group", g.ID, &old); err == nil {
			if g.Devices == nil {
				g.Devices, g.DeviceCerts = old.Devices, old.DeviceCerts
			}
			if g.Subscriptions == nil {
				g.Subscriptions = old.Subscriptions
			}
			if g.Resources == nil {
				g.Resources = old.Resources
			}
			if !sameGroup(old, g) {
				return fmt.Errorf("store: group %s exists with another definition (core %s): %w", g.ID, old.Core, ErrExists)
			}
			return nil
		}
		return saveGroup(tx, g)
	})
}

// pinCertificates fills in the certificate of the core and of each
// device that g does not name.
func pinCertificates(tx *bolt.Tx, g *Group) error {
	if !thingExists(tx, g.Core) {
		return fmt.Errorf("store: group %s: core: thing %s: %w", g.ID, g.Core, ErrNotFound)
	}
	cert, err := certificateOf(tx, g.Core, g.CoreCert)
	if err != nil {
		return fmt.Errorf("store: group %s: core: %w", g.ID, err)
	}
	g.CoreCert = cert
	certs := maps.Clone(g.DeviceCerts)
	for _, d := range g.Devices {
		if !thingExists(tx, d) {
			return fmt.Errorf("store: group %s: device: thing %s: %w", g.ID, d, ErrNotFound)
		}
		cert, err := certificateOf(tx, d, g.DeviceCerts[d])
		if err != nil {
			return fmt.Errorf("store: group %s: device: %w", g.ID, err)
		}
		if certs == nil {
			certs = map[string]string{}
		}
		certs[d] = cert
	}
	g.DeviceCerts = certs
	return nil
}

// sameGroup compares two groups by their stored form.
func sameGroup(a, b Group) bool {
	ja, errA := json.Marshal(normalize(a))
	jb, errB := json.Marshal(normalize(b))
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// normalize makes empty lists and maps nil.
func normalize(g Group) Group {
	if len(g.Devices) == 0 {
		g.Devices = nil
	}
	if len(g.DeviceCerts) == 0 {
		g.DeviceCerts = nil
	}
	if len(g.Subscriptions) == 0 {
		g.Subscriptions = nil
	}
	if len(g.Resources) == 0 {
		g.Resources = nil
	}
	return g
}

// AddDevice adds a registered thing to a group as a device, with
// certificate certID, or with its only registered certificate when
// certID is empty. Adding a device again with the same certificate
// changes nothing; with another, it changes the device's certificate.
func (s *Store) AddDevice(groupID, thing, certID string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var g Group
		if err := get(tx.Bucket(bGroups), "group", groupID, &g); err != nil {
			return err
		}
		if thing == g.Core {
			return fmt.Errorf("store: group %s: thing %s is the group's core, it cannot also be a device", groupID, thing)
		}
		if !thingExists(tx, thing) {
			return fmt.Errorf("store: group %s: device: thing %s: %w", groupID, thing, ErrNotFound)
		}
		cert, err := certificateOf(tx, thing, certID)
		if err != nil {
			return fmt.Errorf("store: group %s: device: %w", groupID, err)
		}
		if slices.Contains(g.Devices, thing) && g.DeviceCerts[thing] == cert {
			return nil
		}
		if !slices.Contains(g.Devices, thing) {
			g.Devices = append(g.Devices, thing)
		}
		g.DeviceCerts = maps.Clone(g.DeviceCerts)
		if g.DeviceCerts == nil {
			g.DeviceCerts = map[string]string{}
		}
		g.DeviceCerts[thing] = cert
		return saveGroup(tx, g)
	})
}

// AddSubscription adds a subscription to a group. Source and Target may
// be a thing name of the group, which becomes its ARN. Adding the same
// subscription again changes nothing; another one under a taken Id is
// ErrExists. It returns the subscription as stored.
func (s *Store) AddSubscription(groupID string, sub Subscription) (Subscription, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		var g Group
		if err := get(tx.Bucket(bGroups), "group", groupID, &g); err != nil {
			return err
		}
		id, err := fixIdentity(tx)
		if err != nil {
			return err
		}
		members := append([]string{g.Core}, g.Devices...)
		for _, e := range []*string{&sub.Source, &sub.Target} {
			if slices.Contains(members, *e) {
				*e = id.ThingARN(*e)
			}
		}
		for _, old := range g.Subscriptions {
			if old.Id != sub.Id {
				continue
			}
			if old == sub {
				return nil
			}
			return fmt.Errorf("store: group %s: subscription %s exists (%s -> %s on %q): %w",
				groupID, sub.Id, old.Source, old.Target, old.Subject, ErrExists)
		}
		g.Subscriptions = append(slices.Clone(g.Subscriptions), sub)
		return saveGroup(tx, g)
	})
	return sub, err
}

// Group returns a group.
func (s *Store) Group(id string) (Group, error) {
	var g Group
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx.Bucket(bGroups), "group", id, &g) })
	return g, err
}

// Groups lists the groups in ID order.
func (s *Store) Groups() ([]Group, error) {
	var groups []Group
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		groups, err = list[Group](tx.Bucket(bGroups))
		return err
	})
	return groups, err
}

// GroupOfCore returns the group whose core is thing.
func (s *Store) GroupOfCore(thing string) (Group, error) {
	var g Group
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		g, err = groupOfCore(tx, thing)
		return err
	})
	return g, err
}

func groupOfCore(tx *bolt.Tx, thing string) (Group, error) {
	members := tx.Bucket(bMembers)
	for _, id := range keysWithPrefix(members, thing+"/") {
		if string(members.Get([]byte(thing+"/"+id))) == roleCore {
			var g Group
			err := get(tx.Bucket(bGroups), "group", id, &g)
			return g, err
		}
	}
	return Group{}, fmt.Errorf("store: %s is the core of no group: %w", thing, ErrNotFound)
}

// GroupsOf returns the groups a thing belongs to, as core or device, in
// ID order.
func (s *Store) GroupsOf(thing string) ([]Group, error) {
	var groups []Group
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		groups, err = groupsOf(tx, thing)
		return err
	})
	return groups, err
}

func groupsOf(tx *bolt.Tx, thing string) ([]Group, error) {
	var groups []Group
	for _, id := range keysWithPrefix(tx.Bucket(bMembers), thing+"/") {
		var g Group
		if err := get(tx.Bucket(bGroups), "group", id, &g); err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// DiscoveredGroup is a group as the Discovery API describes it to one of
// its things: the group, and its core's connectivity information.
type DiscoveredGroup struct {
	Group        Group
	Connectivity []Endpoint
}

// Discover returns the groups a thing belongs to, each with its core's
// connectivity, read in one transaction.
func (s *Store) Discover(thing string) ([]DiscoveredGroup, error) {
	var out []DiscoveredGroup
	err := s.db.View(func(tx *bolt.Tx) error {
		groups, err := groupsOf(tx, thing)
		if err != nil {
			return err
		}
		for _, g := range groups {
			eps, err := connectivity(tx, g.Core)
			if err != nil {
				return err
			}
			out = append(out, DiscoveredGroup{Group: g, Connectivity: eps})
		}
		return nil
	})
	return out, err
}

// saveGroup checks g and writes it with its membership index.
func saveGroup(tx *bolt.Tx, g Group) error {
	if err := checkGroup(tx, g); err != nil {
		return err
	}
	b := tx.Bucket(bGroups)
	members := tx.Bucket(bMembers)
	var old Group
	if err := get(b, "group", g.ID, &old); err == nil {
		for _, m := range append([]string{old.Core}, old.Devices...) {
			if err := members.Delete([]byte(m + "/" + g.ID)); err != nil {
				return err
			}
		}
	}
	if err := members.Put([]byte(g.Core+"/"+g.ID), []byte(roleCore)); err != nil {
		return err
	}
	for _, d := range g.Devices {
		if err := members.Put([]byte(d+"/"+g.ID), []byte(roleDevice)); err != nil {
			return err
		}
	}
	return put(b, g.ID, g)
}

// RemoveDevice takes a device out of a group. A subscription that still
// names the device is refused, naming it: remove or change those first,
// so that the next deployment is valid. Removing a device that is not in
// the group is ErrNotFound.
func (s *Store) RemoveDevice(groupID, thing string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var g Group
		if err := get(tx.Bucket(bGroups), "group", groupID, &g); err != nil {
			return err
		}
		i := slices.Index(g.Devices, thing)
		if i < 0 {
			return fmt.Errorf("store: group %s: device %s: %w", groupID, thing, ErrNotFound)
		}
		var t Thing
		if err := get(tx.Bucket(bThings), "thing", thing, &t); err != nil {
			return err
		}
		for _, sub := range g.Subscriptions {
			if sub.Source == t.ARN || sub.Target == t.ARN || sub.Source == thing || sub.Target == thing {
				return fmt.Errorf("store: group %s: device %s is in subscription %s; remove that first", groupID, thing, sub.Id)
			}
		}
		g.Devices = slices.Delete(slices.Clone(g.Devices), i, i+1)
		g.DeviceCerts = maps.Clone(g.DeviceCerts)
		delete(g.DeviceCerts, thing)
		return saveGroup(tx, g)
	})
}

// RemoveSubscription deletes a subscription of a group by ID; an unknown
// ID is ErrNotFound.
func (s *Store) RemoveSubscription(groupID, id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var g Group
		if err := get(tx.Bucket(bGroups), "group", groupID, &g); err != nil {
			return err
		}
		i := slices.IndexFunc(g.Subscriptions, func(s Subscription) bool { return s.Id == id })
		if i < 0 {
			return fmt.Errorf("store: group %s: subscription %s: %w", groupID, id, ErrNotFound)
		}
		g.Subscriptions = slices.Delete(slices.Clone(g.Subscriptions), i, i+1)
		return saveGroup(tx, g)
	})
}
