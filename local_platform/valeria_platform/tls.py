"""A throwaway certificate authority and server certificates for services on loopback.

Used wherever a local service must speak HTTPS the way production does (Ceph RGW, and any other
service that wants it): clients are given ``ca_cert`` as their CA bundle, so TLS is verified, never
switched off.

    ca = LocalCA.create(directory)
    tls = ca.issue(directory, "rgw", hosts=("127.0.0.1", "localhost"))
    tls.cert, tls.key, tls.chain  # PEM files; ca.cert is the bundle to trust

Keys are EC P-256 (fast to generate); files holding private keys are written mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_LIFETIME = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate small clock differences between processes


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class ServerTLS:
    """PEM files of one server certificate."""

    cert: Path  # the server certificate alone
    key: Path  # its private key (0600)
    chain: Path  # certificate followed by the CA certificate
    combined: Path  # certificate, CA certificate and key in one file (what some servers want)
    ca_cert: Path  # the CA bundle clients must trust


def _certificate(subject: x509.Name, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
    """What every certificate made here shares: names, key, a random serial and the validity."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
    )


@dataclass(frozen=True)
class LocalCA:
    """A self-signed CA whose key lives next to its certificate (throwaway: tests and demo only)."""

    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: str | os.PathLike[str], name: str = "Valeria local CA") -> LocalCA:
        directory = Path(directory)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            _certificate(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca = cls(cert=directory / "ca.pem", key=directory / "ca-key.pem")
        _write(ca.key, _key_pem(key), private=True)
        _write(ca.cert, cert.public_bytes(serialization.Encoding.PEM))
        return ca

    def issue(
        self,
        directory: str | os.PathLike[str],
        name: str,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ) -> ServerTLS:
        """A server certificate for ``hosts`` (IP addresses or DNS names), signed by this CA."""
        directory = Path(directory)
        ca_key = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError("the local CA key must be an EC key")
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else name)])
        cert = (
            _certificate(subject, ca_cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        ca_pem = self.cert.read_bytes()
        key_pem = _key_pem(key)
        tls = ServerTLS(
            cert=directory / f"{name}.pem",
            key=directory / f"{name}-key.pem",
            chain=directory / f"{name}-chain.pem",
            combined=directory / f"{name}-combined.pem",
            ca_cert=self.cert,
        )
        _write(tls.cert, cert_pem)
        _write(tls.key, key_pem, private=True)
        _write(tls.chain, cert_pem + ca_pem)
        _write(tls.combined, cert_pem + ca_pem + key_pem, private=True)
        return tls


def make_server_tls(
    directory: str | os.PathLike[str], name: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> ServerTLS:
    """A fresh CA and one server certificate from it, in ``directory``: the one-call form."""
    return LocalCA.create(directory).issue(directory, name, hosts)
