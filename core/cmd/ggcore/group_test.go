package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/core/broker"
	"github.com/ggcore/ggcore/core/config"
)

// TestBrokerDevices: the broker gets each device's thing name, thing ARN
// and certificate ID as group.json gives them, whatever the lengths.
func TestBrokerDevices(t *testing.T) {
	tests := []struct {
		name    string
		devices []config.Thing
	}{
		{"none", nil},
		{"one", []config.Thing{thing("aws", "us-east-1", "dev0", 'a')}},
		{"varied lengths", []config.Thing{
			thing("aws", "us-east-1", "d", '0'),
			thing("aws-cn", "cn-north-1", strings.Repeat("n", 128), 'f'),
			thing("aws-us-gov", "us-gov-west-1", "sensor:kitchen_1-b", '7'),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := brokerDevices(tt.devices)
			if len(got) != len(tt.devices) {
				t.Fatalf("%d devices, want %d", len(got), len(tt.devices))
			}
			for i, d := range tt.devices {
				want := broker.Thing{Name: d.Name(), ARN: d.ThingArn, CertificateID: d.CertificateID()}
				if got[i] != want || want.Name == "" || want.CertificateID == "" {
					t.Errorf("device %d: %+v, want %+v", i, got[i], want)
				}
			}
		})
	}
}

// thing is a device of the given partition, region and name whose
// certificate ID is 64 times hex.
func thing(partition, region, name string, hex byte) config.Thing {
	return config.Thing{
		Id:             name,
		ThingArn:       fmt.Sprintf("arn:%s:iot:%s:123456789012:thing/%s", partition, region, name),
		CertificateArn: fmt.Sprintf("arn:%s:iot:%s:123456789012:cert/%s", partition, region, strings.Repeat(string(hex), 64)),
	}
}
