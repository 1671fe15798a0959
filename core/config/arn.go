package config

import (
	"errors"
	"fmt"
	"strings"
)

// Forms of the ARNs group.json and config.json use, for error messages.
const (
	thingARNForm    = "arn:aws:iot:REGION:ACCOUNT:thing/NAME"
	certARNForm     = "arn:aws:iot:REGION:ACCOUNT:cert/ID (ID: 64 lowercase hex digits)"
	functionARNForm = "arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]"
)

// arn is an Amazon Resource Name split into its six parts.
type arn struct {
	partition, service, region, account, resource string
}

// parseARN checks the common part of an ARN: arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE
// with a 12-digit account and the given service.
func parseARN(s, service string) (arn, error) {
	// Cut rather than SplitN: called for every thing of the group, several
	// times, it allocates nothing.
	rest, ok := strings.CutPrefix(s, "arn:")
	var a arn
	for _, part := range []*string{&a.partition, &a.service, &a.region, &a.account} {
		if !ok {
			break
		}
		*part, rest, ok = strings.Cut(rest, ":")
	}
	if !ok {
		return arn{}, errors.New("not an ARN")
	}
	a.resource = rest
	switch {
	case a.partition != "aws" && !(strings.HasPrefix(a.partition, "aws-") && lowerWord(a.partition[4:])):
		return a, fmt.Errorf("partition %s is not aws, aws-cn or aws-us-gov", quote(a.partition))
	case a.service != service:
		return a, fmt.Errorf("service %s, want %s", quote(a.service), service)
	case a.region == "" || !lowerWord(a.region):
		return a, fmt.Errorf("region %s is not a region such as us-east-1", quote(a.region))
	case len(a.account) != 12 || strings.Trim(a.account, "0123456789") != "":
		return a, fmt.Errorf("account %s is not a 12-digit account ID", quote(a.account))
	}
	return a, nil
}

// lowerWord reports whether s is lowercase letters, digits and hyphens.
func lowerWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}

// idChars reports whether s matches [a-zA-Z0-9:_-]{1,128}: AWS IoT thing
// names and the Ids of v1 definitions.
func idChars(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ThingName returns the thing name of an AWS IoT thing ARN
// (arn:aws:iot:REGION:ACCOUNT:thing/NAME), or why arn is not one. The
// name is what a device uses as its MQTT client ID: 1 to 128 characters
// of [a-zA-Z0-9:_-].
func ThingName(thingARN string) (string, error) {
	a, err := parseARN(thingARN, "iot")
	if err != nil {
		return "", fmt.Errorf("%s is not a thing ARN (%v): want %s", quote(thingARN), err, thingARNForm)
	}
	name, ok := strings.CutPrefix(a.resource, "thing/")
	if !ok {
		return "", fmt.Errorf("%s is not a thing ARN (resource %s does not start with thing/): want %s",
			quote(thingARN), quote(a.resource), thingARNForm)
	}
	if !idChars(name) {
		return "", fmt.Errorf("%s: thing name %s must be 1-128 characters of a-z A-Z 0-9 : _ -", quote(thingARN), quote(name))
	}
	return name, nil
}

// CertificateIDFromARN returns the certificate ID of an AWS IoT
// certificate ARN (arn:aws:iot:REGION:ACCOUNT:cert/ID), or why the ARN is
// not one. The ID is the lowercase hex SHA-256 of the certificate's DER.
func CertificateIDFromARN(certARN string) (string, error) {
	a, err := parseARN(certARN, "iot")
	if err != nil {
		return "", fmt.Errorf("%s is not a certificate ARN (%v): want %s", quote(certARN), err, certARNForm)
	}
	id, ok := strings.CutPrefix(a.resource, "cert/")
	if !ok {
		return "", fmt.Errorf("%s is not a certificate ARN (resource %s does not start with cert/): want %s",
			quote(certARN), quote(a.resource), certARNForm)
	}
	if !ValidCertificateID(id) {
		return "", fmt.Errorf("%s: certificate ID %s is not 64 lowercase hex digits (the SHA-256 of the certificate's DER)",
			quote(certARN), quote(id))
	}
	return id, nil
}

// ValidCertificateID reports whether id is an AWS certificate ID: 64
// lowercase hex digits.
func ValidCertificateID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// checkFunctionARN reports why s is not a Lambda function ARN
// (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]).
func checkFunctionARN(s string) error {
	// v1's system functions (GGCloudSpooler, GGShadowSyncManager, ...)
	// have no region or account: arn:aws:lambda:::function:GGName:1.
	if rest, ok := strings.CutPrefix(s, "arn:aws:lambda:::function:"); ok {
		name, version, _ := strings.Cut(rest, ":")
		if strings.HasPrefix(name, "GG") && lambdaWord(name, 64) && lambdaWord(version, 128) {
			return nil
		}
	}
	a, err := parseARN(s, "lambda")
	if err != nil {
		return fmt.Errorf("%s is not a function ARN (%v): want %s", quote(s), err, functionARNForm)
	}
	rest, ok := strings.CutPrefix(a.resource, "function:")
	if !ok {
		return fmt.Errorf("%s is not a function ARN (resource %s does not start with function:): want %s",
			quote(s), quote(a.resource), functionARNForm)
	}
	name, qualifier, hasQualifier := strings.Cut(rest, ":")
	if !lambdaWord(name, 64) {
		return fmt.Errorf("%s: function name %s must be 1-64 characters of a-z A-Z 0-9 - _", quote(s), quote(name))
	}
	if hasQualifier && qualifier != "$LATEST" && !lambdaWord(qualifier, 128) {
		return fmt.Errorf("%s: qualifier %s must be a version, an alias (a-z A-Z 0-9 - _) or $LATEST", quote(s), quote(qualifier))
	}
	return nil
}

func lambdaWord(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
