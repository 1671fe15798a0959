package config

import (
	"encoding/json"
	"fmt"
	"strings"
)

// StageCurrent is the staging label of a secret's current version; a
// secret resource always carries it.
const StageCurrent = "AWSCURRENT"

const secretARNForm = "arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME"

// SecretResource is a group resource of v1's SecretsManagerSecretResourceData
// kind: a reference to a secret whose versions are deployed to the core.
type SecretResource struct {
	Id   string // the resource's Id, named by ResourceAccessPolicies
	Name string
	ARN  string // arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME
	// AdditionalStagingLabelsToDownload are the staging labels deployed
	// besides AWSCURRENT.
	AdditionalStagingLabelsToDownload []string
}

// Labels are the staging labels deployed for the resource: AWSCURRENT,
// then the additional ones, each once.
func (r SecretResource) Labels() []string {
	out := []string{StageCurrent}
	for _, l := range r.AdditionalStagingLabelsToDownload {
		if !containsString(out, l) {
			out = append(out, l)
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// resourceJSON is the part of a v1 resource definition ggcore reads.
type resourceJSON struct {
	Id                    string
	Name                  string
	ResourceDataContainer struct {
		SecretsManagerSecretResourceData *struct {
			ARN                               string
			AdditionalStagingLabelsToDownload []string
		}
	}
}

// SecretResources returns the group's secret resources in Resources
// order; other kinds of resources are left out. ParseGroup has checked
// them.
func (g *Group) SecretResources() []SecretResource {
	var out []SecretResource
	for _, raw := range g.Resources {
		var r resourceJSON
		if json.Unmarshal(raw, &r) != nil || r.ResourceDataContainer.SecretsManagerSecretResourceData == nil {
			continue
		}
		d := r.ResourceDataContainer.SecretsManagerSecretResourceData
		out = append(out, SecretResource{Id: r.Id, Name: r.Name, ARN: d.ARN, AdditionalStagingLabelsToDownload: d.AdditionalStagingLabelsToDownload})
	}
	return out
}

// SecretName is the secret's name from its ARN: the resource part after
// "secret:", less the six-character suffix Secrets Manager appends
// ("-AbCdEf") when there is one.
func SecretName(secretARN string) string {
	a, err := parseARN(secretARN, "secretsmanager")
	if err != nil {
		return ""
	}
	name, ok := strings.CutPrefix(a.resource, "secret:")
	if !ok {
		return ""
	}
	if i := len(name) - 7; i > 0 && name[i] == '-' && lambdaWord(name[i+1:], 6) && !strings.Contains(name[i+1:], "-") {
		return name[:i]
	}
	return name
}

// CheckSecretARN reports why s is not a Secrets Manager secret ARN.
func CheckSecretARN(s string) error {
	a, err := parseARN(s, "secretsmanager")
	if err != nil {
		return fmt.Errorf("%s is not a secret ARN (%v): want %s", quote(s), err, secretARNForm)
	}
	name, ok := strings.CutPrefix(a.resource, "secret:")
	if !ok || name == "" || len(name) > 512 {
		return fmt.Errorf("%s is not a secret ARN: want %s", quote(s), secretARNForm)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/_+=.@-", r)) {
			return fmt.Errorf("%s: secret name has %q: want a-z A-Z 0-9 /_+=.@-", quote(s), r)
		}
	}
	return nil
}

// resource checks one Resources entry: an object; a secret resource
// also needs an Id, a secret ARN and staging labels that are strings.
// It returns the secret resource, or nil for another kind.
func (w *walker) resource(path string, raw json.RawMessage) *SecretResource {
	if k := kind(raw); k != "object" {
		w.fail(path, "want a JSON object (a v1 resource definition), got %s", k)
		return nil
	}
	var r resourceJSON
	if err := json.Unmarshal(raw, &r); err != nil {
		// Another kind of resource with fields of other types: kept unread.
		var probe struct {
			ResourceDataContainer map[string]json.RawMessage
		}
		if json.Unmarshal(raw, &probe) == nil && probe.ResourceDataContainer["SecretsManagerSecretResourceData"] == nil {
			return nil
		}
		w.fail(path, "not a v1 secret resource (%v): want {\"Id\",\"Name\",\"ResourceDataContainer\":{\"SecretsManagerSecretResourceData\":{\"ARN\",\"AdditionalStagingLabelsToDownload\":[...]}}}", err)
		return nil
	}
	d := r.ResourceDataContainer.SecretsManagerSecretResourceData
	if d == nil {
		return nil
	}
	if !idChars(r.Id) {
		w.fail(join(path, "Id"), "%s must be 1-128 characters of a-z A-Z 0-9 : _ -", quote(r.Id))
	}
	p := join(join(path, "ResourceDataContainer"), "SecretsManagerSecretResourceData")
	if err := CheckSecretARN(d.ARN); err != nil {
		w.fail(join(p, "ARN"), "%v", err)
	}
	for i, l := range d.AdditionalStagingLabelsToDownload {
		if l == "" || len(l) > 256 {
			w.fail(index(join(p, "AdditionalStagingLabelsToDownload"), i), "%s: want a staging label of 1-256 characters", quote(l))
		}
	}
	return &SecretResource{Id: r.Id, Name: r.Name, ARN: d.ARN, AdditionalStagingLabelsToDownload: d.AdditionalStagingLabelsToDownload}
}

// crossCheckResources checks that resource Ids are unique and that a
// secret is referenced once per group, as v1 requires. secrets holds the
// secret resource of each Resources index (nil for other kinds).
func (w *walker) crossCheckResources(secrets []*SecretResource) {
	ids := map[string]string{}
	arns := map[string]string{}
	for i, r := range secrets {
		if r == nil {
			continue
		}
		p := index("Resources", i)
		if first, dup := ids[r.Id]; dup && r.Id != "" {
			w.fail(join(p, "Id"), "%s is already the Id of %s: Ids must be unique", quote(r.Id), first)
		} else {
			ids[r.Id] = p
		}
		if first, dup := arns[r.ARN]; dup && r.ARN != "" {
			w.fail(join(p, "ResourceDataContainer.SecretsManagerSecretResourceData.ARN"),
				"secret %s is already referenced by %s: a group references a secret once", quote(r.ARN), first)
		} else {
			arns[r.ARN] = p
		}
	}
}
