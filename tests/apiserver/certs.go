package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds everything the control plane and its clients need. All keys are ECDSA P-256:
// generating them is instant (an RSA key costs tens of milliseconds each).
type pki struct {
	caCert    *x509.Certificate
	caKey     crypto.Signer
	caPEM     []byte
	caFile    string
	caKeyFile string

	servingCertFile, servingKeyFile string
	adminCertFile, adminKeyFile     string
	adminCertPEM, adminKeyPEM       []byte
	saPubFile, saKeyFile            string
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeFile writes data with the given mode and records the path for clean-up.
func (e *env) writeFile(name string, data []byte, mode os.FileMode) (string, error) {
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		return "", err
	}
	e.created = append(e.created, p)
	return p, nil
}

// makePKI creates a CA, a serving certificate for 127.0.0.1/localhost (and the in-cluster names of
// the kubernetes Service), an admin client certificate (O=system:masters) and the service-account
// signing key pair.
func (e *env) makePKI() (*pki, error) {
	p := &pki{}
	now := time.Now().Add(-time.Hour) // tolerate small clock skew
	until := now.Add(10 * 365 * 24 * time.Hour)

	caKey, err := newKey()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kube-testenv-ca"},
		NotBefore:             now,
		NotAfter:              until,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	p.caCert, _ = x509.ParseCertificate(caDER)
	p.caKey = caKey
	p.caPEM = certPEM(caDER)
	if p.caFile, err = e.writeFile("ca.crt", p.caPEM, 0o644); err != nil {
		return nil, err
	}
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return nil, err
	}
	// The CA key is kept so a test can sign more certificates (webhook serving certs) the
	// apiserver trusts as a client CA. It is a throwaway key for one loopback run.
	if p.caKeyFile, err = e.writeFile("ca.key", caKeyPEM, 0o600); err != nil {
		return nil, err
	}

	issue := func(name string, tmpl *x509.Certificate) (certPath, keyPath string, certBytes, keyBytes []byte, err error) {
		k, err := newKey()
		if err != nil {
			return
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore, tmpl.NotAfter = now, until
		tmpl.BasicConstraintsValid = true
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, k.Public(), caKey)
		if err != nil {
			return
		}
		certBytes = certPEM(der)
		if keyBytes, err = keyPEM(k); err != nil {
			return
		}
		if certPath, err = e.writeFile(name+".crt", certBytes, 0o644); err != nil {
			return
		}
		keyPath, err = e.writeFile(name+".key", keyBytes, 0o600)
		return
	}

	p.servingCertFile, p.servingKeyFile, _, _, err = issue("apiserver", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback, net.ParseIP(serviceIP)},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
	})
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}

	p.adminCertFile, p.adminKeyFile, p.adminCertPEM, p.adminKeyPEM, err = issue("admin", &x509.Certificate{
		Subject:     pkix.Name{CommonName: adminUser, Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("admin certificate: %w", err)
	}

	saKey, err := newKey()
	if err != nil {
		return nil, err
	}
	saKeyPEM, err := keyPEM(saKey)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	if p.saKeyFile, err = e.writeFile("sa.key", saKeyPEM, 0o600); err != nil {
		return nil, err
	}
	if p.saPubFile, err = e.writeFile("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// randomToken returns 32 random bytes, URL-safe base64 without padding (no commas, no quotes:
// safe in the CSV token file).
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomUID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
