package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Defaults and limits of a function's configuration, as v1's.
const (
	DefaultFunctionMemoryKB = 16384 // 16 MB
	DefaultFunctionTimeout  = 3     // seconds
	MaxFunctionTimeout      = 900   // seconds (v1's Lambda limit)
	MaxResourcePolicies     = 10
)

// Function isolation modes (Execution.IsolationMode).
const (
	IsolationContainer   = "GreengrassContainer"
	IsolationNoContainer = "NoContainer"
)

// Function is a local function of the group: a v1 Functions entry with
// its FunctionConfiguration read and checked. System functions
// (arn:aws:lambda:::function:GG...) are not local functions.
type Function struct {
	Id          string
	FunctionArn string
	// Executable is, for an executable function, the program's path inside
	// the function's code directory; for a Node.js function
	// (FunctionRuntimeOverride nodejs*), its handler, module.export.
	Executable string
	ExecArgs   string
	// Runtime is FunctionRuntimeOverride: "" or "executable" runs
	// Executable; "nodejs..." runs it with ggcore's Node.js runtime.
	Runtime      string
	MemorySizeKB int64
	Pinned       bool
	Timeout      time.Duration
	EncodingType string // "json" (default) or "binary"
	Variables    map[string]string
	// ResourceAccessPolicies name the group resources the function may
	// read (ResourceId → Permission "ro" or "rw").
	ResourceAccessPolicies []ResourceAccessPolicy
	IsolationMode          string // GreengrassContainer (default) or NoContainer
	// RunAs is the uid/gid the function's processes run as; nil: the
	// group's default (ggcore's own choice, see core/functions).
	RunAs *RunAs
}

// ResourceAccessPolicy lets a function use a group resource.
type ResourceAccessPolicy struct {
	ResourceId string
	Permission string
}

// RunAs is a uid and gid.
type RunAs struct{ Uid, Gid int64 }

// IsNodeJS reports whether f runs on ggcore's Node.js runtime.
func (f Function) IsNodeJS() bool { return strings.HasPrefix(f.Runtime, "nodejs") }

// Name is the function's name from its ARN.
func (f Function) Name() string {
	rest := f.FunctionArn[strings.Index(f.FunctionArn, ":function:")+len(":function:"):]
	name, _, _ := strings.Cut(rest, ":")
	return name
}

// MayAccess reports whether f has a ResourceAccessPolicies entry for the
// resource ID.
func (f Function) MayAccess(resourceID string) bool {
	for _, p := range f.ResourceAccessPolicies {
		if p.ResourceId == resourceID {
			return true
		}
	}
	return false
}

// isSystemFunction reports v1's system functions (GGCloudSpooler, ...),
// configured in group.json but never run as local functions.
func isSystemFunction(arn string) bool {
	return strings.HasPrefix(arn, "arn:aws:lambda:::function:GG")
}

// LocalFunctions returns the group's local functions (every Functions
// entry but v1's system functions), checked; the error names the JSON
// path of each problem.
func (g *Group) LocalFunctions() ([]Function, error) {
	w := &walker{}
	var fs []Function
	for i, raw := range g.Functions {
		if f, ok := w.localFunction(index("Functions", i), raw); ok {
			fs = append(fs, f)
		}
	}
	if err := w.err(); err != nil {
		return nil, err
	}
	return fs, nil
}

// localFunction reads one Functions entry; ok is false for a system
// function or one whose ARN is unreadable (reported by ParseGroup).
func (w *walker) localFunction(path string, raw json.RawMessage) (Function, bool) {
	f := Function{MemorySizeKB: DefaultFunctionMemoryKB, Timeout: DefaultFunctionTimeout * time.Second,
		EncodingType: "json", IsolationMode: IsolationContainer}
	var conf json.RawMessage
	for _, m := range members(nil, raw) {
		switch m.name {
		case "Id":
			_ = json.Unmarshal(m.value, &f.Id)
		case "FunctionArn":
			_ = json.Unmarshal(m.value, &f.FunctionArn)
		case "FunctionConfiguration":
			conf = m.value
		}
	}
	if f.FunctionArn == "" || checkFunctionARN(f.FunctionArn) != nil || isSystemFunction(f.FunctionArn) {
		return f, false
	}
	if conf == nil || isNull(conf) {
		return f, true
	}
	p := join(path, "FunctionConfiguration")
	w.object(p, conf, []rule{
		{"Executable", func(p string, v json.RawMessage) {
			if w.str(p, v, &f.Executable) && (f.Executable == "" || strings.Contains(f.Executable, "..")) {
				w.fail(p, "%s: want a path inside the function's code (no ..), or module.handler for Node.js", quote(f.Executable))
			}
		}},
		{"ExecArgs", func(p string, v json.RawMessage) { w.str(p, v, &f.ExecArgs) }},
		{"FunctionRuntimeOverride", func(p string, v json.RawMessage) {
			if w.str(p, v, &f.Runtime) && f.Runtime != "" && f.Runtime != "executable" && !f.IsNodeJS() {
				w.fail(p, "%s: want executable or nodejs (such as nodejs20.x)", quote(f.Runtime))
			}
		}},
		{"MemorySize", func(p string, v json.RawMessage) {
			if w.integer(p, v, &f.MemorySizeKB) && f.MemorySizeKB < 0 {
				w.fail(p, "%d: want a size in KB", f.MemorySizeKB)
			}
		}},
		{"Pinned", func(p string, v json.RawMessage) { w.boolean(p, v, &f.Pinned) }},
		{"Timeout", func(p string, v json.RawMessage) {
			var n int64
			if w.integer(p, v, &n) {
				if n < 1 || n > MaxFunctionTimeout {
					w.fail(p, "%d is not a timeout in seconds (1-%d)", n, MaxFunctionTimeout)
				}
				f.Timeout = time.Duration(n) * time.Second
			}
		}},
		{"EncodingType", func(p string, v json.RawMessage) {
			if w.str(p, v, &f.EncodingType) && f.EncodingType != "json" && f.EncodingType != "binary" {
				w.fail(p, "%s: want json or binary", quote(f.EncodingType))
			}
		}},
		{"Environment", func(p string, v json.RawMessage) { w.functionEnv(p, v, &f) }},
	})
	return f, true
}

func (w *walker) functionEnv(path string, raw json.RawMessage, f *Function) {
	w.object(path, raw, []rule{
		{"Variables", func(p string, v json.RawMessage) {
			if err := json.Unmarshal(v, &f.Variables); err != nil {
				w.fail(p, "want an object of string values: %v", err)
			}
		}},
		{"AccessSysfs", func(p string, v json.RawMessage) { var b bool; w.boolean(p, v, &b) }},
		{"ResourceAccessPolicies", func(p string, v json.RawMessage) {
			w.array(p, v, func(p string, v json.RawMessage) {
				var rp ResourceAccessPolicy
				present := w.object(p, v, []rule{
					{"ResourceId", func(p string, v json.RawMessage) { w.str(p, v, &rp.ResourceId) }},
					{"Permission", func(p string, v json.RawMessage) {
						if w.str(p, v, &rp.Permission) && rp.Permission != "ro" && rp.Permission != "rw" {
							w.fail(p, "%s: want ro or rw", quote(rp.Permission))
						}
					}},
				})
				if present != nil && !present["ResourceId"] {
					w.fail(join(p, "ResourceId"), "required: the Id of a group resource")
				}
				f.ResourceAccessPolicies = append(f.ResourceAccessPolicies, rp)
			})
			if n := len(f.ResourceAccessPolicies); n > MaxResourcePolicies {
				w.fail(p, "%d entries: at most %d", n, MaxResourcePolicies)
			}
		}},
		{"Execution", func(p string, v json.RawMessage) {
			w.object(p, v, []rule{
				{"IsolationMode", func(p string, v json.RawMessage) {
					if w.str(p, v, &f.IsolationMode) && f.IsolationMode != IsolationContainer && f.IsolationMode != IsolationNoContainer {
						w.fail(p, "%s: want %s or %s", quote(f.IsolationMode), IsolationContainer, IsolationNoContainer)
					}
				}},
				{"RunAs", func(p string, v json.RawMessage) {
					ra := &RunAs{}
					w.object(p, v, []rule{
						{"Uid", func(p string, v json.RawMessage) { w.id(p, v, &ra.Uid) }},
						{"Gid", func(p string, v json.RawMessage) { w.id(p, v, &ra.Gid) }},
					})
					f.RunAs = ra
				}},
			})
		}},
	})
}

// id reads a uid or gid.
func (w *walker) id(path string, raw json.RawMessage, dst *int64) {
	if w.integer(path, raw, dst) && (*dst < 0 || *dst > 1<<31-1) {
		w.fail(path, "%d is not a uid or gid", *dst)
	}
}

// String is the function for log lines.
func (f Function) String() string { return fmt.Sprintf("%s (%s)", f.Name(), f.FunctionArn) }
