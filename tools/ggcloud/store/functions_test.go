package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/core/config"
)

const fnARN = "arn:aws:lambda:us-east-1:123456789012:function:hello:1"

func TestFunctionCodeGoesWithTheDeployment(t *testing.T) {
	s := open(t, t.TempDir())
	ca := newGroupCA(t)
	fleet(t, s, "gw")
	must(t, s.CreateGroup(Group{ID: "g1", Core: "gw", CAs: []string{ca.cert}, CAKey: ca.key}))
	conf := json.RawMessage(`{"Executable":"index.handler","FunctionRuntimeOverride":"nodejs20.x","Pinned":true}`)
	if _, err := s.AddFunction("nogroup", Function{FunctionArn: fnARN, FunctionConfiguration: conf}); !errors.Is(err, ErrNotFound) {
		t.Errorf("function added to a missing group: %v", err)
	}
	f, err := s.AddFunction("g1", Function{FunctionArn: fnARN, FunctionConfiguration: conf})
	must(t, err)
	if f.Id != "hello-1" {
		t.Errorf("Id = %q; want one made from the ARN", f.Id)
	}

	archive := append([]byte{0x1f, 0x8b}, bytes.Repeat([]byte("x"), 100)...)
	for _, tc := range []struct {
		name string
		arn  string
		data []byte
		max  int64
		want string
	}{
		{"too large", fnARN, archive, 50, "more than the 50 allowed"},
		{"not an archive", fnARN, []byte("plain text"), 0, "zip or tar.gz"},
		{"empty", fnARN, nil, 0, "empty"},
		{"bad ARN", "hello", archive, 0, "function ARN"},
	} {
		if _, err := s.PutFunctionCode(tc.arn, tc.data, tc.max); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: PutFunctionCode = %v; want an error with %q", tc.name, err, tc.want)
		}
	}
	fc, err := s.PutFunctionCode(fnARN, archive, 0)
	must(t, err)
	sum := sha256.Sum256(archive)
	if fc.Sha256 != hex.EncodeToString(sum[:]) || fc.Size != int64(len(archive)) {
		t.Fatalf("stored %+v; want the archive's SHA-256 and size", fc)
	}

	id, err := s.Deploy("g1")
	must(t, err)
	d, err := s.Deployment("g1", id)
	must(t, err)
	g, err := config.ParseGroup(d.Document)
	must(t, err)
	fns, err := g.LocalFunctions()
	must(t, err)
	if len(fns) != 1 || fns[0].FunctionArn != fnARN || !fns[0].Pinned {
		t.Fatalf("deployed functions %+v", fns)
	}
	var entry struct {
		Code struct {
			Sha256 string
			Size   int64
		}
	}
	must(t, json.Unmarshal(g.Functions[0], &entry))
	if entry.Code.Sha256 != fc.Sha256 || entry.Code.Size != fc.Size {
		t.Errorf("deployment references code %+v; want %+v", entry.Code, fc)
	}
	got, err := s.DeploymentCode("g1", id, fc.Sha256)
	if err != nil || !bytes.Equal(got, archive) {
		t.Errorf("DeploymentCode = %d bytes, %v; want the archive", len(got), err)
	}

	// New code: the old deployment still serves its own; the new one the new.
	archive2 := append(archive, 'y')
	fc2, err := s.PutFunctionCode(fnARN, archive2, 0)
	must(t, err)
	if _, err := s.DeploymentCode("g1", id, fc2.Sha256); !errors.Is(err, ErrNotFound) {
		t.Errorf("code the deployment does not reference was served: %v", err)
	}
	if got, err := s.DeploymentCode("g1", id, fc.Sha256); err != nil || !bytes.Equal(got, archive) {
		t.Errorf("old deployment's code after put-code: %v", err)
	}
	id2, err := s.Deploy("g1")
	must(t, err)
	if got, err := s.DeploymentCode("g1", id2, fc2.Sha256); err != nil || !bytes.Equal(got, archive2) {
		t.Errorf("new deployment's code: %v", err)
	}
	codes, err := s.FunctionCodes()
	must(t, err)
	if len(codes) != 1 || codes[0].Sha256 != fc2.Sha256 {
		t.Errorf("FunctionCodes = %+v", codes)
	}

	// An invalid FunctionConfiguration is refused at deployment.
	_, err = s.AddFunction("g1", Function{FunctionArn: fnARN, FunctionConfiguration: json.RawMessage(`{"Executable":"../x"}`)})
	must(t, err)
	if _, err := s.Deploy("g1"); err == nil {
		t.Error("a group with an invalid function was deployed")
	}
}
