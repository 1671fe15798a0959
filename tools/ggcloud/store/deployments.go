package store

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ggcore/ggcore/core/config"
)

// Deployment is one rendering of a group, immutable once made.
type Deployment struct {
	GroupId      string `json:"GroupId"`
	DeploymentId string `json:"DeploymentId"`
	// GroupVersionId is the group.json's GroupVersionId: 1, 2, ... per
	// group.
	GroupVersionId string    `json:"GroupVersionId"`
	CreatedAt      time.Time `json:"CreatedAt"`
	// Core is the thing name of the group's core when it was deployed.
	Core string `json:"Core"`
	// Document is the group.json delivered to the core. Listings leave it
	// out.
	Document json.RawMessage `json:"-"`
}

// Deployment statuses a core reports (UpdateCoreDeploymentStatus).
const (
	StatusInProgress = "InProgress"
	StatusSuccess    = "Success"
	StatusFailure    = "Failure"
)

// Statuses returns the statuses a core may report.
func Statuses() []string { return []string{StatusInProgress, StatusSuccess, StatusFailure} }

// maxErrorMessage bounds a reported ErrorMessage.
const maxErrorMessage = 4096

// CoreStatus is where a core is with one deployment. A deployment starts
// InProgress for its core until the core reports.
type CoreStatus struct {
	Core         string    `json:"Core"` // thing name
	Status       string    `json:"Status"`
	ErrorMessage string    `json:"ErrorMessage"`
	UpdatedAt    time.Time `json:"UpdatedAt"`
}

// Deploy renders the group as group.json (docs/design.md "group.json") with the
// store's identity (fixing it if it was not), checks the document with
// config.ParseGroup, stores it as a new deployment with the next
// GroupVersionId, makes it the group's current deployment, and returns
// its ID. A group that does not render a valid group.json is refused with
// the reason, and nothing is stored.
func (s *Store) Deploy(groupID string) (string, error) {
	return s.deploy(groupID, nil)
}

// deploy is Deploy, with the release fw (nil for none) as the document's
// "Firmware".
func (s *Store) deploy(groupID string, fw *config.Firmware) (string, error) {
	var id string
	err := s.db.Update(func(tx *bolt.Tx) error {
		var g Group
		if err := get(tx.Bucket(bGroups), "group", groupID, &g); err != nil {
			return err
		}
		ident, err := fixIdentity(tx)
		if err != nil {
			return err
		}
		versions, err := tx.Bucket(bDeployments).CreateBucketIfNotExists([]byte(groupID))
		if err != nil {
			return err
		}
		seq, err := versions.NextSequence()
		if err != nil {
			return err
		}
		doc, err := render(tx, g, ident, strconv.FormatUint(seq, 10), fw)
		if err != nil {
			return fmt.Errorf("store: deploy group %s: %w", groupID, err)
		}
		if _, err := config.ParseGroup(doc); err != nil {
			return fmt.Errorf("store: deploy group %s: refused, its group.json is invalid: %w", groupID, err)
		}
		if id, err = newDeploymentID(); err != nil {
			return err
		}
		envelope, err := sealSecrets(tx, g, id, doc)
		if err != nil {
			return fmt.Errorf("store: deploy group %s: secrets: %w", groupID, err)
		}
		if envelope != nil {
			if err := tx.Bucket(bEnvelopes).Put([]byte(groupID+"/"+id), envelope); err != nil {
				return err
			}
		}
		now := time.Now().UTC()
		d := Deployment{GroupId: groupID, DeploymentId: id, GroupVersionId: strconv.FormatUint(seq, 10), CreatedAt: now, Core: g.Core}
		if err := put(versions, id, d); err != nil {
			return err
		}
		if err := tx.Bucket(bDocuments).Put([]byte(groupID+"/"+id), doc); err != nil {
			return err
		}
		if err := tx.Bucket(bCurrent).Put([]byte(groupID), []byte(id)); err != nil {
			return err
		}
		return put(tx.Bucket(bStatus), statusKey(groupID, id, g.Core), CoreStatus{Core: g.Core, Status: StatusInProgress, UpdatedAt: now})
	})
	return id, err
}

// render writes the group's group.json.
func render(tx *bolt.Tx, g Group, id Identity, version string, fw *config.Firmware) ([]byte, error) {
	doc := config.Group{
		Firmware:                        fw,
		GroupId:                         g.ID,
		GroupVersionId:                  version,
		CertificateExpiryInMilliseconds: cmp.Or(g.CertificateExpiryMs, int64(config.DefaultCertificateExpiryMs)),
		Devices:                         []config.Thing{},
		Subscriptions:                   []config.Subscription{},
		Functions:                       []json.RawMessage{},
		Resources:                       []json.RawMessage{},
	}
	cert, err := certificateOf(tx, g.Core, g.CoreCert)
	if err != nil {
		return nil, fmt.Errorf("core: %w", err)
	}
	doc.Cores = []config.Thing{{Id: g.Core, ThingArn: id.ThingARN(g.Core), CertificateArn: id.CertificateARN(cert), SyncShadow: true}}
	for _, d := range g.Devices {
		cert, err := certificateOf(tx, d, g.DeviceCerts[d])
		if err != nil {
			return nil, fmt.Errorf("device: %w", err)
		}
		doc.Devices = append(doc.Devices, config.Thing{Id: d, ThingArn: id.ThingARN(d), CertificateArn: id.CertificateARN(cert)})
	}
	for _, s := range g.Subscriptions {
		doc.Subscriptions = append(doc.Subscriptions, config.Subscription{Id: s.Id, Source: s.Source, Subject: s.Subject, Target: s.Target})
	}
	if doc.Resources, err = renderResources(g); err != nil {
		return nil, err
	}
	if doc.Functions, err = renderFunctions(tx, g.ID); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// newDeploymentID returns a random (version 4) UUID.
func newDeploymentID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: deployment ID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

func statusKey(group, deployment, core string) string {
	return group + "/" + deployment + "/" + core
}

// Deployment returns a deployment with its group.json.
func (s *Store) Deployment(groupID, deploymentID string) (Deployment, error) {
	var d Deployment
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		d, err = deployment(tx, groupID, deploymentID)
		return err
	})
	return d, err
}

func deployment(tx *bolt.Tx, groupID, deploymentID string) (Deployment, error) {
	var d Deployment
	versions := tx.Bucket(bDeployments).Bucket([]byte(groupID))
	if versions == nil || versions.Get([]byte(deploymentID)) == nil {
		return d, fmt.Errorf("store: group %s: deployment %s: %w", groupID, deploymentID, ErrNotFound)
	}
	if err := get(versions, "deployment", deploymentID, &d); err != nil {
		return d, err
	}
	d.Document = slices.Clone(tx.Bucket(bDocuments).Get([]byte(groupID + "/" + deploymentID)))
	return d, nil
}

// Deployments lists a group's deployments, oldest first, without their
// documents.
func (s *Store) Deployments(groupID string) ([]Deployment, error) {
	var out []Deployment
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bGroups).Get([]byte(groupID)) == nil {
			return fmt.Errorf("store: group %s: %w", groupID, ErrNotFound)
		}
		out = []Deployment{}
		versions := tx.Bucket(bDeployments).Bucket([]byte(groupID))
		if versions == nil {
			return nil
		}
		var err error
		out, err = list[Deployment](versions)
		return err
	})
	slices.SortFunc(out, func(a, b Deployment) int {
		x, _ := strconv.Atoi(a.GroupVersionId)
		y, _ := strconv.Atoi(b.GroupVersionId)
		return cmp.Compare(x, y)
	})
	return out, err
}

// CurrentDeployment returns the group's current deployment, with its
// group.json; ErrNotFound if the group was never deployed.
func (s *Store) CurrentDeployment(groupID string) (Deployment, error) {
	var d Deployment
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		d, err = currentDeployment(tx, groupID)
		return err
	})
	return d, err
}

func currentDeployment(tx *bolt.Tx, groupID string) (Deployment, error) {
	if tx.Bucket(bGroups).Get([]byte(groupID)) == nil {
		return Deployment{}, fmt.Errorf("store: group %s: %w", groupID, ErrNotFound)
	}
	id := tx.Bucket(bCurrent).Get([]byte(groupID))
	if id == nil {
		return Deployment{}, fmt.Errorf("store: group %s has no deployment: %w", groupID, ErrNotFound)
	}
	return deployment(tx, groupID, string(id))
}

// CurrentDeploymentOfCore returns the current deployment of the group
// whose core is thing; ErrNotFound if it is the core of no group or the
// group was never deployed.
func (s *Store) CurrentDeploymentOfCore(thing string) (Deployment, error) {
	var d Deployment
	err := s.db.View(func(tx *bolt.Tx) error {
		g, err := groupOfCore(tx, thing)
		if err != nil {
			return err
		}
		d, err = currentDeployment(tx, g.ID)
		return err
	})
	return d, err
}

// SetCoreStatus records what a core reports about a deployment and
// returns the status as stored. status is one of Statuses; core is the
// thing name of the deployment's core.
func (s *Store) SetCoreStatus(groupID, deploymentID, core, status, message string) (CoreStatus, error) {
	if !slices.Contains(Statuses(), status) {
		return CoreStatus{}, fmt.Errorf("store: deployment status %q: want one of %s", status, strings.Join(Statuses(), ", "))
	}
	if len(message) > maxErrorMessage {
		return CoreStatus{}, fmt.Errorf("store: deployment status: ErrorMessage has %d bytes, at most %d", len(message), maxErrorMessage)
	}
	st := CoreStatus{Core: core, Status: status, ErrorMessage: message, UpdatedAt: time.Now().UTC()}
	err := s.db.Update(func(tx *bolt.Tx) error {
		d, err := deployment(tx, groupID, deploymentID)
		if err != nil {
			return err
		}
		if d.Core != core {
			return fmt.Errorf("store: group %s: deployment %s: %s is not its core (%s)", groupID, deploymentID, core, d.Core)
		}
		return put(tx.Bucket(bStatus), statusKey(groupID, deploymentID, core), st)
	})
	return st, err
}

// DeploymentStatus returns the status of each core of a deployment.
func (s *Store) DeploymentStatus(groupID, deploymentID string) ([]CoreStatus, error) {
	var out []CoreStatus
	err := s.db.View(func(tx *bolt.Tx) error {
		if _, err := deployment(tx, groupID, deploymentID); err != nil {
			return err
		}
		b := tx.Bucket(bStatus)
		prefix := groupID + "/" + deploymentID + "/"
		out = []CoreStatus{}
		for _, core := range keysWithPrefix(b, prefix) {
			var st CoreStatus
			if err := get(b, "deployment status", prefix+core, &st); err != nil {
				return err
			}
			out = append(out, st)
		}
		return nil
	})
	return out, err
}
