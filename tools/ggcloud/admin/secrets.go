package admin

import (
	"context"
	"net/http"

	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// Bodies of the secrets manager's calls. Values go in and never come
// back out of the admin API.
type (
	// NewSecret is what CreateSecret needs: a name and exactly one of
	// SecretString and SecretBinary.
	NewSecret struct {
		Name         string  `json:"Name"`
		SecretString *string `json:"SecretString,omitempty"`
		SecretBinary []byte  `json:"SecretBinary,omitempty"`
	}

	// SecretValue is what PutSecretValue needs: the secret (name or ARN),
	// the value, and the staging labels (none: AWSCURRENT).
	SecretValue struct {
		SecretId      string   `json:"SecretId"`
		SecretString  *string  `json:"SecretString,omitempty"`
		SecretBinary  []byte   `json:"SecretBinary,omitempty"`
		VersionStages []string `json:"VersionStages,omitempty"`
	}

	// SecretsKey is a core's SecretsManager public key (PEM).
	SecretsKey struct {
		PublicKeyPem string `json:"PublicKeyPem"`
	}
)

func (h *handler) createSecret(r *http.Request) (any, error) {
	var in NewSecret
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	return h.st.CreateSecret(in.Name, store.SecretValue{String: in.SecretString, Binary: in.SecretBinary})
}

func (h *handler) putSecretValue(r *http.Request) (any, error) {
	var in SecretValue
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	return h.st.PutSecretValue(in.SecretId, store.SecretValue{String: in.SecretString, Binary: in.SecretBinary}, in.VersionStages)
}

func (h *handler) listSecrets(*http.Request) (any, error) { return h.st.Secrets() }

func (h *handler) setSecretsKey(r *http.Request) (any, error) {
	var in SecretsKey
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := h.st.SetSecretsKey(r.PathValue("thing"), []byte(in.PublicKeyPem)); err != nil {
		return nil, err
	}
	return in, nil
}

func (h *handler) addResource(r *http.Request) (any, error) {
	var in store.SecretResource
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	return h.st.AddSecretResource(r.PathValue("group"), in)
}

func (h *handler) removeResource(r *http.Request) (any, error) {
	group := r.PathValue("group")
	if err := h.st.RemoveResource(group, r.PathValue("id")); err != nil {
		return nil, err
	}
	return h.group(group)
}

// CreateSecret creates a secret whose first version, value, is
// AWSCURRENT; it returns the secret without its value.
func (c *Client) CreateSecret(ctx context.Context, in NewSecret) (store.Secret, error) {
	var out store.Secret
	return out, c.call(ctx, "POST", "/v1/secrets", in, &out)
}

// PutSecretValue adds a version to a secret and moves its staging labels
// (AWSCURRENT unless others are given; the version AWSCURRENT leaves
// becomes AWSPREVIOUS). It returns the version without its value.
func (c *Client) PutSecretValue(ctx context.Context, in SecretValue) (store.SecretVersion, error) {
	var out store.SecretVersion
	return out, c.call(ctx, "POST", "/v1/secret-values", in, &out)
}

// ListSecrets lists the secrets with their versions and labels, without
// values.
func (c *Client) ListSecrets(ctx context.Context) ([]store.Secret, error) {
	var out []store.Secret
	return out, c.call(ctx, "GET", "/v1/secrets", nil, &out)
}

// SetSecretsKey records a core's SecretsManager public key (PEM), which
// deployments seal the group's secrets to.
func (c *Client) SetSecretsKey(ctx context.Context, thing string, pubPEM []byte) error {
	return c.call(ctx, "PUT", "/v1/things/"+esc(thing)+"/secrets-key", SecretsKey{PublicKeyPem: string(pubPEM)}, nil)
}

// AddSecretResource adds a secret resource (v1's
// SecretsManagerSecretResourceData) to a group; r.ARN may be the secret's
// name. It returns the resource as stored.
func (c *Client) AddSecretResource(ctx context.Context, group string, r store.SecretResource) (store.SecretResource, error) {
	var out store.SecretResource
	return out, c.call(ctx, "POST", "/v1/groups/"+esc(group)+"/resources", r, &out)
}

// RemoveResource takes a resource out of a group.
func (c *Client) RemoveResource(ctx context.Context, group, id string) error {
	return c.call(ctx, "DELETE", "/v1/groups/"+esc(group)+"/resources/"+esc(id), nil, nil)
}
