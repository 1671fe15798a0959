package tpm

//lint:file-ignore SA1019 the tests wrap secrets with RSA PKCS #1 v1.5, as Greengrass v1 does, to check the TPM key decrypts them.

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// TestThreeKeysAndCreate is ggcore's worst case on a TPM without a
// resource manager: swtpm holds 3 transient objects, the core keeps 3
// keys (IoT client, MQTT server, SecretsManager) and still creates keys
// and starts salted sessions. Keys are swapped in and out of the TPM's
// slots; none is TPM2_Load-ed more than once.
func TestThreeKeysAndCreate(t *testing.T) {
	for _, transport := range []string{"unix", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			tp, _ := openSW(t, transport)
			_, iot := createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
			_, mqtt := createLoad(t, tp, keyspec.RSA2048, keyspec.Sign)
			_, secrets := createLoad(t, tp, keyspec.RSA2048, keyspec.Decrypt)
			plain := []byte("a data key of 32 bytes for test!")
			ct, err := rsa.EncryptPKCS1v15(rand.Reader, secrets.Public().(*rsa.PublicKey), plain)
			if err != nil {
				t.Fatal(err)
			}
			use := map[*Key]func(){
				iot:  func() { signVerify(t, iot, crypto.SHA256) },
				mqtt: func() { signVerify(t, mqtt, crypto.SHA384) },
				secrets: func() {
					got, err := secrets.Decrypt(nil, ct, nil)
					if err != nil || !bytes.Equal(got, plain) {
						t.Fatalf("Decrypt = %q, %v", got, err)
					}
				},
			}
			order := [][]*Key{
				{iot, mqtt, secrets}, {secrets, iot, mqtt}, {mqtt, secrets, iot},
				{iot, iot, secrets, mqtt, mqtt}, {secrets, secrets, iot},
			}
			for round := 0; round < 3; round++ {
				for i, seq := range order {
					for _, k := range seq {
						use[k]()
					}
					if i == 2 {
						if _, err := tp.Create(keyspec.ECP384, keyspec.Sign); err != nil {
							t.Fatalf("Create with three keys loaded: %v", err)
						}
					}
				}
			}
			tp.mu.Lock()
			loads, swaps := tp.loads, tp.swaps
			tp.mu.Unlock()
			if loads != 3 {
				t.Errorf("%d TPM2_Load runs for 3 keys, want 3", loads)
			}
			if swaps == 0 {
				t.Error("no key was swapped out: the test did not exercise the object-slot limit")
			}
			t.Logf("%d swaps", swaps)
			// A fourth key still loads and works; then everything again.
			_, fourth := createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
			for _, k := range []*Key{fourth, iot, mqtt, fourth} {
				signVerify(t, k, crypto.SHA256)
			}
			use[secrets]()
		})
	}
}

// TestOpenFlushesLeftovers: a process that died left objects and a
// session in a TPM without resource manager; the next Open clears them.
func TestOpenFlushesLeftovers(t *testing.T) {
	tp, sw := openSW(t, "unix")
	createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
	createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
	tp.mu.Lock()
	_, err := tpm2.StartAuthSession{
		TPMKey:      tpm2.TPMRHNull,
		Bind:        tpm2.TPMRHNull,
		NonceCaller: tpm2.TPM2BNonce{Buffer: make([]byte, 16)},
		SessionType: tpm2.TPMSEHMAC,
		Symmetric:   tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
		AuthHash:    tpm2.TPMAlgSHA256,
	}.Execute(tp.tr)
	if err != nil {
		t.Fatal(err)
	}
	// Die: drop the connection without flushing anything.
	tp.tr.Close()
	tp.tr = nil
	tp.mu.Unlock()

	raw := rawConn(t, sw.Device)
	if n := len(handlesOf(t, raw, 0x80000000)); n != 2 {
		t.Fatalf("%d transient objects left behind, want 2 (test setup)", n)
	}
	raw.Close()

	tp2, err := Open(sw.Device)
	if err != nil {
		t.Fatal(err)
	}
	defer tp2.Close()
	tp2.mu.Lock()
	for _, first := range []uint32{0x80000000, 0x02000000, 0x03000000} {
		if hs := handlesOf(t, tp2.tr, first); len(hs) != 0 {
			t.Errorf("after Open, handles %v left from 0x%08x", hs, first)
		}
	}
	tp2.mu.Unlock()
	// All slots are ours again: three keys and a Create work.
	for range 3 {
		_, k := createLoad(t, tp2, keyspec.ECP256, keyspec.Sign)
		signVerify(t, k, crypto.SHA256)
	}
}

// TestCloseFlushes: Close leaves no transient object behind.
func TestCloseFlushes(t *testing.T) {
	tp, sw := openSW(t, "tcp")
	for range 3 {
		_, k := createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
		signVerify(t, k, crypto.SHA256)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	raw := rawConn(t, sw.Device)
	defer raw.Close()
	if hs := handlesOf(t, raw, 0x80000000); len(hs) != 0 {
		t.Fatalf("transient objects %v left after Close", hs)
	}
}

func rawConn(t testing.TB, device string) transport.TPMCloser {
	t.Helper()
	d, err := keyspec.ParseTPMDevice(device)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := openTransport(d, firstCommandTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func handlesOf(t testing.TB, tr transport.TPM, first uint32) []tpm2.TPMHandle {
	t.Helper()
	probe := &TPM{tr: &closerOf{tr}}
	hs, err := probe.listHandles(first)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

type closerOf struct{ transport.TPM }

func (closerOf) Close() error { return nil }

// spy records the raw responses crossing the "bus".
type spy struct {
	transport.TPMCloser
	responses [][]byte
}

func (s *spy) Send(cmd []byte) ([]byte, error) {
	rsp, err := s.TPMCloser.Send(cmd)
	s.responses = append(s.responses, bytes.Clone(rsp))
	return rsp, err
}

// TestDecryptPlaintextEncryptedOnTheBus: the plaintext of Decrypt never
// appears in what the TPM sends back.
func TestDecryptPlaintextEncryptedOnTheBus(t *testing.T) {
	tp, _ := openSW(t, "unix")
	_, k := createLoad(t, tp, keyspec.RSA2048, keyspec.Decrypt)
	plain := make([]byte, 32)
	rand.Read(plain)
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public().(*rsa.PublicKey), plain)
	if err != nil {
		t.Fatal(err)
	}
	tp.mu.Lock()
	s := &spy{TPMCloser: tp.tr}
	tp.tr = s
	tp.mu.Unlock()
	got, err := k.Decrypt(nil, ct, nil)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Decrypt = %x, %v", got, err)
	}
	if len(s.responses) == 0 {
		t.Fatal("spy saw no responses")
	}
	for i, r := range s.responses {
		if bytes.Contains(r, plain[:16]) {
			t.Fatalf("response %d carries the plaintext in the clear: %x", i, r)
		}
	}
}

// TestConcurrentSigners: 64 goroutines share three keys (run with -race).
func TestConcurrentSigners(t *testing.T) {
	tp, _ := openSW(t, "unix")
	_, ec := createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
	_, rs := createLoad(t, tp, keyspec.RSA2048, keyspec.Sign)
	_, dk := createLoad(t, tp, keyspec.RSA2048, keyspec.Decrypt)
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, dk.Public().(*rsa.PublicKey), []byte("shared secret"))
	const workers, each = 64, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				d := digestOf(crypto.SHA256, fmt.Sprintf("worker %d message %d", w, i))
				var err error
				switch (w + i) % 4 {
				case 0, 1:
					var sig []byte
					if sig, err = ec.Sign(nil, d, crypto.SHA256); err == nil {
						err = verify(ec.Public(), crypto.SHA256, d, sig, crypto.SHA256)
					}
				case 2:
					opts := &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}
					var sig []byte
					if sig, err = rs.Sign(nil, d, opts); err == nil {
						err = verify(rs.Public(), crypto.SHA256, d, sig, opts)
					}
				case 3:
					var got []byte
					if got, err = dk.Decrypt(nil, ct, nil); err == nil && string(got) != "shared secret" {
						err = fmt.Errorf("Decrypt = %q", got)
					}
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d op %d: %w", w, i, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStaleContextReloads: a key whose saved context no longer loads
// (as after a TPM reset) is loaded again from its wrapped blob.
func TestStaleContextReloads(t *testing.T) {
	tp, _ := openSW(t, "unix")
	_, k := createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
	tp.mu.Lock()
	if err := tp.swapOut(k); err != nil {
		tp.mu.Unlock()
		t.Fatal(err)
	}
	blob := bytes.Clone(k.saved.ContextBlob.Buffer)
	blob[len(blob)-1] ^= 1
	k.saved.ContextBlob.Buffer = blob
	loads := tp.loads
	tp.mu.Unlock()

	signVerify(t, k, crypto.SHA256)
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.loads != loads+1 {
		t.Fatalf("%d TPM2_Load runs to recover the key, want 1", tp.loads-loads)
	}
}
