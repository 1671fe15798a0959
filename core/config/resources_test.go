package config

import (
	"reflect"
	"testing"
)

const secretARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:greengrass-SomeSecret-KUj89s"

func secretResource(id, arn string, labels ...any) map[string]any {
	return map[string]any{"Id": id, "Name": "MySecretResource", "ResourceDataContainer": map[string]any{
		"SecretsManagerSecretResourceData": map[string]any{"ARN": arn, "AdditionalStagingLabelsToDownload": labels}}}
}

func TestSecretResources(t *testing.T) {
	base := parseDoc(t, goldenGroup)
	other := map[string]any{"Id": "vol", "Name": "tmp", "ResourceDataContainer": map[string]any{
		"LocalVolumeResourceData": map[string]any{"SourcePath": "/tmp", "DestinationPath": "/tmp"}}}
	g, err := ParseGroup(base.set("Resources", []any{other, secretResource("my-resource-id", secretARN, "Label1", "Label2")}).bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := []SecretResource{{Id: "my-resource-id", Name: "MySecretResource", ARN: secretARN, AdditionalStagingLabelsToDownload: []string{"Label1", "Label2"}}}
	if got := g.SecretResources(); !reflect.DeepEqual(got, want) {
		t.Errorf("SecretResources = %+v; want %+v", got, want)
	}
	if got := want[0].Labels(); !reflect.DeepEqual(got, []string{"AWSCURRENT", "Label1", "Label2"}) {
		t.Errorf("Labels = %v", got)
	}
	if got := SecretName(secretARN); got != "greengrass-SomeSecret" {
		t.Errorf("SecretName = %q", got)
	}

	tests := []struct {
		name, path, reason string
		resources          []any
	}{
		{"bad ARN", "Resources[0].ResourceDataContainer.SecretsManagerSecretResourceData.ARN", "not a secret ARN",
			[]any{secretResource("r1", "arn:aws:s3:::bucket")}},
		{"bad Id", "Resources[0].Id", "1-128 characters", []any{secretResource("a b", secretARN)}},
		{"empty label", "Resources[0].ResourceDataContainer.SecretsManagerSecretResourceData.AdditionalStagingLabelsToDownload[0]", "staging label",
			[]any{secretResource("r1", secretARN, "")}},
		{"label not a string", "Resources[0]", "not a v1 secret resource", []any{secretResource("r1", secretARN, 3)}},
		{"same Id twice", "Resources[1].Id", "Ids must be unique",
			[]any{secretResource("r1", secretARN), secretResource("r1", "arn:aws:secretsmanager:us-west-2:123456789012:secret:other")}},
		{"same secret twice", "Resources[1].ResourceDataContainer.SecretsManagerSecretResourceData.ARN", "references a secret once",
			[]any{secretResource("r1", secretARN), secretResource("r2", secretARN)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseGroup(base.set("Resources", tt.resources).bytes())
			wantProblem(t, err, tt.path, tt.reason)
		})
	}
}
