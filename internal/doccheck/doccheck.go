// Package doccheck finds the packages of a Go module that have no package
// doc comment, or whose comment does not begin "Package name", and those a
// document's layout table leaves out; its test runs it over this module,
// so that `go test ./...` fails on such a package.
package doccheck

import (
	"errors"
	"fmt"
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Finding is one package whose documentation is missing or malformed.
type Finding struct {
	Dir     string // slash-separated, relative to the module root
	Package string // the package name
	Problem string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s (package %s): %s", f.Dir, f.Package, f.Problem)
}

// Check walks the module rooted at root and returns a Finding for every
// package (a directory with Go files that build on this platform, cgo
// files included) whose doc comment is missing, and for every non-main
// package whose doc comment does not begin "Package <name> ". The doc
// comment of a package with non-test files must be in one of them, as
// go doc shows only those; a test-only package may carry it in a test
// file. Directories go ignores (testdata, vendor, names beginning with
// "." or "_"), node_modules and nested modules are skipped.
func Check(root string) ([]Finding, error) {
	ctx := build.Default
	ctx.CgoEnabled = true
	var findings []Finding
	err := walkDirs(root, func(dir string) error {
		f, err := checkDir(&ctx, root, dir)
		if f != nil {
			findings = append(findings, *f)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("doccheck: %w", err)
	}
	return findings, nil
}

// Layout returns a Finding for every package of the module rooted at root
// that the layout table of the Markdown file doc (relative to root) does
// not list: a table row beginning "| `dir` |", dir relative to root.
func Layout(root, doc string) ([]Finding, error) {
	text, err := os.ReadFile(filepath.Join(root, doc))
	if err != nil {
		return nil, fmt.Errorf("doccheck: %w", err)
	}
	ctx := build.Default
	ctx.CgoEnabled = true
	var findings []Finding
	err = walkDirs(root, func(dir string) error {
		pkg, err := ctx.ImportDir(dir, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read package %s: %w", dir, err)
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !strings.Contains(string(text), "\n| `"+rel+"` |") {
			findings = append(findings, Finding{Dir: rel, Package: pkg.Name, Problem: "not in " + doc + "'s layout table"})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("doccheck: %w", err)
	}
	return findings, nil
}

// walkDirs calls fn with every directory of the module rooted at root
// (root included) but those go ignores (testdata, vendor, names beginning
// with "." or "_"), node_modules and nested modules.
func walkDirs(root string, fn func(dir string) error) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root {
			name := d.Name()
			if name == "testdata" || name == "vendor" || name == "node_modules" ||
				strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		return fn(path)
	})
}

// checkDir checks the package in dir, if there is one.
func checkDir(ctx *build.Context, root, dir string) (*Finding, error) {
	pkg, err := ctx.ImportDir(dir, 0)
	var noGo *build.NoGoError
	if errors.As(err, &noGo) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read package %s: %w", dir, err)
	}
	files := slices.Concat(pkg.GoFiles, pkg.CgoFiles)
	testOnly := len(files) == 0
	if testOnly {
		files = slices.Concat(pkg.TestGoFiles, pkg.XTestGoFiles)
	}
	slices.Sort(files)
	doc, err := packageDoc(dir, files)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return nil, fmt.Errorf("path of %s: %w", dir, err)
	}
	name := pkg.Name
	finding := &Finding{Dir: filepath.ToSlash(rel), Package: name}
	switch {
	case doc == "" && testOnly:
		finding.Problem = "no package doc comment (in a test file: the package has no other files)"
	case doc == "":
		finding.Problem = "no package doc comment in a non-test file"
	case name != "main" && !strings.HasPrefix(doc, "Package "+name+" "):
		finding.Problem = fmt.Sprintf("package doc comment begins %q, not \"Package %s ...\"", firstLine(doc), name)
	default:
		return nil, nil
	}
	return finding, nil
}

// packageDoc returns the first non-empty package doc comment among files
// (names in dir).
func packageDoc(dir string, files []string) (string, error) {
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", filepath.Join(dir, name), err)
		}
		if text := strings.TrimSpace(f.Doc.Text()); text != "" {
			return text, nil
		}
	}
	return "", nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
