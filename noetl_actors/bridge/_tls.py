"""A local certificate authority for an embedded server started with TLS.

`noetl server --tls` (and `EmbeddedNatsServer(tls=True)`) keep it in the
state dir, made at the first start and reused after:

    <state-dir>/tls/          mode 0700
      ca.pem                  the CA that signed the two below (what clients trust)
      ca-key.pem              its key, mode 0600: it never leaves this folder
      server.pem, server-key.pem   for 127.0.0.1 and localhost
      client.pem, client-key.pem   a client certificate for this user's commands

The server requires a client certificate signed by this CA (`verify: true`)
on top of the nkey of each user: TLS says the connection comes from a
holder of this machine's certificates, the nkey which user it is.
Certificates last ten years; delete the folder to make new ones.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import attrs

from noetl_actors.bridge._auth import private_dir, write_private

__all__ = ["TlsFiles", "ensure_local_ca"]

VALID_FOR = datetime.timedelta(days=3650)


@attrs.frozen(kw_only=True)
class TlsFiles:
    """The files of a local CA (see the module's docstring)."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "client-key.pem"

    def complete(self) -> bool:
        return all(path.is_file() for path in (
            self.ca, self.folder / "ca-key.pem", self.server_cert, self.server_key,
            self.client_cert, self.client_key))


def ensure_local_ca(state_dir: Path) -> TlsFiles:
    """The CA and certificates of `state_dir`, made if any is missing."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    files = TlsFiles(folder=private_dir(Path(state_dir) / "tls"))
    if files.complete():
        return files
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "noetl-actors"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"noetl-actors local CA ({state_dir})"[:64])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + VALID_FOR)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(common: str, usage: x509.ObjectIdentifier, *, san: bool
             ) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(common))
                   .issuer_name(ca_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + VALID_FOR)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)

    server_cert, server_key = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, san=True)
    client_cert, client_key = leaf("noetl client", ExtendedKeyUsageOID.CLIENT_AUTH, san=False)
    write_private(files.folder / "ca-key.pem", pem_key(ca_key))
    write_private(files.server_key, server_key)
    write_private(files.client_key, client_key)
    write_private(files.server_cert, server_cert)
    write_private(files.client_cert, client_cert)
    write_private(files.ca, ca.public_bytes(serialization.Encoding.PEM))
    return files
