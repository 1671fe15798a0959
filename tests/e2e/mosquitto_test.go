package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// mosqArgs are the connection options of mosquitto_pub/mosquitto_sub for
// an MQTT 3.1.1 device with identity id and client ID clientID.
func (f *fleet) mosqArgs(id identity, clientID string) []string {
	return []string{
		"-h", "127.0.0.1", "-p", strconv.Itoa(f.port), "-V", "mqttv311",
		"--cafile", f.groupCA(), "--cert", id.certFile, "--key", id.keyFile,
		"-i", clientID,
	}
}

// mosqPub runs mosquitto_pub once; it returns the exit status and output.
func (f *fleet) mosqPub(t *testing.T, id identity, clientID, topic, payload string, qos int, extra ...string) (int, string) {
	t.Helper()
	pub := requireTool(t, "mosquitto_pub")
	args := append(f.mosqArgs(id, clientID), "-t", topic, "-m", payload, "-q", strconv.Itoa(qos), "-d")
	args = append(args, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, pub, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("mosquitto_pub %s: still running after %v:\n%s", strings.Join(args, " "), testtool.Timeout, out)
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("mosquitto_pub: %v", err)
	}
	return 0, string(out)
}

// mustMosqPub publishes as device dev and fails the test if mosquitto_pub does.
func (f *fleet) mustMosqPub(t *testing.T, dev, topic, payload string, qos int) {
	t.Helper()
	if code, out := f.mosqPub(t, f.identity(dev), dev, topic, payload, qos); code != 0 {
		t.Fatalf("mosquitto_pub as %s on %s: exit %d:\n%s", dev, topic, code, out)
	}
}

// mosqSub is a running mosquitto_sub (MQTT 3.1.1); its Inbox holds what
// it received.
type mosqSub struct {
	*mqtttest.Inbox
	cmd     *exec.Cmd
	out     *testtool.Buffer // everything it printed
	granted chan []int       // the SUBACK return codes, once

	mu     sync.Mutex
	codes  []int // the SUBACK return codes, when they came
	exited chan struct{}
}

// startMosqSub runs mosquitto_sub as device dev on filter and waits for its
// SUBACK; it returns the subscriber and the SUBACK return code of each
// filter (0x80: refused). The subscriber is stopped at cleanup.
func (f *fleet) startMosqSub(t *testing.T, dev string, qos int, filters ...string) (*mosqSub, []int) {
	t.Helper()
	path := requireTool(t, "mosquitto_sub")
	args := f.mosqArgs(f.identity(dev), dev)
	for _, filter := range filters {
		args = append(args, "-t", filter)
	}
	args = append(args, "-q", strconv.Itoa(qos), "-d", "-F", "MSG %r %q %t %p")
	// mosquitto_sub block-buffers stdout into a pipe; its SUBACK line must
	// come out when it happens, so run it line-buffered (coreutils stdbuf).
	stdbuf := requireTool(t, "stdbuf")
	s := &mosqSub{
		Inbox:   mqtttest.NewInbox(dev + " (mosquitto_sub)"),
		cmd:     exec.Command(stdbuf, append([]string{"-oL", path}, args...)...),
		out:     &testtool.Buffer{},
		granted: make(chan []int, 1),
		exited:  make(chan struct{}),
	}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start mosquitto_sub: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.read(stdout)
	}()
	go func() {
		wg.Wait()
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", s.Name(), s.out)
		}
	})
	select {
	case codes := <-s.granted:
		return s, codes
	case <-s.exited:
		select { // it may exit right after a refusing SUBACK
		case codes := <-s.granted:
			return s, codes
		default:
		}
		t.Fatalf("mosquitto_sub %s exited before its SUBACK:\n%s", strings.Join(args, " "), s.out)
	case <-time.After(testtool.Timeout):
		t.Fatalf("mosquitto_sub %s: no SUBACK within %v:\n%s", strings.Join(args, " "), testtool.Timeout, s.out)
	}
	return nil, nil
}

// stop ends mosquitto_sub and waits for it; stopping twice is harmless.
// A mosquitto_sub whose every subscription was refused disconnects and
// exits by itself; a SIGTERM in the middle of that can leave it hanging
// (seen with mosquitto 2.0.11: DISCONNECT sent twice, no exit), so it is
// given the chance to do so first.
func (s *mosqSub) stop() {
	if s.allRefused() {
		select {
		case <-s.exited:
			return
		case <-time.After(2 * time.Second):
		}
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// allRefused reports a SUBACK that refused every filter.
func (s *mosqSub) allRefused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.codes) == 0 {
		return false
	}
	for _, c := range s.codes {
		if c != 0x80 {
			return false
		}
	}
	return true
}

// read parses mosquitto_sub's output: "Subscribed (mid: 1): N[, N...]"
// gives the SUBACK codes, "MSG retain qos topic payload" a message.
func (s *mosqSub) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(s.out, line)
		switch {
		case strings.HasPrefix(line, "Subscribed (mid: "):
			i := strings.Index(line, "): ")
			if i < 0 {
				continue
			}
			var codes []int
			for _, c := range strings.Split(line[i+3:], ",") {
				if code, err := strconv.Atoi(strings.TrimSpace(c)); err == nil {
					codes = append(codes, code)
				}
			}
			s.mu.Lock()
			s.codes = codes
			s.mu.Unlock()
			select {
			case s.granted <- codes:
			default:
			}
		case strings.HasPrefix(line, "MSG "):
			f := strings.SplitN(line, " ", 5)
			if len(f) < 4 {
				continue
			}
			m := mqtttest.Message{Topic: f[3], Retain: f[1] == "1"}
			if len(f) == 5 {
				m.Payload = f[4]
			}
			if q, err := strconv.Atoi(f[2]); err == nil {
				m.QoS = byte(q)
			}
			s.Put(m)
		}
	}
}
