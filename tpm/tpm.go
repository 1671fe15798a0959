// Package tpm keeps private keys in a TPM 2.0 and uses them through
// github.com/google/go-tpm (pure Go, no cgo).
//
// Keys are created non-exportable (fixedTPM, fixedParent,
// sensitiveDataOrigin) under a persistent storage root key at SRKHandle
// and are either kept as TSS2 PRIVATE KEY PEM files (the openssl tpm2
// provider's format) or made persistent at a handle. One TPM value owns
// one serialised connection (through the kernel's resource manager, one
// more per loaded key: see Load); keys are loaded once and their handles
// reused for every signature.
//
// # Authorization
//
// The owner hierarchy is used with an empty authorization value (to
// create and persist the SRK and to persist keys), as the kernel and
// tpm2-tools leave it unless an administrator sets one. Keys get an
// empty authorization value too: a key is bound to the TPM that made it
// (its private part leaves the TPM only wrapped by the SRK, which never
// leaves it), and the threat model is key extraction, not use of the
// key by someone who already runs code on the gateway. Keys are noDA:
// with no secret to guess, dictionary-attack lockout would only let a
// buggy or hostile local process lock ggcore out of its own keys.
//
// # Resource limits
//
// A TPM holds few objects at once: swtpm (libtpms) has 3 transient
// object slots, and a persistent object (the SRK, a persistent key)
// takes a slot for the duration of each command that uses it. The
// kernel's resource manager (/dev/tpmrm0) swaps objects in and out per
// command. Raw connections (/dev/tpm0, swtpm sockets) have no resource
// manager, so this package does the same job for its own keys: when
// the TPM answers TPM_RC_OBJECT_MEMORY it saves the context of the
// least recently used loaded key (TPM2_ContextSave, once per key),
// flushes it and retries; a key swapped out is brought back with
// TPM2_ContextLoad on its next use. A wrapped key is TPM2_Load-ed once
// (again only if the TPM was reset and its saved context became
// invalid), never per signature.
//
// On a raw connection transient objects and sessions are not flushed
// when a process dies, so Open flushes every transient object and
// session it finds: ggcore must then be the only user of that TPM
// (swtpm serves one client at a time anyway). Through /dev/tpmrm0 a
// connection starts with a space of its own, so Open flushes nothing
// there.
//
// # Key files
//
// Create writes keys as children of the SRK (parent 0x81000001 in the
// TSS2 PRIVATE KEY file). Key files made by other tools load too: under
// a persistent parent, or under parent 0x40000001 when that means the
// primary that the ECC P-256 SRK template derives in the owner
// hierarchy, as for tpm2-openssl (an SRK that ggcore created is that
// very key). Keys with a password, a policy, or still to be imported
// are refused.
//
// # One client
//
// swtpm serves one client at a time: while a TPM value is open on a
// swtpm socket, another Open of it (in this process or another, e.g.
// openssl) waits, and Open gives up after 10 seconds with
// ErrUnreachable. Open one TPM per device per process and share it.
package tpm

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// SRKHandle is the persistent handle of the storage root key that every
// key ggcore creates is a child of (the TCG's usual SRK handle).
const SRKHandle uint32 = 0x81000001

// Errors callers tell apart with errors.Is.
var (
	// ErrUnreachable: the TPM device or swtpm socket cannot be opened.
	ErrUnreachable = errors.New("TPM unreachable")
	// ErrHandleAbsent: no persistent object at the handle.
	ErrHandleAbsent = errors.New("no key at this persistent handle")
	// ErrHandleInUse: Persist was asked for a handle that holds a key.
	ErrHandleInUse = errors.New("persistent handle already in use")
)

// errClosed is returned by every operation after Close.
var errClosed = errors.New("TPM connection closed")

// TPM is one serialised connection to a TPM. It is safe for concurrent
// use; commands are sent one at a time.
type TPM struct {
	device string
	dev    keyspec.TPMDevice
	// managed: dev is behind the kernel's resource manager, and each
	// wrapped key is loaded in a connection (a space) of its own, in
	// spaces (see Load).
	managed bool

	spaces []*TPM // guarded by mu

	mu      sync.Mutex // serialises every command and guards what follows
	tr      transport.TPMCloser
	srkPub  tpm2.TPMTPublic
	srkName tpm2.TPM2BName
	loaded  map[[32]byte]*Key // keys this TPM loaded from blobs
	tick    uint64            // LRU clock for loaded keys
	loads   int               // TPM2_Load runs (for tests)
	swaps   int               // keys swapped out (for tests)
}

// Open connects to the TPM named by device, in the syntax of
// keyspec.ParseTPMDevice (ggcore.tpm.device's): a device path
// ("/dev/tpmrm0", "/dev/tpm0"), "unix:///path" (a swtpm --server
// type=unixio socket) or "tcp://HOST:PORT" (swtpm --server type=tcp). ""
// means keyspec.DefaultTPMDevice. It makes sure the SRK exists at
// SRKHandle, creating and persisting it if absent.
func Open(device string) (*TPM, error) {
	return open(device, firstCommandTimeout)
}

// open is Open with a bound on the first command over a socket.
func open(device string, first time.Duration) (*TPM, error) {
	d, err := keyspec.ParseTPMDevice(device)
	if err != nil {
		return nil, fmt.Errorf("tpm: open: %w", err)
	}
	tr, err := openTransport(d, first)
	if err != nil {
		return nil, fmt.Errorf("tpm: open %s: %w", d, err)
	}
	t := &TPM{device: d.String(), dev: d, managed: resourceManaged(d), tr: tr, loaded: map[[32]byte]*Key{}}
	if err := t.start(t.managed); err != nil {
		tr.Close()
		return nil, fmt.Errorf("tpm: open %s: %w", d, err)
	}
	return t, nil
}

// start readies a fresh connection: TPM2_Startup if needed, leftovers
// flushed, SRK present. A connection through the kernel's resource
// manager (managed) starts with a space of its own, in which there is
// nothing to flush: the SRK's read is its first command.
func (t *TPM) start(managed bool) error {
	if managed {
		err := t.ensureSRK()
		switch {
		case err == nil:
			return nil
		case !isTPMError(err):
			return fmt.Errorf("%w: %w", ErrUnreachable, err)
		case !errors.Is(err, tpm2.TPMRCInitialize):
			return err
		}
		if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(t.tr); err != nil {
			return fmt.Errorf("TPM2_Startup: %w", err)
		}
		return t.ensureSRK()
	}
	if err := t.flushLeftovers(); err != nil {
		if !isTPMError(err) {
			// Nothing sensible came back from the first command.
			return fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		if !errors.Is(err, tpm2.TPMRCInitialize) {
			return err
		}
		if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(t.tr); err != nil {
			return fmt.Errorf("TPM2_Startup: %w", err)
		}
		if err := t.flushLeftovers(); err != nil {
			return err
		}
	}
	return t.ensureSRK()
}

// resourceManaged reports a device behind the kernel's resource manager
// (/dev/tpmrmN), which gives each open file its own space of objects and
// sessions, flushed when the file is closed.
func resourceManaged(d keyspec.TPMDevice) bool {
	return d.Network == keyspec.TPMNetworkDevice && strings.HasPrefix(filepath.Base(d.Address), "tpmrm")
}

// flushLeftovers flushes transient objects and sessions that a previous
// user of a raw connection left behind.
func (t *TPM) flushLeftovers() error {
	for _, first := range []uint32{
		0x80000000, // transient objects
		0x02000000, // loaded sessions
		0x03000000, // saved (active, not loaded) sessions
	} {
		handles, err := t.listHandles(first)
		if err != nil {
			return fmt.Errorf("list handles from 0x%08x: %w", first, err)
		}
		for _, h := range handles {
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.tr); err != nil {
				return fmt.Errorf("flush leftover 0x%08x: %w", uint32(h), err)
			}
		}
	}
	return nil
}

// listHandles returns the handles of first's type (its top byte).
func (t *TPM) listHandles(first uint32) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	next := first
	for {
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      next,
			PropertyCount: 64,
		}.Execute(t.tr)
		if err != nil {
			return nil, err
		}
		hl, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, err
		}
		for _, h := range hl.Handle {
			if uint32(h)>>24 != first>>24 {
				return out, nil
			}
			out = append(out, h)
			next = uint32(h) + 1
		}
		if !rsp.MoreData || len(hl.Handle) == 0 {
			return out, nil
		}
	}
}

// srkTemplate is the TCG ECC P-256 SRK template (TCG TPM v2.0
// Provisioning Guidance: a restricted decryption key, fixedTPM,
// fixedParent, sensitiveDataOrigin, userWithAuth, noDA, AES-128-CFB,
// SHA-256 name, empty auth) with an empty unique field. With that unique
// field the SRK is the very primary that TSS2 key files mean by parent
// 0x40000001 (tpm2-openssl derives it so), so such keys load under it.
func srkTemplate() tpm2.TPMTPublic {
	t := tpm2.ECCSRKTemplate
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{})
	return t
}

// ensureSRK reads the SRK at SRKHandle, creating it from srkTemplate in
// the owner hierarchy and persisting it first if absent. An SRK made by
// someone else is used as it is if it is a storage key.
func (t *TPM) ensureSRK() error {
	rsp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(SRKHandle)}.Execute(t.tr)
	if errors.Is(err, tpm2.TPMRCHandle) {
		if err := t.createSRK(); err != nil {
			return fmt.Errorf("create SRK at 0x%08x: %w", SRKHandle, err)
		}
		rsp, err = tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(SRKHandle)}.Execute(t.tr)
	}
	if err != nil {
		return fmt.Errorf("read SRK at 0x%08x: %w", SRKHandle, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return fmt.Errorf("read SRK at 0x%08x: %w", SRKHandle, err)
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.Decrypt || a.SignEncrypt || (pub.Type != tpm2.TPMAlgECC && pub.Type != tpm2.TPMAlgRSA) {
		return fmt.Errorf("object at 0x%08x is not a storage root key (want a restricted RSA or ECC decryption key)", SRKHandle)
	}
	t.srkPub = *pub
	t.srkName = rsp.Name
	return nil
}

func (t *TPM) createSRK() error {
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: owner,
		InPublic:      tpm2.New2B(srkTemplate()),
	}.Execute(t.tr)
	if err != nil {
		return fmt.Errorf("TPM2_CreatePrimary: %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(t.tr)
	_, err = tpm2.EvictControl{
		Auth:             owner,
		ObjectHandle:     tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		PersistentHandle: tpm2.TPMHandle(SRKHandle),
	}.Execute(t.tr)
	if err != nil {
		return fmt.Errorf("TPM2_EvictControl: %w", err)
	}
	return nil
}

// Close flushes every key this TPM loaded and closes the connection. Keys
// from it stop working.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return nil
	}
	var errs []error
	for _, sp := range t.spaces {
		if err := sp.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	t.spaces = nil
	for _, k := range t.loaded {
		if k.t != t {
			continue // in a space of its own, closed above
		}
		if k.handle != 0 {
			if _, err := (tpm2.FlushContext{FlushHandle: k.handle}).Execute(t.tr); err != nil {
				errs = append(errs, fmt.Errorf("flush key 0x%08x: %w", uint32(k.handle), err))
			}
			k.handle = 0
		}
		k.saved = nil
	}
	if err := t.tr.Close(); err != nil {
		errs = append(errs, err)
	}
	t.tr = nil
	t.loaded = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tpm: close %s: %w", t.device, err)
	}
	return nil
}

// Blob is a TPM-wrapped key: its public area and its private area
// encrypted by its parent. It is useless without the TPM that made it.
type Blob struct {
	Parent  uint32 // parent handle (SRKHandle)
	Public  []byte // TPM2B_PUBLIC contents (marshalled TPMT_PUBLIC)
	Private []byte // TPM2B_PRIVATE contents
}

// Create makes a new key inside the TPM under the SRK and returns it
// wrapped. Its private part never leaves the TPM in the clear.
func (t *TPM) Create(kt keyspec.Type, u keyspec.Usage) (*Blob, error) {
	tmpl, err := template(kt, u)
	if err != nil {
		return nil, fmt.Errorf("tpm: create %s %s key: %w", kt, u, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return nil, fmt.Errorf("tpm: create %s %s key: %w", kt, u, errClosed)
	}
	var rsp *tpm2.CreateResponse
	err = t.run(nil, func() (err error) {
		rsp, err = tpm2.Create{
			ParentHandle: tpm2.AuthHandle{
				Handle: tpm2.TPMHandle(SRKHandle),
				Name:   t.srkName,
				Auth:   tpm2.PasswordAuth(nil),
			},
			InPublic: tpm2.New2B(tmpl),
		}.Execute(t.tr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpm: create %s %s key: TPM2_Create: %w", kt, u, err)
	}
	return &Blob{
		Parent:  SRKHandle,
		Public:  append([]byte(nil), rsp.OutPublic.Bytes()...),
		Private: append([]byte(nil), rsp.OutPrivate.Buffer...),
	}, nil
}

// template returns the public template of a new key: a child of the
// SRK that can never leave this TPM in the clear (fixedTPM, fixedParent,
// sensitiveDataOrigin), used with an empty password (userWithAuth, noDA;
// see the package comment), and either signing or decrypting, with a
// null scheme so that each signature or decryption names its own.
func template(kt keyspec.Type, u keyspec.Usage) (tpm2.TPMTPublic, error) {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		SignEncrypt:         u == keyspec.Sign,
		Decrypt:             u == keyspec.Decrypt,
	}
	if u != keyspec.Sign && u != keyspec.Decrypt {
		return tpm2.TPMTPublic{}, fmt.Errorf("unknown usage %d", int(u))
	}
	if _, err := keyspec.ParseType(string(kt)); err != nil {
		return tpm2.TPMTPublic{}, err
	}
	if err := u.Check(kt); err != nil {
		return tpm2.TPMTPublic{}, fmt.Errorf("%w (SecretsManager unwraps its data key with RSA PKCS#1 v1.5)", err)
	}
	pub := tpm2.TPMTPublic{NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs}
	switch kt {
	case keyspec.RSA2048, keyspec.RSA3072:
		bits := tpm2.TPMKeyBits(kt.RSABits())
		pub.Type = tpm2.TPMAlgRSA
		pub.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
			KeyBits:   bits,
		})
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{})
	case keyspec.ECP256, keyspec.ECP384:
		curve := tpm2.TPMECCNistP256
		if kt == keyspec.ECP384 {
			curve = tpm2.TPMECCNistP384
		}
		pub.Type = tpm2.TPMAlgECC
		pub.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   curve,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		})
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{})
	default:
		return tpm2.TPMTPublic{}, fmt.Errorf("key type %q has no TPM template", string(kt))
	}
	return pub, nil
}

// Load loads a wrapped key and keeps it loaded until Close.
// Loading the same blob again returns the same Key.
//
// Through the kernel's resource manager (/dev/tpmrmN) each key is loaded
// in a connection of its own. The manager loads every object of a
// connection's space before each command and saves and flushes them all
// after it, so keys sharing one connection would cost each other two or
// three TPM commands on every signature, and a third key would not even
// load beside the SRK in a TPM with three object slots (swtpm's).
func (t *TPM) Load(b *Blob) (*Key, error) {
	k, err := newKeyFromBlob(b)
	if err != nil {
		return nil, fmt.Errorf("tpm: load key: %w", err)
	}
	id := blobID(b)
	if t.managed {
		return t.loadInSpace(b, k, id)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return nil, fmt.Errorf("tpm: load key: %w", errClosed)
	}
	if old := t.loaded[id]; old != nil {
		return old, nil
	}
	h, err := t.loadBlob(b, k.name)
	if err != nil {
		return nil, fmt.Errorf("tpm: load key: %w", err)
	}
	t.adopt(k, h, id)
	return k, nil
}

// loadInSpace loads k (blob b, identified by id) in a connection of its
// own to t's resource-managed device. t's lock is held only to look the
// blob up and to record the key, so that keys load side by side: the
// kernel serialises their commands, and what each costs around them
// (marshalling, the system calls) overlaps.
func (t *TPM) loadInSpace(b *Blob, k *Key, id [32]byte) (*Key, error) {
	t.mu.Lock()
	closed, old := t.tr == nil, t.loaded[id]
	t.mu.Unlock()
	switch {
	case closed:
		return nil, fmt.Errorf("tpm: load key: %w", errClosed)
	case old != nil:
		return old, nil
	}
	sp, err := t.newSpace()
	if err != nil {
		return nil, fmt.Errorf("tpm: load key: %w", err)
	}
	h, err := sp.loadBlob(b, k.name) // sp is not shared yet
	if err != nil {
		sp.tr.Close()
		return nil, fmt.Errorf("tpm: load key: %w", err)
	}
	sp.adopt(k, h, id)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		sp.Close()
		return nil, fmt.Errorf("tpm: load key: %w", errClosed)
	}
	if old := t.loaded[id]; old != nil { // the same blob, loaded meanwhile
		sp.Close()
		return old, nil
	}
	t.loaded[id] = k
	t.spaces = append(t.spaces, sp)
	return k, nil
}

// adopt records k, loaded at handle h, as blob id's key in t. t's lock is
// held, or t is not shared yet.
func (t *TPM) adopt(k *Key, h tpm2.TPMHandle, id [32]byte) {
	k.t, k.handle, k.last = t, h, h
	t.tick++
	k.lastUse = t.tick
	t.loaded[id] = k
}

// newSpace opens another connection to t's resource-managed device for
// one key; it shares t's SRK (persistent, seen by every connection), whose
// public area Open read and nothing changes after.
func (t *TPM) newSpace() (*TPM, error) {
	tr, err := openTransport(t.dev, firstCommandTimeout)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", t.dev, err)
	}
	return &TPM{device: t.device, dev: t.dev, managed: true, tr: tr, srkPub: t.srkPub, srkName: t.srkName,
		loaded: map[[32]byte]*Key{}}, nil
}

// blobID identifies a wrapped key, so that loading it twice returns the
// key already loaded.
func blobID(b *Blob) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%08x:%d:", b.Parent, len(b.Public))
	h.Write(b.Public)
	h.Write(b.Private)
	var id [32]byte
	h.Sum(id[:0])
	return id
}

// newKeyFromBlob checks that b holds a key this package can use and
// returns its Key, not yet loaded.
func newKeyFromBlob(b *Blob) (*Key, error) {
	if b == nil {
		return nil, errors.New("nil blob")
	}
	if b.Parent != ownerHierarchy && (b.Parent < persistentFirst || b.Parent > persistentLast) {
		return nil, fmt.Errorf("parent 0x%08x is neither a persistent handle nor the owner hierarchy", b.Parent)
	}
	if len(b.Private) == 0 {
		return nil, errors.New("empty private part")
	}
	pub, err := unmarshalPublic(b.Public)
	if err != nil {
		return nil, err
	}
	k, err := newKey(pub)
	if err != nil {
		return nil, err
	}
	k.blob = &Blob{
		Parent:  b.Parent,
		Public:  append([]byte(nil), b.Public...),
		Private: append([]byte(nil), b.Private...),
	}
	return k, nil
}

// loadBlob runs TPM2_Load of b under its parent and checks that the TPM
// computed the name we expect. The caller holds t.mu.
//
// Parent 0x40000001 means, in the TSS2 key file format, the primary key
// derived in the owner hierarchy from the ECC P-256 SRK template (what
// tpm2-openssl uses by default). An SRK that ggcore created is that very
// key, so such a key loads under SRKHandle; if the SRK was made
// otherwise, the primary is derived again for the load and flushed
// right after.
func (t *TPM) loadBlob(b *Blob, want tpm2.TPM2BName) (tpm2.TPMHandle, error) {
	parent, parentName := b.Parent, t.srkName
	switch {
	case parent == ownerHierarchy:
		h, err := t.loadUnder(b, tpm2.TPMHandle(SRKHandle), t.srkName, want)
		if !errors.Is(err, tpm2.TPMRCIntegrity) {
			return h, err
		}
		return t.loadUnderOwnerPrimary(b, want)
	case parent != SRKHandle:
		var rp *tpm2.ReadPublicResponse
		err := t.run(nil, func() (err error) {
			rp, err = tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(parent)}.Execute(t.tr)
			return err
		})
		if errors.Is(err, tpm2.TPMRCHandle) {
			return 0, fmt.Errorf("parent 0x%08x: %w", parent, ErrHandleAbsent)
		}
		if err != nil {
			return 0, fmt.Errorf("parent 0x%08x: TPM2_ReadPublic: %w", parent, err)
		}
		parentName = rp.Name
	}
	return t.loadUnder(b, tpm2.TPMHandle(parent), parentName, want)
}

// loadUnderOwnerPrimary derives the owner-hierarchy primary from the SRK
// template, loads b under it and flushes it. The caller holds t.mu.
func (t *TPM) loadUnderOwnerPrimary(b *Blob, want tpm2.TPM2BName) (tpm2.TPMHandle, error) {
	var prim *tpm2.CreatePrimaryResponse
	err := t.run(nil, func() (err error) {
		prim, err = tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(srkTemplate()),
		}.Execute(t.tr)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("derive the parent 0x40000001 primary: TPM2_CreatePrimary: %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: prim.ObjectHandle}.Execute(t.tr)
	h, err := t.loadUnder(b, prim.ObjectHandle, prim.Name, want)
	if errors.Is(err, tpm2.TPMRCIntegrity) {
		return 0, fmt.Errorf("the key's parent 0x40000001 is a primary its tool derived from another template than the ECC P-256 SRK template; create keys under the persistent SRK 0x%08x instead: %w", SRKHandle, err)
	}
	return h, err
}

// loadUnder runs TPM2_Load of b under a loaded or persistent parent.
// The caller holds t.mu.
func (t *TPM) loadUnder(b *Blob, parent tpm2.TPMHandle, parentName, want tpm2.TPM2BName) (tpm2.TPMHandle, error) {
	var rsp *tpm2.LoadResponse
	err := t.run(nil, func() (err error) {
		rsp, err = tpm2.Load{
			ParentHandle: tpm2.AuthHandle{
				Handle: parent,
				Name:   parentName,
				Auth:   tpm2.PasswordAuth(nil),
			},
			InPrivate: tpm2.TPM2BPrivate{Buffer: b.Private},
			InPublic:  tpm2.BytesAs2B[tpm2.TPMTPublic](b.Public),
		}.Execute(t.tr)
		return err
	})
	switch {
	case errors.Is(err, tpm2.TPMRCIntegrity) && b.Parent != ownerHierarchy:
		return 0, fmt.Errorf("TPM2_Load under parent 0x%08x: the key was not made under this TPM's key at that handle (another TPM, or the SRK was replaced): %w", b.Parent, err)
	case err != nil:
		return 0, fmt.Errorf("TPM2_Load under parent 0x%08x: %w", b.Parent, err)
	}
	if string(rsp.Name.Buffer) != string(want.Buffer) {
		tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(t.tr)
		return 0, errors.New("TPM2_Load: the TPM reports a different name for the key than its public part gives")
	}
	t.loads++
	return rsp.ObjectHandle, nil
}

// Persist loads b and makes it persistent at handle (0x81000000 to
// 0x81FFFFFF). It fails with ErrHandleInUse if the handle holds a key.
func (t *TPM) Persist(b *Blob, handle uint32) (*Key, error) {
	if handle < persistentFirst || handle > persistentLast {
		return nil, fmt.Errorf("tpm: persist key at 0x%08x: not a persistent handle (want 0x81000000 to 0x81ffffff)", handle)
	}
	k, err := newKeyFromBlob(b)
	if err != nil {
		return nil, fmt.Errorf("tpm: persist key at 0x%08x: %w", handle, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return nil, fmt.Errorf("tpm: persist key at 0x%08x: %w", handle, errClosed)
	}
	used, err := t.handleUsed(handle)
	if err != nil {
		return nil, fmt.Errorf("tpm: persist key at 0x%08x: %w", handle, err)
	}
	if used {
		return nil, fmt.Errorf("tpm: persist key at 0x%08x: %w", handle, ErrHandleInUse)
	}
	h, err := t.loadBlob(b, k.name)
	if err != nil {
		return nil, fmt.Errorf("tpm: persist key at 0x%08x: %w", handle, err)
	}
	err = t.run(nil, func() error {
		_, err := tpm2.EvictControl{
			Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			ObjectHandle:     tpm2.NamedHandle{Handle: h, Name: k.name},
			PersistentHandle: tpm2.TPMHandle(handle),
		}.Execute(t.tr)
		return err
	})
	_, ferr := tpm2.FlushContext{FlushHandle: h}.Execute(t.tr)
	if err != nil {
		return nil, fmt.Errorf("tpm: persist key at 0x%08x: TPM2_EvictControl: %w", handle, err)
	}
	if ferr != nil {
		return nil, fmt.Errorf("tpm: persist key at 0x%08x: flush its transient copy: %w", handle, ferr)
	}
	k.t, k.persistent, k.handle, k.last = t, true, tpm2.TPMHandle(handle), tpm2.TPMHandle(handle)
	k.blob = nil
	return k, nil
}

// handleUsed reports whether a persistent handle holds an object. The
// caller holds t.mu.
func (t *TPM) handleUsed(handle uint32) (bool, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      handle,
		PropertyCount: 1,
	}.Execute(t.tr)
	if err != nil {
		return false, fmt.Errorf("TPM2_GetCapability: %w", err)
	}
	hl, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		return false, err
	}
	return len(hl.Handle) > 0 && uint32(hl.Handle[0]) == handle, nil
}

// Persistent opens the key persisted at handle; ErrHandleAbsent if there
// is none.
func (t *TPM) Persistent(handle uint32) (*Key, error) {
	if handle < persistentFirst || handle > persistentLast {
		return nil, fmt.Errorf("tpm: key 0x%08x: not a persistent handle (want 0x81000000 to 0x81ffffff)", handle)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return nil, fmt.Errorf("tpm: key 0x%08x: %w", handle, errClosed)
	}
	var rsp *tpm2.ReadPublicResponse
	err := t.run(nil, func() (err error) {
		rsp, err = tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(handle)}.Execute(t.tr)
		return err
	})
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, fmt.Errorf("tpm: key 0x%08x: %w", handle, ErrHandleAbsent)
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: key 0x%08x: TPM2_ReadPublic: %w", handle, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: key 0x%08x: %w", handle, err)
	}
	k, err := newKey(pub)
	if err != nil {
		return nil, fmt.Errorf("tpm: key 0x%08x: %w", handle, err)
	}
	if string(k.name.Buffer) != string(rsp.Name.Buffer) {
		return nil, fmt.Errorf("tpm: key 0x%08x: the TPM reports a name that does not match its public area", handle)
	}
	k.t, k.persistent, k.handle, k.last = t, true, tpm2.TPMHandle(handle), tpm2.TPMHandle(handle)
	return k, nil
}

// Public returns the key's public key (*rsa.PublicKey or *ecdsa.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Usage reports whether the key signs or decrypts.
func (k *Key) Usage() keyspec.Usage { return k.usage }

// Sign signs digest: ECDSA (ASN.1 DER), RSA PKCS#1 v1.5, or RSA-PSS when
// opts is *rsa.PSSOptions (salt length = hash length).
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.sign(digest, opts)
}

// Decrypt decrypts an RSA PKCS#1 v1.5 ciphertext (opts nil or
// *rsa.PKCS1v15DecryptOptions) in a salted session with parameter
// encryption, so the plaintext crosses the bus encrypted.
func (k *Key) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return k.decrypt(msg, opts)
}
