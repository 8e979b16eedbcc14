package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// startEtcd runs a single-member etcd in this process, the way k8s.io/apiserver's own
// pkg/storage/etcd3/testserver does: data in dataDir, fsync off, loopback only, on free ports
// picked just before (embed cannot take ready listeners; with port 0 etcd would work but would
// advertise and dial ":0" internally). A lost race for a port is retried with new ports.
func startEtcd(dataDir, logLevel string) (e *embed.Etcd, clientURL string, err error) {
	for attempt := 0; attempt < 5; attempt++ {
		e, clientURL, err = startEtcdOnce(dataDir, logLevel)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			return e, clientURL, err
		}
		_ = os.RemoveAll(dataDir)
		_ = os.MkdirAll(dataDir, 0o700)
	}
	return nil, "", err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcdOnce(dataDir, logLevel string) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Name = "kube-testenv"
	cfg.Dir = dataDir
	cfg.UnsafeNoFsync = true
	cfg.Logger = "zap"
	cfg.LogOutputs = []string{"stderr"} // fd 2 is the log file unless --log-file=-
	cfg.LogLevel = logLevel
	// embed.NewConfig leaves this at 0, which makes etcd log every request as "expensive".
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	// A single member elects itself after an election timeout: 1s with the defaults (100ms
	// ticks, 1000ms election). Shorter ticks make a fresh etcd ready in ~0.1s.
	cfg.TickMs = 10
	cfg.ElectionMs = 100

	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peer, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	client, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", fmt.Errorf("etcd failed while starting: %w", err)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		e.Close()
		return nil, "", fmt.Errorf("etcd did not become ready within 60s")
	}
	return e, client.String(), nil
}
