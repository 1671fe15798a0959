package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Key reference schemes (KeyRef.Scheme).
const (
	SchemeFile   = "file"   // file:///abs/path.pem
	SchemePKCS11 = "pkcs11" // pkcs11:object=LABEL;type=private (RFC 7512)
	SchemeTPM2   = "tpm2"   // tpm2:handle=0x81000002 or handle:0x81000002
)

// Persistent TPM handle range (TPM 2.0 Part 2, TPM_HT_PERSISTENT).
const (
	MinPersistentHandle = 0x81000000
	MaxPersistentHandle = 0x81FFFFFF
)

// keyRefForms lists the accepted key reference syntaxes, for errors.
const keyRefForms = "file:///absolute/path.pem, pkcs11:object=LABEL;type=private[;token=LABEL] or tpm2:handle=0x81000002"

// KeyRef is a parsed key reference, the string config.json gives as a
// principal's privateKeyPath. ParseKeyRef checks syntax only; opening the
// key is the keys package's job.
type KeyRef struct {
	// Scheme is SchemeFile, SchemePKCS11 or SchemeTPM2.
	Scheme string
	// Path is the absolute, cleaned file path (SchemeFile).
	Path string
	// Handle is the persistent TPM handle (SchemeTPM2).
	Handle uint32
	// PKCS11 holds the RFC 7512 attributes (SchemePKCS11), path and query
	// attributes alike, keyed by name ("object", "type", "token", "id",
	// "module-path", "pin-source", ...), values percent-decoded ("id" is
	// the raw bytes).
	PKCS11 map[string]string
}

// RFC 7512 attribute names: path component and query component.
const (
	pkcs11PathAttrs = "id, library-description, library-manufacturer, library-version, manufacturer, " +
		"model, object, serial, slot-description, slot-id, slot-manufacturer, token, type"
	pkcs11QueryAttrs = "module-name, module-path, pin-source, pin-value"
)

// isAttr reports whether name is one of the comma-separated names in list.
func isAttr(list, name string) bool {
	for a := range strings.SplitSeq(list, ", ") {
		if a == name {
			return true
		}
	}
	return false
}

// ParseKeyRef parses a key reference:
//
//	file:///abs/path.pem                      a PEM key file (or a TPM-wrapped TSS2 key file)
//	pkcs11:object=LABEL;type=private[;...]    a private key object in a PKCS#11 token (RFC 7512)
//	tpm2:handle=0x81000002, handle:0x81000002 a persistent TPM 2.0 key
//
// It does no I/O.
func ParseKeyRef(ref string) (KeyRef, error) {
	scheme, _, _ := strings.Cut(ref, ":")
	switch strings.ToLower(scheme) {
	case "file":
		p, err := parseFileURI(ref)
		if err != nil {
			return KeyRef{}, err
		}
		return KeyRef{Scheme: SchemeFile, Path: p}, nil
	case "pkcs11":
		return parsePKCS11(ref)
	case "tpm2", "handle":
		return parseTPM2(ref)
	}
	if strings.HasPrefix(ref, "/") {
		return KeyRef{}, fmt.Errorf("%s is a bare path: want a file URI, file://%s", quote(ref), ref)
	}
	if ref == "" {
		return KeyRef{}, fmt.Errorf("empty key reference: want %s", keyRefForms)
	}
	return KeyRef{}, fmt.Errorf("%s is not a key reference: want %s", quote(ref), keyRefForms)
}

// parseFileURI returns the absolute, cleaned path of a file:///abs/path
// URI (percent-escapes decoded).
func parseFileURI(s string) (string, error) {
	const form = "file:///absolute/path"
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(scheme, "file") {
		if strings.HasPrefix(s, "/") {
			return "", fmt.Errorf("%s is a bare path: want a file URI, file://%s", quote(s), s)
		}
		return "", fmt.Errorf("%s is not a file URI: want %s", quote(s), form)
	}
	if !strings.HasPrefix(rest, "//") {
		return "", fmt.Errorf("%s: want %s (three slashes, then the absolute path)", quote(s), form)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("%s is not a valid file URI (%v): want %s; write a literal %% as %%25", quote(s), err, form)
	}
	switch {
	case u.Host != "" && u.Host != "localhost":
		return "", fmt.Errorf("%s names host %s: want %s (three slashes; the path must be absolute)", quote(s), quote(u.Host), form)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return "", fmt.Errorf("%s has a query or fragment: write '?' as %%3F and '#' as %%23 in a file URI", quote(s))
	case !strings.HasPrefix(u.Path, "/"):
		return "", fmt.Errorf("%s has no absolute path: want %s", quote(s), form)
	case strings.IndexByte(u.Path, 0) >= 0:
		return "", fmt.Errorf("%s: the path contains a NUL byte", quote(s))
	}
	p := filepath.Clean(u.Path)
	if p == "/" || strings.HasSuffix(u.Path, "/") {
		return "", fmt.Errorf("%s names a directory: want the path of a file, %s", quote(s), form)
	}
	return p, nil
}

// fileURI is the file URI of an absolute path, the inverse of parseFileURI.
func fileURI(path string) string {
	if path == "" {
		return ""
	}
	return (&url.URL{Scheme: "file", Path: path}).String()
}

func parsePKCS11(s string) (KeyRef, error) {
	const form = "pkcs11:object=LABEL;type=private[;token=LABEL][;id=%01]"
	_, body, _ := strings.Cut(s, ":")
	path, query, hasQuery := strings.Cut(body, "?")
	attrs := make(map[string]string)
	parse := func(component string, sep string, known string, extra string) error {
		if component == "" {
			return nil
		}
		for _, a := range strings.Split(component, sep) {
			if a == "" {
				return fmt.Errorf("%s: empty attribute (a stray %q)", quote(s), sep)
			}
			name, raw, ok := strings.Cut(a, "=")
			if !ok {
				return fmt.Errorf("%s: attribute %s has no '=': want name=value", quote(s), quote(a))
			}
			if !isAttr(known, name) && !strings.HasPrefix(name, "x-") {
				other := pkcs11QueryAttrs
				where := "the query (after '?')"
				if sep == "&" {
					other, where = pkcs11PathAttrs, "the path (before '?')"
				}
				if isAttr(other, name) {
					return fmt.Errorf("%s: attribute %s belongs in %s", quote(s), quote(name), where)
				}
				return fmt.Errorf("%s: unknown attribute %s (RFC 7512: %s)", quote(s), quote(name), known)
			}
			if _, dup := attrs[name]; dup {
				return fmt.Errorf("%s: attribute %s given twice", quote(s), quote(name))
			}
			v, err := pctDecode(raw, extra)
			if err != nil {
				return fmt.Errorf("%s: attribute %s: %v", quote(s), name, err)
			}
			attrs[name] = v
		}
		return nil
	}
	// RFC 7512: '&' may stand unencoded in the path, '/', '?' and '|' in
	// the query; ';' separates path attributes and '&' query attributes.
	if err := parse(path, ";", pkcs11PathAttrs, "&"); err != nil {
		return KeyRef{}, err
	}
	if hasQuery {
		if query == "" {
			return KeyRef{}, fmt.Errorf("%s: empty query after '?'", quote(s))
		}
		if err := parse(query, "&", pkcs11QueryAttrs, "/?|;"); err != nil {
			return KeyRef{}, err
		}
	}
	if obj, ok := attrs["object"]; !ok || obj == "" {
		return KeyRef{}, fmt.Errorf("%s: missing object=LABEL (the key's label): want %s", quote(s), form)
	}
	switch t, ok := attrs["type"]; {
	case !ok:
		return KeyRef{}, fmt.Errorf("%s: missing type=private: want %s", quote(s), form)
	case t != "private":
		return KeyRef{}, fmt.Errorf("%s: type=%s, want type=private (the reference names a private key)", quote(s), t)
	}
	if v, ok := attrs["slot-id"]; ok {
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return KeyRef{}, fmt.Errorf("%s: slot-id %s is not a decimal number", quote(s), quote(v))
		}
	}
	if v, ok := attrs["module-path"]; ok && !filepath.IsAbs(v) {
		return KeyRef{}, fmt.Errorf("%s: module-path %s is not an absolute path to the PKCS#11 module (.so)", quote(s), quote(v))
	}
	if _, ok := attrs["pin-value"]; ok {
		if _, ok := attrs["pin-source"]; ok {
			return KeyRef{}, fmt.Errorf("%s: give pin-value or pin-source, not both", quote(s))
		}
	}
	return KeyRef{Scheme: SchemePKCS11, PKCS11: attrs}, nil
}

// pctDecode decodes an RFC 7512 attribute value: unreserved characters,
// the reserved ones RFC 7512 lets stand in every component, extra, and
// %XX escapes.
func pctDecode(s, extra string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
				return "", fmt.Errorf("bad escape at %s: want %%XX with two hex digits", quote(s[i:min(len(s), i+3)]))
			}
			b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
			i += 2
		case unreserved(c) || strings.IndexByte(":[]@!$'()*+,=", c) >= 0 || strings.IndexByte(extra, c) >= 0:
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("character %q must be percent-encoded (as %%%02X)", c, c)
		}
	}
	return b.String(), nil
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func parseTPM2(s string) (KeyRef, error) {
	const form = "tpm2:handle=0x81000002 (or handle:0x81000002)"
	scheme, rest, _ := strings.Cut(s, ":")
	var v string
	if strings.EqualFold(scheme, "tpm2") {
		var ok bool
		if v, ok = strings.CutPrefix(rest, "handle="); !ok {
			return KeyRef{}, fmt.Errorf("%s: want %s", quote(s), form)
		}
	} else {
		v = rest
	}
	hex, ok := strings.CutPrefix(strings.ToLower(v), "0x")
	if !ok || hex == "" || len(hex) > 8 {
		return KeyRef{}, fmt.Errorf("%s: handle %s is not a hex number such as 0x81000002: want %s", quote(s), quote(v), form)
	}
	h, err := strconv.ParseUint(hex, 16, 32)
	if err != nil {
		return KeyRef{}, fmt.Errorf("%s: handle %s is not a hex number such as 0x81000002: want %s", quote(s), quote(v), form)
	}
	if h < MinPersistentHandle || h > MaxPersistentHandle {
		return KeyRef{}, fmt.Errorf("%s: handle %#x is not a persistent handle (0x81000000-0x81FFFFFF)", quote(s), h)
	}
	return KeyRef{Scheme: SchemeTPM2, Handle: uint32(h)}, nil
}

// String returns the reference in canonical form, with a PKCS#11
// pin-value replaced by "REDACTED" so that it can be logged.
func (k KeyRef) String() string { return k.format(true) }

// Unredacted returns the reference in canonical form with any PKCS#11
// pin-value kept: for writing a reference back into a file, never for
// logs.
func (k KeyRef) Unredacted() string { return k.format(false) }

// format writes k canonically: file:///path, tpm2:handle=0x........, or
// pkcs11: with attributes sorted and everything but unreserved characters
// percent-encoded.
func (k KeyRef) format(redact bool) string {
	switch k.Scheme {
	case SchemeFile:
		return fileURI(k.Path)
	case SchemeTPM2:
		return fmt.Sprintf("tpm2:handle=0x%08x", k.Handle)
	case SchemePKCS11:
		var path, query []string
		for _, name := range slices.Sorted(maps.Keys(k.PKCS11)) {
			v := k.PKCS11[name]
			if redact && name == "pin-value" {
				v = "REDACTED"
			}
			a := name + "=" + pctEncode(v)
			if isAttr(pkcs11QueryAttrs, name) {
				query = append(query, a)
			} else {
				path = append(path, a)
			}
		}
		s := "pkcs11:" + strings.Join(path, ";")
		if len(query) > 0 {
			s += "?" + strings.Join(query, "&")
		}
		return s
	}
	return ""
}

func pctEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; unreserved(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
