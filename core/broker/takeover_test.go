package broker

import (
	"fmt"
	"testing"
)

// A device that reconnects while its previous connection is still open
// takes that session over and gets every message routed to it afterwards,
// however the two connections' teardown and setup interleave.
func TestTakeoverOfALiveSessionKeepsDelivering(t *testing.T) {
	f := newTestFleet(t, "pub", "dev")
	f.start(f.group(sub("s1", "pub", "t/#", "dev")))
	pub := f.mustConnect("pub")
	f.mustConnect("dev").subscribe(t, "t/#")
	for i := range 200 {
		cur := f.mustConnect("dev") // takes over the previous one, still open
		cur.subscribe(t, "t/#")
		payload := fmt.Sprint("message ", i)
		pub.publish(t, "t/x", payload, false)
		cur.expect(t, "t/x", payload)
	}
}
