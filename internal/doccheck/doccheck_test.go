package doccheck

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestModule fails naming every package of this module that has no
// package doc comment, or a comment that does not begin "Package name".
func TestModule(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	findings, err := Check(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Errorf("%s", f)
	}
}

// TestLayoutTables fails naming every package of this module that the
// layout tables of README.md and docs/design.md leave out.
func TestLayoutTables(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{"README.md", "docs/design.md"} {
		findings, err := Layout(root, doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range findings {
			t.Errorf("%s", f)
		}
	}
}

func TestLayout(t *testing.T) {
	root := t.TempDir()
	for path, data := range map[string]string{
		"README.md":         "# x\n\n| dir | what |\n| --- | --- |\n| `lib` | a library |\n| `cmd/x` | a command |\n",
		"lib/lib.go":        "// Package lib does one thing.\npackage lib\n",
		"cmd/x/main.go":     "// Command x runs lib.\npackage main\n",
		"new/new.go":        "// Package new is not in the table.\npackage new\n",
		"lib/testdata/t.go": "package ignored\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	findings, err := Layout(root, "README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 1 || findings[0].Dir != "new" {
		t.Errorf("findings %v; want only the package new", findings)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // path -> contents
		want  []string          // Finding.Dir of each finding, in order
	}{
		{
			name: "documented library and command",
			files: map[string]string{
				"lib/lib.go":      "// Package lib does one thing.\npackage lib\n",
				"lib/more.go":     "package lib\n",
				"cmd/x/main.go":   "// Command x runs lib.\npackage main\n",
				"cmd/x/x_test.go": "package main\n",
			},
		},
		{
			name: "missing doc comment",
			files: map[string]string{
				"lib/lib.go":      "package lib\n",
				"cmd/x/main.go":   "package main\n",
				"ok/ok.go":        "// Package ok is fine.\npackage ok\n",
				"ok/sub/sub.go":   "// A comment not attached to the clause.\n\npackage sub\n",
				"ok/sub/other.go": "package sub\n",
			},
			want: []string{"cmd/x", "lib", "ok/sub"},
		},
		{
			name: "doc comment only in a test file of a package with other files",
			files: map[string]string{
				"lib/lib.go":      "package lib\n",
				"lib/lib_test.go": "// Package lib does one thing.\npackage lib\n",
			},
			want: []string{"lib"},
		},
		{
			name: "test-only package documented in a test file",
			files: map[string]string{
				"tests/e2e/a_test.go": "package e2e\n",
				"tests/e2e/b_test.go": "// Package e2e drives the whole system.\npackage e2e\n",
			},
		},
		{
			name: "test-only package without a doc comment",
			files: map[string]string{
				"tests/e2e/a_test.go": "package e2e_test\n",
			},
			want: []string{"tests/e2e"},
		},
		{
			name: "library comment that does not name the package",
			files: map[string]string{
				"lib/lib.go": "// This package does one thing.\npackage lib\n",
			},
			want: []string{"lib"},
		},
		{
			name: "files and directories go ignores are skipped",
			files: map[string]string{
				"lib/lib.go":              "// Package lib does one thing.\npackage lib\n",
				"lib/gen.go":              "//go:build ignore\n\npackage main\n",
				"lib/testdata/x/x.go":     "package x\n",
				"_old/old.go":             "package old\n",
				".hidden/h.go":            "package h\n",
				"sdk/node_modules/m/m.go": "package m\n",
				"nested/go.mod":           "module example.com/nested\n",
				"nested/n.go":             "package nested\n",
			},
		},
		{
			name: "doc comment only in a file for another platform",
			files: map[string]string{
				"lib/lib.go":       "package lib\n",
				"lib/doc_plan9.go": "// Package lib does one thing.\npackage lib\n",
			},
			want: []string{"lib"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, "go.mod", "module example.com/m\n\ngo 1.26\n")
			for path, contents := range tt.files {
				write(t, root, path, contents)
			}
			findings, err := Check(root)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range findings {
				got = append(got, f.Dir)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("packages flagged: %q, want %q; findings: %v", got, tt.want, findings)
			}
		})
	}
}

func write(t *testing.T, root, path, contents string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(contents), 0o644); err != nil {
		t.Fatal(err)
	}
}
