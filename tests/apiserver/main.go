// kube-testenv starts a real Kubernetes control plane (embedded etcd + kube-apiserver, both
// in this process) on loopback for integration tests, writes kubeconfigs and prints one JSON
// line on stdout when the server is ready. It stops when stdin reaches EOF, when its parent
// process dies, or on SIGTERM/SIGINT, and then removes what it created.
//
// Subcommands: `kube-testenv [flags] [-- kube-apiserver flags]` (the default),
// `kube-testenv apiserver ...` (plain kube-apiserver, upstream main), `kube-testenv version`.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // for timeZone support in CronJob, as upstream's main

	"golang.org/x/sys/unix"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as upstream's main: --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as upstream's main
	_ "k8s.io/component-base/metrics/prometheus/version"  // as upstream's main
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const (
	adminUser   = "kube-testenv-admin"
	serviceCIDR = "10.0.0.0/24"
	serviceIP   = "10.0.0.1" // first address of serviceCIDR: the `kubernetes` Service
	saIssuer    = "https://kubernetes.default.svc.cluster.local"
)

// parentDeathSignal is what the kernel sends us when the thread that started us exits
// (PR_SET_PDEATHSIG). It is not SIGTERM on purpose: the signal is tied to the parent *thread*,
// so a Rust test harness that spawns us from a test thread and keeps us for later tests would
// otherwise lose the server when that thread ends. On this signal we stop only if our parent
// process is really gone (getppid changed).
const parentDeathSignal = syscall.SIGUSR2

var (
	originalPPID = os.Getppid()
	sigs         = make(chan os.Signal, 4)
)

func init() {
	// Catch the signal before asking for it: its default action would kill us without clean-up.
	signal.Notify(sigs, parentDeathSignal)
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(parentDeathSignal), 0, 0, 0)
}

type saFlag []string

func (s *saFlag) String() string     { return strings.Join(*s, ",") }
func (s *saFlag) Set(v string) error { *s = append(*s, v); return nil }

type serviceAccount struct{ key, namespace, name string }

type stopReason struct {
	msg    string
	signal bool // SIGTERM, SIGINT or SIGHUP
}

type env struct {
	dir     string
	ownDir  bool     // we created dir: remove it whole
	created []string // paths we created inside a pre-existing dir
	keep    bool
	msg     io.Writer // the original stderr, for our own messages
	logPath string
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.msg, "kube-testenv: "+format+"\n", args...)
}

func main() {
	name := filepath.Base(os.Args[0])
	if name == "kube-apiserver" || (len(os.Args) > 1 && (os.Args[1] == "apiserver" || os.Args[1] == "kube-apiserver")) {
		if name != "kube-apiserver" {
			os.Args = append([]string{"kube-apiserver"}, os.Args[2:]...)
		}
		// Plain upstream command: it handles SIGTERM itself.
		signal.Reset(parentDeathSignal)
		_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0)
		os.Exit(cli.Run(app.NewAPIServerCommand()))
	}
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println(version.Get().GitVersion)
		return
	}
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	fl := flag.NewFlagSet("kube-testenv", flag.ContinueOnError)
	dir := fl.String("dir", "", "output directory for kubeconfigs, certificates, etcd data and the log (default: a new temp dir)")
	keep := fl.Bool("keep", false, "keep the files on exit")
	port := fl.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0: a free port)")
	verbosity := fl.Int("v", 0, "kube-apiserver log verbosity (klog -v)")
	logFile := fl.String("log-file", "", "log file for kube-apiserver and etcd (default <dir>/kube-testenv.log; '-' for stderr)")
	watchStdin := fl.Bool("watch-stdin", true, "exit when stdin reaches EOF (turn off when stdin is /dev/null)")
	startTimeout := fl.Duration("start-timeout", 120*time.Second, "give up if not ready within this time")
	stopTimeout := fl.Duration("stop-timeout", 10*time.Second, "wait at most this long for kube-apiserver to stop gracefully")
	var sas saFlag
	fl.Var(&sas, "sa", "KEY=NAMESPACE/NAME: a static token for user system:serviceaccount:NAMESPACE:NAME, written to <dir>/KEY.kubeconfig (repeatable; default controller=edgebind-system/edgebind-controller and gateway=edgebind-system/edgebind-gateway)")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "usage: kube-testenv [flags] [-- extra kube-apiserver flags]\n       kube-testenv apiserver [kube-apiserver flags]\n       kube-testenv version\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	extraArgs := fl.Args()
	if len(sas) == 0 {
		sas = saFlag{"controller=edgebind-system/edgebind-controller", "gateway=edgebind-system/edgebind-gateway"}
	}
	var accounts []serviceAccount
	seen := map[string]bool{}
	for _, v := range sas {
		key, rest, ok1 := strings.Cut(v, "=")
		ns, name, ok2 := strings.Cut(rest, "/")
		if !ok1 || !ok2 || !validKey(key) || ns == "" || name == "" || seen[key] {
			fmt.Fprintf(os.Stderr, "kube-testenv: bad --sa %q (want KEY=NAMESPACE/NAME, KEY of [a-z0-9_-], unique, not a reserved JSON field)\n", v)
			return 2
		}
		seen[key] = true
		accounts = append(accounts, serviceAccount{key, ns, name})
	}

	e := &env{keep: *keep, msg: os.Stderr}
	if err := e.setupDir(*dir); err != nil {
		e.logf("%v", err)
		return 1
	}
	jsonOut, err := e.redirectLogs(*logFile)
	if err != nil {
		e.logf("%v", err)
		e.cleanup()
		return 1
	}

	// Every reason to stop ends up here; the first one wins. During the shutdown a further signal
	// (not stdin EOF or parent death: those two come together when the parent dies) means "now".
	stop := make(chan stopReason, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			if s == parentDeathSignal {
				if os.Getppid() == originalPPID {
					// Only the thread that spawned us ended; the parent process is alive.
					fmt.Fprintln(os.Stderr, "kube-testenv: parent thread exited, parent process alive: going on")
					continue
				}
				stop <- stopReason{msg: "parent process died"}
				continue
			}
			stop <- stopReason{msg: "signal " + s.String(), signal: true}
		}
	}()
	if os.Getppid() != originalPPID {
		stop <- stopReason{msg: "parent process died"}
	}
	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop <- stopReason{msg: "stdin closed"}
		}()
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code, reason := e.serve(ctx, cancel, stop, jsonOut, accounts, *port, *verbosity, *startTimeout, *stopTimeout, extraArgs)
	e.logf("stopped (%s)", reason)
	e.cleanup()
	return code
}

// validKey: a --sa KEY becomes a file name and a JSON field next to the fixed ones.
func validKey(k string) bool {
	switch k {
	case "", "admin", "admin_cert", "server", "dir", "ca", "ca_key", "etcd", "pid", "version", "log", "startup_ms":
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// serve starts etcd and kube-apiserver, announces readiness, waits for a stop reason and shuts
// both down. It returns the exit code and the reason for stopping.
func (e *env) serve(ctx context.Context, cancel context.CancelFunc, stop chan stopReason, jsonOut io.Writer,
	accounts []serviceAccount, port, verbosity int, startTimeout, stopTimeout time.Duration, extraArgs []string) (int, string) {
	started := time.Now()

	p, err := e.makePKI()
	if err != nil {
		return 1, "certificates: " + err.Error()
	}
	adminToken := randomToken()
	tokens := map[string]string{}
	var csv strings.Builder
	fmt.Fprintf(&csv, "%s,%s,%s,\"system:masters,system:authenticated\"\n", adminToken, adminUser, randomUID())
	for _, a := range accounts {
		t := randomToken()
		tokens[a.key] = t
		fmt.Fprintf(&csv, "%s,system:serviceaccount:%s:%s,%s,\"system:serviceaccounts,system:serviceaccounts:%s,system:authenticated\"\n",
			t, a.namespace, a.name, randomUID(), a.namespace)
	}
	tokenFile, err := e.writeFile("tokens.csv", []byte(csv.String()), 0o600)
	if err != nil {
		return 1, err.Error()
	}

	etcdDir := filepath.Join(e.dir, "etcd")
	certDir := filepath.Join(e.dir, "certs")
	for _, d := range []string{etcdDir, certDir} {
		_ = os.RemoveAll(d) // always a fresh cluster, even in a --dir kept from an earlier run
		if err := os.MkdirAll(d, 0o700); err != nil {
			return 1, err.Error()
		}
		e.created = append(e.created, d)
	}
	etcdLevel := "warn"
	if verbosity >= 2 {
		etcdLevel = "info"
	}
	etcd, etcdURL, err := startEtcd(etcdDir, etcdLevel)
	if err != nil {
		e.tailLog()
		return 1, err.Error()
	}
	// hurry is closed when a second signal arrives during the shutdown: stop waiting.
	hurry := make(chan struct{})
	stopEtcd := func() {
		done := make(chan struct{})
		go func() { etcd.Close(); close(done) }()
		select {
		case <-done:
		case <-hurry:
		case <-time.After(5 * time.Second):
			e.logf("etcd did not stop within 5s")
		}
	}

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		stopEtcd()
		return 1, "listen: " + err.Error()
	}
	apiPort := ln.Addr().(*net.TCPAddr).Port
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + certDir,
		"--tls-cert-file=" + p.servingCertFile,
		"--tls-private-key-file=" + p.servingKeyFile,
		"--client-ca-file=" + p.caFile,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + saIssuer,
		"--service-account-key-file=" + p.saPubFile,
		"--service-account-signing-key-file=" + p.saKeyFile,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--profiling=false",
		// The lease reconciler would write 127.0.0.1 into the `kubernetes` Endpoints, which
		// validation rejects (loopback), and log that error every 10s. Nothing routes to it anyway.
		"--endpoint-reconciler-type=none",
		"--v=" + strconv.Itoa(verbosity),
	}
	args = append(args, extraArgs...)
	apiDone, err := startAPIServer(ctx, args, ln)
	if err != nil { // bad flags or options: the error says it all, the log would not help
		ln.Close()
		stopEtcd()
		return 1, "kube-apiserver: " + err.Error()
	}

	// Shut down in order: kube-apiserver first, then etcd.
	shutdown := func() {
		go func() {
			for r := range stop {
				if r.signal {
					e.logf("%s while stopping: not waiting any longer", r.msg)
					close(hurry)
					return
				}
			}
		}()
		cancel()
		select {
		case err := <-apiDone:
			if err != nil {
				e.logf("kube-apiserver stopped with: %v", err)
			}
		case <-time.After(stopTimeout):
			e.logf("kube-apiserver did not stop within %s; going on", stopTimeout)
		case <-hurry:
			klog.Flush()
			return
		}
		stopEtcd()
		klog.Flush()
	}

	readyCtx, readyCancel := context.WithTimeout(ctx, startTimeout)
	readyErr := make(chan error, 1)
	go func() { readyErr <- waitReady(readyCtx, server, p.caPEM, adminToken) }()
	select {
	case err := <-readyErr:
		readyCancel()
		if err != nil {
			shutdown()
			e.tailLog()
			return 1, "not ready: " + err.Error()
		}
	case err := <-apiDone:
		readyCancel()
		cancel()
		stopEtcd()
		e.tailLog()
		return 1, fmt.Sprintf("kube-apiserver exited while starting: %v", err)
	case err := <-etcd.Err():
		readyCancel()
		shutdown()
		return 1, fmt.Sprintf("etcd failed: %v", err)
	case r := <-stop:
		readyCancel()
		shutdown()
		return 0, r.msg + " (before ready)"
	}

	out := map[string]any{
		"server":  server,
		"dir":     e.dir,
		"ca":      p.caFile,
		"ca_key":  p.caKeyFile,
		"etcd":    etcdURL,
		"pid":     os.Getpid(),
		"version": version.Get().GitVersion,
	}
	if e.logPath != "" {
		out["log"] = e.logPath
	}
	write := func(key string, user string, auth *clientcmdapi.AuthInfo, ns string) error {
		path, err := e.writeKubeconfig(key+".kubeconfig", server, p.caPEM, user, auth, ns)
		if err == nil {
			out[key] = path
		}
		return err
	}
	err = write("admin", adminUser, &clientcmdapi.AuthInfo{Token: adminToken}, "default")
	if err == nil {
		err = write("admin_cert", adminUser, &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM}, "default")
	}
	for _, a := range accounts {
		if err != nil {
			break
		}
		err = write(a.key, fmt.Sprintf("system:serviceaccount:%s:%s", a.namespace, a.name), &clientcmdapi.AuthInfo{Token: tokens[a.key]}, a.namespace)
	}
	if err != nil {
		shutdown()
		return 1, "kubeconfig: " + err.Error()
	}
	out["startup_ms"] = processAgeMs(started)
	line, _ := json.Marshal(out)
	if _, err := jsonOut.Write(append(line, '\n')); err != nil {
		shutdown()
		return 1, "stdout: " + err.Error()
	}
	e.logf("ready at %s in %d ms (dir %s)", server, out["startup_ms"], e.dir)

	var reason string
	code := 0
	select {
	case r := <-stop:
		reason = r.msg
	case err := <-apiDone:
		reason, code = fmt.Sprintf("kube-apiserver exited: %v", err), 1
		cancel()
		stopEtcd()
		e.tailLog()
		return code, reason
	case err := <-etcd.Err():
		reason, code = fmt.Sprintf("etcd failed: %v", err), 1
	}
	shutdown()
	return code, reason
}

// waitReady polls /readyz until it answers 200, then waits for the `default` namespace (the
// apiserver creates it in a post-start hook; StartTestServer waits for it the same way).
func waitReady(ctx context.Context, server string, caPEM []byte, token string) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: false},
	}
	var last string
	get := func(path string) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return true
		}
		last = fmt.Sprintf("%s: %d %s", path, resp.StatusCode, bytes.TrimSpace(body))
		return false
	}
	for _, path := range []string{"/readyz", "/api/v1/namespaces/default"} {
		for !get(path) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last: %s)", ctx.Err(), last)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func (e *env) writeKubeconfig(name, server string, caPEM []byte, user string, auth *clientcmdapi.AuthInfo, ns string) (string, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kube-testenv"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = auth
	cfg.Contexts["kube-testenv"] = &clientcmdapi.Context{Cluster: "kube-testenv", AuthInfo: user, Namespace: ns}
	cfg.CurrentContext = "kube-testenv"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return "", err
	}
	return e.writeFile(name, data, 0o600)
}

func (e *env) setupDir(dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "kube-testenv-")
		if err != nil {
			return err
		}
		e.dir, e.ownDir = d, true
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
		e.ownDir = true
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return err
	}
	e.dir = abs
	return nil
}

// redirectLogs points fds 1 and 2 at the log file (or fd 1 at stderr with --log-file=-), so that
// nothing kube-apiserver, etcd or a panic writes can end up in the JSON line's stdout. It returns
// a writer on the original stdout, and sets e.msg to the original stderr.
func (e *env) redirectLogs(logFile string) (io.Writer, error) {
	outFd, err := unix.Dup(1)
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(outFd)
	jsonOut := os.NewFile(uintptr(outFd), "stdout")
	if logFile == "-" {
		return jsonOut, unix.Dup3(2, 1, 0)
	}
	if logFile == "" {
		logFile = filepath.Join(e.dir, "kube-testenv.log")
	}
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if filepath.Dir(logFile) == e.dir {
		e.created = append(e.created, logFile)
	}
	errFd, err := unix.Dup(2)
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(errFd)
	e.msg = os.NewFile(uintptr(errFd), "stderr")
	e.logPath = logFile
	if err := unix.Dup3(int(f.Fd()), 1, 0); err != nil {
		return nil, err
	}
	if err := unix.Dup3(int(f.Fd()), 2, 0); err != nil {
		return nil, err
	}
	f.Close()
	return jsonOut, nil
}

// tailLog copies the last lines of the log file to the original stderr, for failures.
func (e *env) tailLog() {
	if e.logPath == "" {
		return
	}
	klog.Flush()
	f, err := os.Open(e.logPath)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 60 {
			lines = lines[1:]
		}
	}
	e.logf("last lines of %s:", e.logPath)
	for _, l := range lines {
		fmt.Fprintln(e.msg, "  "+l)
	}
}

func (e *env) cleanup() {
	if e.keep || e.dir == "" {
		if e.dir != "" {
			e.logf("kept %s", e.dir)
		}
		return
	}
	if e.ownDir {
		if err := os.RemoveAll(e.dir); err != nil {
			e.logf("remove %s: %v", e.dir, err)
		}
		return
	}
	for i := len(e.created) - 1; i >= 0; i-- {
		_ = os.RemoveAll(e.created[i])
	}
}

// processAgeMs is the time since this process was exec'd (so it includes the Go runtime and
// package initialisation), from /proc; it falls back to the time since `since`.
func processAgeMs(since time.Time) int64 {
	stat, err1 := os.ReadFile("/proc/self/stat")
	up, err2 := os.ReadFile("/proc/uptime")
	if err1 == nil && err2 == nil {
		// Field 22 (starttime, clock ticks since boot) comes after the ")" that ends comm.
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			u := strings.Fields(string(up))
			if len(f) > 19 && len(u) > 0 {
				ticks, e1 := strconv.ParseInt(f[19], 10, 64)
				upSec, e2 := strconv.ParseFloat(u[0], 64)
				if e1 == nil && e2 == nil {
					const clkTck = 100 // USER_HZ on Linux
					if ms := int64(upSec*1000) - ticks*1000/clkTck; ms > 0 {
						return ms
					}
				}
			}
		}
	}
	return time.Since(since).Milliseconds()
}
