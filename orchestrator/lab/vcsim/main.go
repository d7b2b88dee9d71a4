// Command vcsim runs VMware's vCenter simulator (govmomi's simulator package)
// for the orchestrator's lab and tests.
//
// Debian ships the simulator as a library (golang-github-vmware-govmomi-dev),
// not the vcsim command, so the project builds this small main:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o .lab/bin/vcsim lab/vcsim/main.go
//
// What it adds to simulator.VPX():
//   - TLS with a certificate passed by flags (govmomi's built-in one is
//     1024-bit, which OpenSSL 3 refuses), and login credentials by flags;
//   - PutUsbScanCodes, the only API path to a BIOS password, which govmomi
//     0.24 lacks: a middleware in front of /sdk answers it for every VM and
//     records the keys (JSONL, -keys) for the tests to read back;
//   - a request log (JSONL, -requests): one line per SOAP call, so tests can
//     prove that a second run made no Reconfig, Import or PowerOn call;
//   - per-method delays (-delay Method=ms,...) so tests can stop the
//     simulator while a call is in flight;
//   - a private TMPDIR (-tmpdir) for the directories of its datastores.
//
// It prints one JSON line on stdout ({"url": ..., "pid": ...}) once it
// listens, and exits at once on SIGTERM or SIGINT: Server.Close() would wait
// for long-polling clients (WaitForUpdatesEx) and can block for minutes.
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// jsonl appends JSON lines to a file; safe for concurrent handlers.
type jsonl struct {
	mu sync.Mutex
	f  *os.File
}

func openJSONL(path string) (*jsonl, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &jsonl{f: f}, nil
}

func (j *jsonl) write(records ...interface{}) {
	if j == nil {
		return
	}
	var buf bytes.Buffer
	for _, r := range records {
		line, err := json.Marshal(r)
		if err != nil {
			log.Printf("jsonl: %s", err)
			continue
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	// One write per request: a reader never sees half a batch of keys.
	if _, err := j.f.Write(buf.Bytes()); err != nil {
		log.Printf("jsonl: %s", err)
	}
}

// soapCall is the first element of a SOAP body: the method and its _this.
type soapCall struct {
	Method string
	This   string
}

func firstCall(body []byte) soapCall {
	d := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	var call soapCall
	for {
		tok, err := d.Token()
		if err != nil {
			return call
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch {
		case !inBody && start.Name.Local == "Body":
			inBody = true
		case inBody && call.Method == "":
			call.Method = start.Name.Local
		case call.Method != "" && start.Name.Local == "_this":
			var this string
			if d.DecodeElement(&this, &start) == nil {
				call.This = this
			}
			return call
		}
	}
}

// usbRequest decodes PutUsbScanCodes; tags without a namespace match any.
type usbRequest struct {
	Body struct {
		Call struct {
			This string `xml:"_this"`
			Spec struct {
				KeyEvents []struct {
					UsbHidCode int32 `xml:"usbHidCode"`
					Modifiers  *struct {
						LeftControl  *bool `xml:"leftControl" json:"leftControl,omitempty"`
						LeftShift    *bool `xml:"leftShift" json:"leftShift,omitempty"`
						LeftAlt      *bool `xml:"leftAlt" json:"leftAlt,omitempty"`
						LeftGui      *bool `xml:"leftGui" json:"leftGui,omitempty"`
						RightControl *bool `xml:"rightControl" json:"rightControl,omitempty"`
						RightShift   *bool `xml:"rightShift" json:"rightShift,omitempty"`
						RightAlt     *bool `xml:"rightAlt" json:"rightAlt,omitempty"`
						RightGui     *bool `xml:"rightGui" json:"rightGui,omitempty"`
					} `xml:"modifiers"`
				} `xml:"keyEvents"`
			} `xml:"spec"`
		} `xml:"PutUsbScanCodes"`
	} `xml:"Body"`
}

const envelopeStart = `<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" ` +
	`xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ` +
	`xmlns:xsd="http://www.w3.org/2001/XMLSchema" ` +
	`xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>`
const envelopeEnd = `</soapenv:Body></soapenv:Envelope>`

func writeSOAP(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, envelopeStart+body+envelopeEnd)
}

// powerState reads a VM's power state from the simulator's registry.
func powerState(moref string) (types.VirtualMachinePowerState, bool) {
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: moref}
	obj := simulator.Map.Get(ref)
	vm, ok := obj.(*simulator.VirtualMachine)
	if !ok {
		return "", false
	}
	var state types.VirtualMachinePowerState
	simulator.Map.WithLock(vm, func() { state = vm.Runtime.PowerState })
	return state, true
}

// middleware logs every SOAP call and answers PutUsbScanCodes.
//
// PutUsbScanCodes is first passed through to the simulator, so that its own
// session and object checks apply (NotAuthenticated after a restart,
// ManagedObjectNotFound); only its MethodNotFound answer is replaced, by the
// success answer of vSphere (returnval = number of keys), after the
// power-state check vSphere makes (keys go to a running console only).
func middleware(next http.Handler, requests, keys *jsonl) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/sdk") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := ioutil.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		call := firstCall(body)
		requests.write(map[string]string{"method": call.Method, "this": call.This})
		r.Body = ioutil.NopCloser(bytes.NewReader(body))
		if call.Method != "PutUsbScanCodes" {
			next.ServeHTTP(w, r)
			return
		}

		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		if !bytes.Contains(rec.Body.Bytes(), []byte("MethodNotFound")) {
			// A fault of the simulator's own (session, object): pass it on.
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}

		var req usbRequest
		if err := xml.Unmarshal(body, &req); err != nil {
			writeSOAP(w, http.StatusInternalServerError, fmt.Sprintf(
				`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>%s</faultstring>`+
					`<detail><InvalidRequestFault xmlns="urn:vim25" xsi:type="InvalidRequest"></InvalidRequestFault></detail></soapenv:Fault>`,
				xmlEscape(err.Error())))
			return
		}
		vm := req.Body.Call.This
		state, ok := powerState(vm)
		if !ok || state != types.VirtualMachinePowerStatePoweredOn {
			writeSOAP(w, http.StatusInternalServerError, fmt.Sprintf(
				`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>The attempted operation cannot be performed in the current state (%s).</faultstring>`+
					`<detail><InvalidPowerStateFault xmlns="urn:vim25" xsi:type="InvalidPowerState">`+
					`<requestedState>poweredOn</requestedState><existingState>%s</existingState>`+
					`</InvalidPowerStateFault></detail></soapenv:Fault>`, state, state))
			return
		}
		events := req.Body.Call.Spec.KeyEvents
		records := make([]interface{}, 0, len(events))
		for _, e := range events {
			records = append(records, map[string]interface{}{
				"vm":         vm,
				"usbHidCode": e.UsbHidCode,
				"hid":        uint32(e.UsbHidCode) >> 16,
				"modifiers":  e.Modifiers,
			})
		}
		keys.write(records...)
		writeSOAP(w, http.StatusOK, fmt.Sprintf(
			`<PutUsbScanCodesResponse xmlns="urn:vim25"><returnval>%d</returnval></PutUsbScanCodesResponse>`,
			len(events)))
	})
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// parseDelays reads "Method=ms,Method2=ms".
func parseDelays(spec string) (map[string]int, error) {
	delays := map[string]int{}
	for _, part := range strings.Split(spec, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		kv := strings.SplitN(part, "=", 2)
		if len(kv) != 2 {
			return nil, fmt.Errorf("-delay: %q is not Method=milliseconds", part)
		}
		ms, err := strconv.Atoi(kv[1])
		if err != nil || ms < 0 {
			return nil, fmt.Errorf("-delay: %q: milliseconds must be a number >= 0", part)
		}
		delays[kv[0]] = ms
	}
	return delays, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0: a free port)")
	certFile := flag.String("cert", "", "PEM server certificate (TLS); empty: plain HTTP")
	keyFile := flag.String("key", "", "PEM private key of -cert")
	user := flag.String("user", "user", "login user name")
	passwordFile := flag.String("password-file", "", "file holding the login password (default: any non-empty password)")
	hosts := flag.Int("hosts", 1, "standalone hosts per datacenter")
	clusters := flag.Int("clusters", 1, "clusters per datacenter")
	clusterHosts := flag.Int("cluster-hosts", 3, "hosts per cluster")
	vms := flag.Int("vms", 2, "VMs per resource pool (per standalone host and per cluster)")
	keysPath := flag.String("keys", "", "JSONL file recording PutUsbScanCodes key events")
	requestsPath := flag.String("requests", "", "JSONL file recording every SOAP call (method, _this)")
	delay := flag.String("delay", "", "per-method delays, Method=ms,... (fault tests)")
	tmpdir := flag.String("tmpdir", "", "private TMPDIR for the simulated datastores (default: $TMPDIR)")
	flag.Parse()

	if *tmpdir != "" {
		// The datastores are directories under TMPDIR; a private one keeps a killed
		// simulator's leftovers where its owner cleans them.
		if err := os.MkdirAll(*tmpdir, 0o700); err != nil {
			log.Fatal(err)
		}
		os.Setenv("TMPDIR", *tmpdir)
	}

	delays, err := parseDelays(*delay)
	if err != nil {
		log.Fatal(err)
	}
	keys, err := openJSONL(*keysPath)
	if err != nil {
		log.Fatal(err)
	}
	requests, err := openJSONL(*requestsPath)
	if err != nil {
		log.Fatal(err)
	}

	model := simulator.VPX()
	model.Host = *hosts
	model.Cluster = *clusters
	model.ClusterHost = *clusterHosts
	model.Machine = *vms
	model.DelayConfig.MethodDelay = delays
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}

	listenURL := &url.URL{Host: *listen}
	if *passwordFile != "" {
		pw, err := ioutil.ReadFile(*passwordFile)
		if err != nil {
			log.Fatal(err)
		}
		listenURL.User = url.UserPassword(*user, strings.TrimSpace(string(pw)))
	}
	model.Service.Listen = listenURL
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	server := model.Service.NewServer()
	// NewServer has started serving, but no client knows the address before
	// the line printed below, so wrapping the handler here races with nobody.
	server.Config.Handler = middleware(server.Config.Handler, requests, keys)

	sdk := *server.URL
	sdk.User = nil
	out, _ := json.Marshal(map[string]interface{}{"url": sdk.String(), "user": *user, "pid": os.Getpid()})
	fmt.Println(string(out))

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	// Exit without Server.Close(): it waits for long-polling clients.
	model.Remove()
	os.Exit(0)
}
