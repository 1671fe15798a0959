package admin

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// putFirmware stores the body (a release file) by its SHA-256, bounded by
// ?max= bytes (default store.DefaultMaxFirmwareSize).
func (h *handler) putFirmware(r *http.Request) (any, error) {
	data, max, err := readUpload(r, store.DefaultMaxFirmwareSize)
	if err != nil {
		return nil, err
	}
	fw, err := h.st.PutFirmware(data, max)
	if err != nil {
		return nil, badRequest{err}
	}
	return fw, nil
}

func (h *handler) listFirmware(*http.Request) (any, error) { return h.st.Firmwares() }

// PutFirmware uploads a release file (at most max bytes; 0 means the
// default, 512 MiB); DeployFirmware deploys it by the SHA-256 returned.
func (c *Client) PutFirmware(ctx context.Context, data []byte, max int64) (store.Firmware, error) {
	var out store.Firmware
	path := "/v1/firmware"
	if max > 0 {
		path += "?" + url.Values{"max": {strconv.FormatInt(max, 10)}}.Encode()
	}
	return out, c.call(ctx, "PUT", path, data, &out)
}

// ListFirmware lists the stored releases.
func (c *Client) ListFirmware(ctx context.Context) ([]store.Firmware, error) {
	var out []store.Firmware
	return out, c.call(ctx, "GET", "/v1/firmware", nil, &out)
}

// DeployFirmware deploys a group with the stored release sha256: the
// core installs it and reboots into it for a trial. It returns the
// deployment ID.
func (c *Client) DeployFirmware(ctx context.Context, group, sha256 string) (string, error) {
	var d Deployment
	err := c.call(ctx, "POST", "/v1/groups/"+esc(group)+"/deployments?"+url.Values{"firmware": {sha256}}.Encode(), nil, &d)
	return d.DeploymentId, err
}
