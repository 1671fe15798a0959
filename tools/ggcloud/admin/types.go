package admin

import (
	"time"

	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// The admin API's bodies. Field names follow v1's API (PascalCase).
type (
	// Identity is the region and account the data directory renders ARNs
	// with; Fixed says whether they are fixed yet (see store.Identity).
	Identity struct {
		Region  string `json:"Region"`
		Account string `json:"Account"`
		Fixed   bool   `json:"Fixed"`
	}

	// Thing is a registered thing.
	Thing struct {
		Name string `json:"Name"`
		Arn  string `json:"Arn"`
		// Certificates are the IDs of its certificates (GET of one thing).
		Certificates []string `json:"Certificates,omitempty"`
		// Created is false when CreateThing found the thing registered.
		Created bool `json:"Created,omitempty"`
	}

	// NewGroup is what CreateGroup needs.
	NewGroup struct {
		Id   string `json:"Id"`
		Core string `json:"Core"` // the core's thing name
		// CoreCertificateId is the core's certificate in the group; empty
		// means the core's only registered certificate.
		CoreCertificateId string `json:"CoreCertificateId,omitempty"`
		// CACertificatePem is the group CA certificate (PEM), and
		// CAKeyPem its RSA private key, which signs the core's MQTT
		// server certificates and never leaves ggcloud.
		CACertificatePem string `json:"CACertificatePem"`
		CAKeyPem         string `json:"CAKeyPem"`
		// CertificateExpiryMs is the MQTT server certificates' validity:
		// 7 to 30 days for a deployable group; zero means 7 days.
		CertificateExpiryMs int64 `json:"CertificateExpiryMs,omitempty"`
	}

	// Group is a group as the admin API shows it: everything but the CA
	// key.
	Group struct {
		Id            string               `json:"Id"`
		Core          Member               `json:"Core"`
		Devices       []Member             `json:"Devices"`
		Subscriptions []store.Subscription `json:"Subscriptions"`
		// Resources are the group's secret resources.
		Resources           []store.SecretResource `json:"Resources,omitempty"`
		CAs                 []string               `json:"CAs"`
		CertificateExpiryMs int64                  `json:"CertificateExpiryMs"`
		// CurrentDeploymentId is the deployment the core is told to run
		// ("" before the first deployment).
		CurrentDeploymentId string `json:"CurrentDeploymentId,omitempty"`
	}

	// Member is a core or device of a group with the certificate it takes
	// part with ("" until deployment picks its only one).
	Member struct {
		Thing         string `json:"Thing"`
		CertificateId string `json:"CertificateId,omitempty"`
	}

	// Deployment is a deployment of a group and each core's status.
	Deployment struct {
		GroupId        string             `json:"GroupId"`
		DeploymentId   string             `json:"DeploymentId"`
		GroupVersionId string             `json:"GroupVersionId"`
		CreatedAt      time.Time          `json:"CreatedAt"`
		Current        bool               `json:"Current"`
		Statuses       []store.CoreStatus `json:"Statuses,omitempty"`
	}

	// Connectivity is a thing's connectivity information, in v1's shape.
	Connectivity struct {
		ConnectivityInfo []store.Endpoint `json:"ConnectivityInfo"`
	}

	// errorBody is every refusal: the message, and a code naming the
	// kind of error (NotFound, Exists, Conflict, Invalid, Internal).
	errorBody struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	}
)
