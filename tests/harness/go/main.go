// Command harness is the pcidevices test cluster in one binary: an embedded etcd, the real
// kube-apiserver, kube-controller-manager, kube-scheduler and kubectl of one pinned Kubernetes
// release, kubelet's DRA plugin client, and a small PKI helper. One multi-call binary links the shared Kubernetes code once instead of four
// times, which roughly quarters the cold build on a small machine.
//
// Built with the tag "demo" it holds etcd, kube-apiserver and the PKI helper only (full.go adds
// the controller manager, the scheduler, kubectl and kubelet-dra): what `scripts/demo` needs, in less build time.
//
//	harness etcd --data-dir DIR --client-port N --peer-port N
//	harness apiserver  <kube-apiserver flags>
//	harness controller-manager <kube-controller-manager flags>   (not in the demo build)
//	harness scheduler <kube-scheduler flags>                     (not in the demo build)
//	harness kubectl <kubectl args>                               (not in the demo build)
//	harness kubelet-dra prepare|unprepare ...                    (not in the demo build)
//	harness pki init DIR
//	harness pki client DIR NAME OUT_PREFIX [GROUP...]
//	harness pki serving DIR OUT_PREFIX HOST...
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
	_ "time/tzdata" // for CronJob time-zone support, as in the upstream mains

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// commands are the upstream programs linked into this binary, by sub-command; each returns its
// exit code. full.go adds the ones that only the tests need.
var commands = map[string]func() int{
	"apiserver": func() int { return cli.Run(apiserver.NewAPIServerCommand()) },
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: harness etcd|apiserver|controller-manager|scheduler|kubectl|kubelet-dra|pki ...")
	fmt.Fprintln(os.Stderr, "(a binary built with the tag \"demo\" has no controller-manager, scheduler, kubectl or kubelet-dra)")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	sub := os.Args[1]
	// Each upstream command reads os.Args itself (cobra, kubectl plugins): present it the
	// arguments as if it were its own binary.
	os.Args = append([]string{"harness-" + sub}, os.Args[2:]...)
	if run, ok := commands[sub]; ok {
		os.Exit(run())
	}
	switch sub {
	case "etcd":
		runEtcd()
	case "pki":
		runPKI(os.Args[1:])
	case "version":
		fmt.Println("harness")
	default:
		usage()
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "harness: "+format+"\n", args...)
	os.Exit(1)
}

// runEtcd serves a single-member etcd on loopback until SIGTERM or SIGINT.
func runEtcd() {
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	dataDir := fs.String("data-dir", "", "data directory")
	clientPort := fs.Int("client-port", 0, "client port on 127.0.0.1")
	peerPort := fs.Int("peer-port", 0, "peer port on 127.0.0.1")
	_ = fs.Parse(os.Args[1:])
	if *dataDir == "" || *clientPort == 0 || *peerPort == 0 {
		fatal("etcd needs --data-dir, --client-port and --peer-port")
	}
	cfg := embed.NewConfig()
	cfg.Name = "harness"
	cfg.Dir = *dataDir
	cfg.LogLevel = "warn"
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *clientPort)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *peerPort)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Test data is disposable: skip fsync so the tests do not wait on the disk.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fatal("etcd: %v", err)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "etcd ready on %s\n", client.String())
	case <-time.After(60 * time.Second):
		e.Close()
		fatal("etcd did not become ready within 60s")
	}
	select {
	case err := <-e.Err():
		e.Close()
		fatal("etcd: %v", err)
	case <-signals:
		e.Close()
	}
}

// runPKI writes the certificates the cluster needs.
//
//	pki init DIR: ca.{crt,key}, serving.{crt,key} (127.0.0.1, localhost), sa.{key,pub},
//	    admin.{crt,key} (CN admin, O system:masters)
//	pki client DIR NAME OUT_PREFIX [GROUP...]: OUT_PREFIX.{crt,key} signed by DIR/ca
//	pki serving DIR OUT_PREFIX HOST...: a server cert for IPs and DNS names (webhooks)
func runPKI(args []string) {
	if len(args) >= 2 && args[0] == "init" {
		pkiInit(args[1])
		return
	}
	if len(args) >= 4 && args[0] == "client" {
		ca, caKey := loadCA(args[1])
		writeLeaf(ca, caKey, args[3], args[2], args[4:], []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
		return
	}
	if len(args) >= 4 && args[0] == "serving" {
		ca, caKey := loadCA(args[1])
		var ips []net.IP
		var names []string
		for _, host := range args[3:] {
			if ip := net.ParseIP(host); ip != nil {
				ips = append(ips, ip)
			} else {
				names = append(names, host)
			}
		}
		writeLeaf(ca, caKey, args[2], args[3], nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, ips, names)
		return
	}
	fatal("usage: pki init DIR | pki client DIR NAME OUT_PREFIX [GROUP...] | pki serving DIR OUT_PREFIX HOST...")
}

func newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fatal("key: %v", err)
	}
	return key
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		fatal("serial: %v", err)
	}
	return n
}

func writePEM(path, kind string, der []byte) {
	data := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		fatal("write %s: %v", path, err)
	}
}

func writeKey(path string, key any) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		fatal("marshal key: %v", err)
	}
	writePEM(path, "PRIVATE KEY", der)
}

func pkiInit(dir string) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fatal("mkdir %s: %v", dir, err)
	}
	caKey := newKey()
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "pcidevices-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		fatal("ca: %v", err)
	}
	writePEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE", der)
	writeKey(filepath.Join(dir, "ca.key"), caKey)
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		fatal("ca: %v", err)
	}
	writeLeaf(ca, caKey, filepath.Join(dir, "serving"), "kube-apiserver", nil,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		[]net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"})
	writeLeaf(ca, caKey, filepath.Join(dir, "admin"), "admin", []string{"system:masters"},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
	// Service-account tokens are signed with RSA, which every consumer accepts.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		fatal("sa key: %v", err)
	}
	writeKey(filepath.Join(dir, "sa.key"), saKey)
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		fatal("sa pub: %v", err)
	}
	writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pub)
}

func loadCA(dir string) (*x509.Certificate, any) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		fatal("read ca: %v", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		fatal("read ca key: %v", err)
	}
	certBlock, _ := pem.Decode(certPEM)
	keyBlock, _ := pem.Decode(keyPEM)
	if certBlock == nil || keyBlock == nil {
		fatal("ca files in %s are not PEM", dir)
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		fatal("parse ca: %v", err)
	}
	key, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		fatal("parse ca key: %v", err)
	}
	return cert, key
}

func writeLeaf(ca *x509.Certificate, caKey any, prefix, cn string, groups []string,
	usage []x509.ExtKeyUsage, ips []net.IP, dns []string) {
	key := newKey()
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: groups},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usage,
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		fatal("cert %s: %v", cn, err)
	}
	writePEM(prefix+".crt", "CERTIFICATE", der)
	writeKey(prefix+".key", key)
}
