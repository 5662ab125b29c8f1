package ccidconf

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/ccid"
)

const domainXML = `<domain type='kvm'>
  <name>win11</name>
  <devices>
    <controller type='ccid' index='0'/>
    <smartcard mode='passthrough' type='unix'>
      <source mode='bind' path='/run/cardshare/win11-ccid0.sock'/>
      <address type='ccid' controller='0' slot='0'/>
    </smartcard>
    <smartcard mode='passthrough' type='tcp'>
      <source mode='connect' host='127.0.0.1' service='2001'/>
      <protocol type='raw'/>
    </smartcard>
    <smartcard mode='passthrough' type='spicevmc'/>
    <smartcard mode='host'/>
  </devices>
</domain>`

func TestChardevsFromDomainXML(t *testing.T) {
	eps, err := ChardevsFromDomainXML([]byte(domainXML))
	if err != nil {
		t.Fatal(err)
	}
	want := []ccid.Endpoint{
		{Network: "unix", Address: "/run/cardshare/win11-ccid0.sock"},
		{Network: "tcp", Address: "127.0.0.1:2001", Listen: true},
	}
	if !reflect.DeepEqual(eps, want) {
		t.Fatalf("got %+v", eps)
	}
	_, err = ChardevsFromDomainXML([]byte(`<domain><devices><smartcard mode='host'/></devices></domain>`))
	if !errors.Is(err, ErrNoSmartcard) || !strings.Contains(err.Error(), "<smartcard mode='passthrough' type='unix'>") {
		t.Fatalf("no smartcard: %v", err)
	}
	if _, err := ChardevsFromDomainXML([]byte(`<domain`)); err == nil {
		t.Fatal("bad XML accepted")
	}
}

func TestSnippet(t *testing.T) {
	var b strings.Builder
	Snippet(&b, SnippetOptions{Domain: "win11", Readers: 2})
	out := b.String()
	for _, want := range []string{
		"<source mode='bind' path='/run/cardshare/win11-ccid1.sock'/>",
		"-chardev socket,id=ccid0,path=/run/cardshare/win11-ccid0.sock,server=on,wait=off",
		"-device ccid-card-passthru,chardev=ccid1,bus=ccidrdr1.0",
		"args: -device qemu-xhci,id=ccidxhci -chardev",
		"cardshare qemu attach --chardev unix:/run/cardshare/win11-ccid0.sock --chardev unix:/run/cardshare/win11-ccid1.sock",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("snippet lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	Snippet(&b, SnippetOptions{Listen: true})
	if out := b.String(); !strings.Contains(out, "mode='connect'") || !strings.Contains(out, "reconnect=2") || !strings.Contains(out, "attach --listen") {
		t.Errorf("listen snippet:\n%s", out)
	}
}

func TestDomainChardevs(t *testing.T) {
	t.Setenv("LIBVIRT_DEFAULT_URI", "")
	var calls [][]string
	run := func(_ context.Context, _, name string, args ...string) ([]byte, error) {
		calls = append(calls, append([]string{name}, args...))
		if len(args) > 0 && args[0] == "-c" {
			return []byte(domainXML), nil
		}
		return nil, errors.New("error: failed to get domain 'win11'")
	}
	eps, err := DomainChardevs(context.Background(), run, "win11")
	if os.Geteuid() == 0 {
		// root asks one connection only.
		if !errors.Is(err, ErrNoDomain) || len(calls) != 1 {
			t.Fatalf("root: %v, calls %q", err, calls)
		}
		return
	}
	if err != nil || len(eps) != 2 || len(calls) != 2 {
		t.Fatalf("%v %v %q", eps, err, calls)
	}
}
