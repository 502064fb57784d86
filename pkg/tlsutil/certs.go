package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// DefaultDomain is the domain of server names, as Consul's.
const DefaultDomain = "consul"

// ServerName is the name every server's certificate carries and every
// server checks in its peers': server.<dc>.<domain>.
func ServerName(dc, domain string) string {
	if domain == "" {
		domain = DefaultDomain
	}
	return "server." + dc + "." + domain
}

// CAOptions shape a new CA.
type CAOptions struct {
	Days       int    // validity, default 1825 (five years, as consul tls)
	CommonName string // default "Kvx Agent CA <serial>"
	// NameConstraint limits the CA to the domain (and localhost), as
	// consul tls ca create -name-constraint.
	NameConstraint bool
	Domain         string // default "consul"
}

// NewCA makes a self-signed CA: its certificate and key, PEM-encoded.
func NewCA(o CAOptions) (certPEM, keyPEM []byte, err error) {
	if o.Days == 0 {
		o.Days = 1825
	}
	if o.Days < 0 {
		return nil, nil, fmt.Errorf("-days %d: must be positive", o.Days)
	}
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	if o.CommonName == "" {
		o.CommonName = "Kvx Agent CA " + serial.String()
	}
	id, err := keyID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.CommonName, Organization: []string{"kvx"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(0, 0, o.Days),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          id,
		AuthorityKeyId:        id,
	}
	if o.NameConstraint {
		tmpl.PermittedDNSDomainsCritical = true
		tmpl.PermittedDNSDomains = []string{o.Domain, "localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// CertOptions shape a certificate signed by a CA.
type CertOptions struct {
	CACert, CAKey []byte // PEM
	Name          string // common name, also the first DNS name
	DNSNames      []string
	IPAddresses   []net.IP
	Days          int // default 365
}

// NewCert makes a certificate for servers and clients alike (server and
// client auth, as consul tls makes both), signed by the CA.
func NewCert(o CertOptions) (certPEM, keyPEM []byte, err error) {
	if o.Days == 0 {
		o.Days = 365
	}
	if o.Days < 0 {
		return nil, nil, fmt.Errorf("-days %d: must be positive", o.Days)
	}
	ca, caKey, err := ParseCA(o.CACert, o.CAKey)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	id, err := keyID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.Name},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(0, 0, o.Days),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              o.DNSNames,
		IPAddresses:           o.IPAddresses,
		SubjectKeyId:          id,
		AuthorityKeyId:        ca.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// ParseCA reads a CA certificate and its key (PEM), and checks they match.
func ParseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("CA certificate: not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("CA key: no PEM block")
	}
	var signer crypto.Signer
	switch kb.Type {
	case "EC PRIVATE KEY":
		signer, err = x509.ParseECPrivateKey(kb.Bytes)
	case "PRIVATE KEY":
		var k any
		if k, err = x509.ParsePKCS8PrivateKey(kb.Bytes); err == nil {
			var ok bool
			if signer, ok = k.(crypto.Signer); !ok {
				err = errors.New("not a signing key")
			}
		}
	case "RSA PRIVATE KEY":
		signer, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		err = fmt.Errorf("unknown PEM block %q", kb.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(ca.PublicKey) {
		return nil, nil, errors.New("CA key does not match the CA certificate")
	}
	return ca, signer, nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func keyID(pub crypto.PublicKey) ([]byte, error) {
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return sum[:20], nil
}
