package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
)

// ErrNoSecrets is GetDeploymentSecrets' answer for a deployment that
// carries no secrets.
var ErrNoSecrets = errors.New("the deployment carries no secrets")

// GetDeploymentSecrets fetches a deployment's secrets: the envelope the
// control plane sealed to the core's SecretsManager key (see
// core/secrets), at most MaxDeployment bytes.
func (c *Client) GetDeploymentSecrets(ctx context.Context, ref DeploymentRef) ([]byte, error) {
	var env json.RawMessage
	path := "/greengrass/groups/" + url.PathEscape(ref.GroupId) + "/deployments/" + url.PathEscape(ref.DeploymentId) + "/secrets"
	err := c.call(ctx, "GetDeploymentSecrets", http.MethodGet, path, nil, &env)
	var e *APIError
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		return nil, ErrNoSecrets
	}
	if err != nil {
		return nil, err
	}
	return env, nil
}
