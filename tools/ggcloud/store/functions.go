package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the local functions (made on first use).
var (
	// bFunctionCode holds each function's current code: ARN -> FunctionCode.
	bFunctionCode = []byte("functionCode")
	// bCodeArchives holds the archives by content: SHA-256 (hex) -> bytes.
	// Deployments reference them by hash, so an old deployment's code
	// stays fetchable after put-code replaces a function's code.
	bCodeArchives = []byte("codeArchives")
	// bGroupFunctions holds each group's functions: group "\n" ARN -> a
	// v1 Functions entry (Id, FunctionArn, FunctionConfiguration).
	bGroupFunctions = []byte("groupFunctions")
)

// DefaultMaxCodeSize bounds a code archive unless the caller says more.
const DefaultMaxCodeSize = 50 << 20

// FunctionCode is a function's code archive as the store knows it: its
// SHA-256 (lowercase hex) and size, which deployments carry.
type FunctionCode struct {
	FunctionArn string    `json:"FunctionArn"`
	Sha256      string    `json:"Sha256"`
	Size        int64     `json:"Size"`
	UpdatedAt   time.Time `json:"UpdatedAt"`
}

// Function is a group's function: a v1 Functions entry.
type Function struct {
	Id                    string          `json:"Id"`
	FunctionArn           string          `json:"FunctionArn"`
	FunctionConfiguration json.RawMessage `json:"FunctionConfiguration"`
}

func checkFunctionARN(arn string) error {
	if !strings.HasPrefix(arn, "arn:aws:lambda:") || strings.ContainsAny(arn, "\n/ ") {
		return fmt.Errorf("function ARN %q: want arn:aws:lambda:REGION:ACCOUNT:function:NAME[:VERSION]", arn)
	}
	return nil
}

// PutFunctionCode stores data (a zip or tar.gz archive, at most max
// bytes; max <= 0 means DefaultMaxCodeSize) as the code of the function
// arn, which the group's next deployment carries.
func (s *Store) PutFunctionCode(arn string, data []byte, max int64) (FunctionCode, error) {
	if max <= 0 {
		max = DefaultMaxCodeSize
	}
	if err := checkFunctionARN(arn); err != nil {
		return FunctionCode{}, fmt.Errorf("store: %w", err)
	}
	switch {
	case len(data) == 0:
		return FunctionCode{}, errors.New("store: function code: empty archive")
	case int64(len(data)) > max:
		return FunctionCode{}, fmt.Errorf("store: function code: %d bytes: more than the %d allowed", len(data), max)
	case !bytes.HasPrefix(data, []byte("PK\x03\x04")) && !bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		return FunctionCode{}, errors.New("store: function code: want a zip or tar.gz archive")
	}
	sum := sha256.Sum256(data)
	fc := FunctionCode{FunctionArn: arn, Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data)), UpdatedAt: time.Now().UTC()}
	err := s.db.Update(func(tx *bolt.Tx) error {
		archives, err := tx.CreateBucketIfNotExists(bCodeArchives)
		if err != nil {
			return err
		}
		codes, err := tx.CreateBucketIfNotExists(bFunctionCode)
		if err != nil {
			return err
		}
		if err := archives.Put([]byte(fc.Sha256), data); err != nil {
			return err
		}
		return put(codes, arn, fc)
	})
	return fc, err
}

// AddFunction adds the function f to a group, or replaces the group's
// function of that ARN. Its FunctionConfiguration is checked when the
// group is deployed.
func (s *Store) AddFunction(groupID string, f Function) (Function, error) {
	if err := checkFunctionARN(f.FunctionArn); err != nil {
		return Function{}, fmt.Errorf("store: %w", err)
	}
	if f.Id == "" {
		f.Id = f.FunctionArn[strings.LastIndex(strings.TrimSuffix(f.FunctionArn, ":"), "function:")+len("function:"):]
		f.Id = strings.NewReplacer(":", "-").Replace(f.Id)
	}
	var conf map[string]json.RawMessage
	if len(f.FunctionConfiguration) == 0 || json.Unmarshal(f.FunctionConfiguration, &conf) != nil || conf == nil {
		return Function{}, errors.New("store: FunctionConfiguration: want a JSON object (v1's FunctionConfiguration)")
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		var g Group
		if err := get(tx.Bucket(bGroups), "group", groupID, &g); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bGroupFunctions)
		if err != nil {
			return err
		}
		return put(b, groupID+"\n"+f.FunctionArn, f)
	})
	return f, err
}

// FunctionCodes lists the functions' current code.
func (s *Store) FunctionCodes() ([]FunctionCode, error) {
	out := []FunctionCode{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bFunctionCode)
		if b == nil {
			return nil
		}
		var err error
		out, err = list[FunctionCode](b)
		return err
	})
	return out, err
}

// renderFunctions returns the group's Functions entries for group.json,
// each with "Code": {"Sha256","Size"} when its code was put.
func renderFunctions(tx *bolt.Tx, groupID string) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	b := tx.Bucket(bGroupFunctions)
	if b == nil {
		return out, nil
	}
	codes := tx.Bucket(bFunctionCode)
	c := b.Cursor()
	prefix := []byte(groupID + "\n")
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var f Function
		if err := json.Unmarshal(v, &f); err != nil {
			return nil, fmt.Errorf("function %s: %w", k, err)
		}
		entry := struct {
			Function
			Code *struct {
				Sha256 string `json:"Sha256"`
				Size   int64  `json:"Size"`
			} `json:"Code,omitempty"`
		}{Function: f}
		if codes != nil {
			var fc FunctionCode
			if err := get(codes, "function code", f.FunctionArn, &fc); err == nil {
				entry.Code = &struct {
					Sha256 string `json:"Sha256"`
					Size   int64  `json:"Size"`
				}{fc.Sha256, fc.Size}
			}
		}
		data, err := json.Marshal(entry)
		if err != nil {
			return nil, err
		}
		out = append(out, data)
	}
	return out, nil
}

// DeploymentCode returns the code archive (or the firmware release) of SHA-256 sum if the
// deployment references it; ErrNotFound otherwise.
func (s *Store) DeploymentCode(groupID, deploymentID, sum string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		doc := tx.Bucket(bDocuments).Get([]byte(groupID + "/" + deploymentID))
		if doc == nil {
			return fmt.Errorf("store: deployment %s of group %s: %w", deploymentID, groupID, ErrNotFound)
		}
		var g struct {
			Functions []struct{ Code *struct{ Sha256 string } }
			Firmware  *struct{ Sha256 string }
		}
		if err := json.Unmarshal(doc, &g); err != nil {
			return fmt.Errorf("store: deployment %s: %w", deploymentID, err)
		}
		referenced := g.Firmware != nil && g.Firmware.Sha256 == sum
		for _, f := range g.Functions {
			referenced = referenced || (f.Code != nil && f.Code.Sha256 == sum)
		}
		b := tx.Bucket(bCodeArchives)
		if !referenced || b == nil || b.Get([]byte(sum)) == nil {
			return fmt.Errorf("store: deployment %s: code %s: %w", deploymentID, sum, ErrNotFound)
		}
		out = bytes.Clone(b.Get([]byte(sum)))
		return nil
	})
	return out, err
}

// groupFunctionARNs are the ARNs of the group's functions, which
// subscriptions may name as Source or Target.
func groupFunctionARNs(tx *bolt.Tx, groupID string) []string {
	var out []string
	b := tx.Bucket(bGroupFunctions)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	prefix := []byte(groupID + "\n")
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out
}
