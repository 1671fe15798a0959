package ipc

import (
	"encoding/json"
	"errors"
	"net/http"
)

// secretValue is GetSecretValue's answer: v1's seven fields, in its
// order, each present (null when empty); CreatedDate in epoch ms. The
// Java SDK refuses unknown keys, the JS SDK looks for the key names.
type secretValue struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	VersionID     string   `json:"VersionId"`
	SecretBinary  []byte   `json:"SecretBinary"` // base64, or null
	SecretString  *string  `json:"SecretString"`
	VersionStages []string `json:"VersionStages"`
	CreatedDate   int64    `json:"CreatedDate"`
}

// secretError is v1's error answer.
type secretError struct {
	Status  int    `json:"Status"`
	Message string `json:"Message"`
}

// getSecretValue answers a GetSecretValue request from a function.
func (s *Server) getSecretValue(caller string, body []byte) []byte {
	var req struct {
		SecretID     *string `json:"SecretId"`
		VersionStage string  `json:"VersionStage"`
		VersionID    string  `json:"VersionId"`
	}
	fail := func(status int, msg string) []byte {
		b, _ := json.Marshal(secretError{Status: status, Message: msg})
		return b
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(http.StatusBadRequest, "Unable to parse request")
	}
	switch {
	case req.SecretID == nil || *req.SecretID == "":
		return fail(http.StatusBadRequest, "SecretId absent in the request")
	case req.VersionID != "" && req.VersionStage != "":
		return fail(http.StatusBadRequest, "Both versionId and Stage are set in the request")
	case req.VersionID != "":
		return fail(http.StatusBadRequest, "Query by VersionId is not supported")
	}
	if s.o.Secrets == nil {
		return fail(http.StatusNotFound, "Secret not found: "+*req.SecretID)
	}
	sec, err := s.o.Secrets.ReadSecret(caller, *req.SecretID, req.VersionStage)
	switch {
	case errors.Is(err, ErrSecretDenied):
		s.log.Warn("secret refused: the function has no ResourceAccessPolicies entry for it",
			"function", caller, "secret", *req.SecretID)
		return fail(http.StatusUnauthorized, "Function "+caller+" is not authorized to read secret "+*req.SecretID)
	case errors.Is(err, ErrSecretNotFound):
		return fail(http.StatusNotFound, "Secret not found: "+*req.SecretID)
	case err != nil:
		s.log.Error("secret read failed", "function", caller, "secret", *req.SecretID, "error", err)
		return fail(http.StatusInternalServerError, "Internal error reading the secret")
	}
	stages := sec.VersionStages
	if stages == nil {
		stages = []string{}
	}
	b, _ := json.Marshal(secretValue{ARN: sec.ARN, Name: sec.Name, VersionID: sec.VersionID,
		SecretBinary: sec.SecretBinary, SecretString: sec.SecretString, VersionStages: stages,
		CreatedDate: sec.CreatedDate.UnixMilli()})
	return b
}
