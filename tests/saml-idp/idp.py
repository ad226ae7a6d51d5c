#!/usr/bin/env python3
"""A real SAML 2.0 identity provider for Latchkey's tests, built on pysaml2 (PyPI) and xmlsec1.

Run:  python idp.py --config CONFIG.json
It prints one line ``READY http://127.0.0.1:PORT`` on stdout once it listens, then serves until
killed (SIGTERM/SIGINT) or until ``POST /control/shutdown``.  See README.md for the configuration
schema and every endpoint.

pysaml2 does the SAML work: metadata parsing (MetadataStore), message classes, XML signing and
verification, encryption (both through the xmlsec1 binary).  This file adds what a test IdP needs
on top: a login form, per-test switches (which parts are signed, encrypted, the signature
algorithm, the NameID format, attribute names), key rollover, single logout both ways, and a log
of every message received so tests can assert on what the service provider sent.

The HTTP-Redirect binding signatures are verified here over the raw query string as received
(SAML Bindings 3.4.4.1), not over a re-encoding, so an SP that percent-encodes differently from
Python is not falsely refused.
"""

import argparse
import base64
import copy
import datetime
import hashlib
import html
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import logging
import warnings

if not os.environ.get("IDP_VERBOSE"):
    logging.getLogger("saml2").setLevel(logging.CRITICAL)
warnings.filterwarnings("ignore", category=DeprecationWarning)
try:  # pysaml2 imports a cipher mode that newer cryptography releases flag as moved.
    from cryptography.utils import CryptographyDeprecationWarning

    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
except ImportError:  # pragma: no cover
    pass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp
from saml2.config import IdPConfig
from saml2.s_utils import success_status_factory
from saml2.server import Server
from saml2.sigver import (
    pre_encrypt_assertion,
    pre_encryption_part,
    pre_signature_part,
    signed_instance_factory,
)
from saml2.time_util import instant
from saml2.xml.schema import validate as validate_schema

NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"

NAMEID_FORMATS = {
    "emailAddress": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "persistent": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "transient": "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
    "unspecified": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
}

SIGN_ALGS = {
    "rsa-sha1": ("http://www.w3.org/2000/09/xmldsig#rsa-sha1", "sha1"),
    "rsa-sha256": ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "sha256"),
    "rsa-sha384": ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha384", "sha384"),
    "rsa-sha512": ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", "sha512"),
}
DIGEST_ALGS = {
    "sha1": "http://www.w3.org/2000/09/xmldsig#sha1",
    "sha256": "http://www.w3.org/2001/04/xmlenc#sha256",
    "sha384": "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "sha512": "http://www.w3.org/2001/04/xmlenc#sha512",
}
# Redirect-binding SigAlg URIs this IdP can verify (what an SP may send).
VERIFY_SIG_ALGS = {
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": ("rsa", hashes.SHA1),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": ("rsa", hashes.SHA256),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": ("rsa", hashes.SHA384),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": ("rsa", hashes.SHA512),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": ("ec", hashes.SHA256),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": ("ec", hashes.SHA384),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": ("ec", hashes.SHA512),
}
# name -> (EncryptedData algorithm URI, xmlsec1 --session-key type)
ENCRYPTION_ALGS = {
    "aes128-cbc": ("http://www.w3.org/2001/04/xmlenc#aes128-cbc", "aes-128"),
    "aes256-cbc": ("http://www.w3.org/2001/04/xmlenc#aes256-cbc", "aes-256"),
    "aes128-gcm": ("http://www.w3.org/2009/xmlenc11#aes128-gcm", "aes-128"),
    "aes256-gcm": ("http://www.w3.org/2009/xmlenc11#aes256-gcm", "aes-256"),
}
KEY_TRANSPORTS = {
    "rsa-oaep-mgf1p": "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    "rsa-1_5": "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
}

ATTR_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
ATTR_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
ATTR_UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"
# Logical attribute -> (Name, FriendlyName) per profile, and the profile's NameFormat (None: omitted).
ATTRIBUTE_PROFILES = {
    "oid": (
        ATTR_URI,
        {
            "email": ("urn:oid:0.9.2342.19200300.100.1.3", "mail"),
            "givenName": ("urn:oid:2.5.4.42", "givenName"),
            "sn": ("urn:oid:2.5.4.4", "sn"),
            "displayName": ("urn:oid:2.16.840.1.113730.3.1.241", "displayName"),
            "groups": ("urn:oid:1.3.6.1.4.1.5923.1.5.1.1", "isMemberOf"),
        },
    ),
    "basic": (ATTR_BASIC, {}),
    "okta": (
        ATTR_UNSPECIFIED,
        {
            "email": ("email", None),
            "givenName": ("firstName", None),
            "sn": ("lastName", None),
            "displayName": ("displayName", None),
            "groups": ("groups", None),
        },
    ),
    "entra": (
        None,
        {
            "email": ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", None),
            "givenName": ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname", None),
            "sn": ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname", None),
            "displayName": ("http://schemas.microsoft.com/identity/claims/displayname", None),
            "groups": ("http://schemas.microsoft.com/ws/2008/06/identity/claims/groups", None),
        },
    ),
    "google": (
        ATTR_UNSPECIFIED,
        {
            "email": ("email", None),
            "givenName": ("first_name", None),
            "sn": ("last_name", None),
            "displayName": ("display_name", None),
            "groups": ("groups", None),
        },
    ),
}

DEFAULT_CONFIG = {
    "host": "127.0.0.1",
    "port": 0,
    "base_url": None,
    "entity_id": "{base}/idp",
    "key": None,
    "cert": None,
    "next_key": None,
    "next_cert": None,
    "generated_cert_days": 365,
    "next_generated_cert_days": 365,
    "sp_metadata": [],
    "users": {},
    "response": {
        "sign_response": True,
        "sign_assertion": True,
        "encrypt_assertion": False,
        "encryption_alg": "aes256-gcm",
        "key_transport": "rsa-oaep-mgf1p",
        "name_id_format": "emailAddress",
        "sign_alg": "rsa-sha256",
        "digest_alg": None,
        "attribute_profile": "oid",
        "attribute_names": {},
        "assertion_lifetime": 300,
        "session_lifetime": 28800,
        "status": None,
        "auto_submit": True,
    },
    "metadata": {
        "sso_bindings": ["redirect", "post"],
        "slo_bindings": ["redirect", "post"],
        "want_authn_requests_signed": True,
        "include_signing_cert": True,
        "valid_days": 7,
    },
    "require_signed_authn_requests": "metadata",
    "require_signed_logout": True,
    "sso_session": False,
    "slo_response_binding": "redirect",
    "slo_request_binding": "redirect",
    "log_messages": True,
}

MAX_INFLATED = 1 << 20


class BadRequest(Exception):
    """A request this IdP refuses: answered with 400 and an error page naming the reason."""


# --------------------------------------------------------------------------- keys


def make_keypair(directory, name, common_name, days=365):
    """Writes an RSA-2048 key and a self-signed certificate; returns (key_path, cert_path)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(directory, f"{name}.key")
    cert_path = os.path.join(directory, f"{name}.crt")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def cert_body(pem_text):
    """The base64 body of a PEM certificate, on one line (what metadata carries)."""
    lines = [l.strip() for l in pem_text.strip().splitlines()]
    return "".join(l for l in lines if l and not l.startswith("-----"))


def cert_from_body(body):
    pem = "-----BEGIN CERTIFICATE-----\n" + body.strip() + "\n-----END CERTIFICATE-----\n"
    return x509.load_pem_x509_certificate(pem.encode())


def fingerprint(body):
    return hashlib.sha256(base64.b64decode(body)).hexdigest()


def sign_bytes(key_path, data, hash_name):
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    algo = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}[
        hash_name
    ]()
    return key.sign(data, padding.PKCS1v15(), algo)


def verify_bytes(cert_b64_bodies, sig_alg, data, signature):
    """True when any of the certificates verifies the signature over data with sig_alg."""
    kind, hash_cls = VERIFY_SIG_ALGS[sig_alg]
    for body in cert_b64_bodies:
        try:
            pub = cert_from_body(body).public_key()
            if kind == "rsa" and isinstance(pub, rsa.RSAPublicKey):
                pub.verify(signature, data, padding.PKCS1v15(), hash_cls())
                return True
            if kind == "ec" and isinstance(pub, ec.EllipticCurvePublicKey):
                pub.verify(signature, data, ec.ECDSA(hash_cls()))
                return True
        except Exception:  # noqa: BLE001 - any failure means "not this certificate"
            continue
    return False


# --------------------------------------------------------------------------- bindings


def parse_raw_query(query):
    """[(raw_key, raw_value)] of a query string, in order, without decoding."""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append((k, v))
    return pairs


def unq(raw):
    return urllib.parse.unquote_plus(raw)


def inflate(b64):
    data = base64.b64decode(b64, validate=False)
    d = zlib.decompressobj(-15)
    out = d.decompress(data, MAX_INFLATED + 1)
    if len(out) > MAX_INFLATED:
        raise BadRequest("inflated message too large")
    return out.decode("utf-8")


def redirect_url(location, param, xml, relay_state, key_path, sign_alg):
    """A signed HTTP-Redirect binding URL (SAML Bindings 3.4.4.1)."""
    compressed = zlib.compress(xml.encode("utf-8"))[2:-4]
    parts = [f"{param}=" + urllib.parse.quote(base64.b64encode(compressed).decode(), safe="")]
    if relay_state:
        parts.append("RelayState=" + urllib.parse.quote(relay_state, safe=""))
    uri, hash_name = SIGN_ALGS[sign_alg]
    parts.append("SigAlg=" + urllib.parse.quote(uri, safe=""))
    signed = "&".join(parts).encode("ascii")
    sig = base64.b64encode(sign_bytes(key_path, signed, hash_name)).decode()
    parts.append("Signature=" + urllib.parse.quote(sig, safe=""))
    glue = "&" if "?" in location else "?"
    return location + glue + "&".join(parts)


def post_form(action, fields, auto_submit=True, title="Continue"):
    inputs = "\n".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields if v
    )
    onload = ' onload="document.forms[0].submit()"' if auto_submit else ""
    button = (
        f'<noscript><button type="submit">{title}</button></noscript>'
        if auto_submit
        else f'<button type="submit" id="continue">{title}</button>'
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Test IdP</title></head>'
        f"<body{onload}><form method=\"post\" action=\"{html.escape(action)}\">{inputs}{button}</form></body></html>"
    )


def page(title, body, status=200):
    doc = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Test IdP: '
        f"{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return status, doc


def schema_error(xml):
    """None when the message is valid against the SAML 2.0 schemas, else the reason."""
    try:
        validate_schema(xml)
        return None
    except Exception as e:  # noqa: BLE001 - xmlschema raises several kinds
        return f"{type(e).__name__}: {e}"[:500]


def signature_algorithm_of(xml):
    """The SignatureMethod URI of the first enveloped signature in an XML message, or None."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for child in root:
        if child.tag == f"{{{NS_DS}}}Signature":
            sm = child.find(f"{{{NS_DS}}}SignedInfo/{{{NS_DS}}}SignatureMethod")
            return sm.get("Algorithm") if sm is not None else None
    return None


# --------------------------------------------------------------------------- metadata of an SP


def sp_summary(xml):
    """What this IdP needs from an SP's metadata, parsed with ElementTree (after pysaml2 accepted it)."""
    import xml.etree.ElementTree as ET

    if "<!DOCTYPE" in xml:
        raise BadRequest("SP metadata carries a DOCTYPE")
    root = ET.fromstring(xml)
    if root.tag != f"{{{NS_MD}}}EntityDescriptor":
        raise BadRequest("SP metadata is not an EntityDescriptor")
    spsso = root.find(f"{{{NS_MD}}}SPSSODescriptor")
    if spsso is None:
        raise BadRequest("SP metadata has no SPSSODescriptor")
    certs = {"signing": [], "encryption": []}
    for kd in spsso.findall(f"{{{NS_MD}}}KeyDescriptor"):
        use = kd.get("use")
        for c in kd.iter(f"{{{NS_DS}}}X509Certificate"):
            body = "".join((c.text or "").split())
            for u in ([use] if use else ["signing", "encryption"]):
                if body not in certs[u]:
                    certs[u].append(body)

    def services(tag):
        out = []
        for el in spsso.findall(f"{{{NS_MD}}}{tag}"):
            out.append(
                {
                    "binding": el.get("Binding"),
                    "location": el.get("Location"),
                    "response_location": el.get("ResponseLocation"),
                    "index": el.get("index"),
                    "is_default": el.get("isDefault"),
                }
            )
        return out

    return {
        "entity_id": root.get("entityID"),
        "authn_requests_signed": spsso.get("AuthnRequestsSigned") in ("true", "1"),
        "want_assertions_signed": spsso.get("WantAssertionsSigned") in ("true", "1"),
        "signing_certs": certs["signing"],
        "encryption_certs": certs["encryption"],
        "acs": services("AssertionConsumerService"),
        "slo": services("SingleLogoutService"),
        "name_id_formats": [(e.text or "").strip() for e in spsso.findall(f"{{{NS_MD}}}NameIDFormat")],
    }


def fetch(url):
    req = urllib.request.Request(url, headers={"Accept": "application/samlmetadata+xml, application/xml"})
    with urllib.request.urlopen(req, timeout=15) as r:  # noqa: S310 - loopback test infrastructure
        return r.read().decode("utf-8")


def deep_merge(base, patch):
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "users":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# --------------------------------------------------------------------------- the IdP


class Idp:
    def __init__(self, config, base_url):
        self.lock = threading.RLock()
        self.tmp = tempfile.mkdtemp(prefix="latchkey-test-idp.")
        self.cfg = deep_merge(DEFAULT_CONFIG, config)
        self.base = base_url.rstrip("/")
        self.entity_id = self.cfg["entity_id"].replace("{base}", self.base)
        # Signing keys in order of creation; `active` signs, `published` go into metadata.
        self.keys = []
        if self.cfg.get("key") and self.cfg.get("cert"):
            self.keys.append(self._key_entry(self.cfg["key"], self.cfg["cert"]))
        else:
            self.keys.append(
                self._key_entry(*make_keypair(self.tmp, "idp-0", "Latchkey test IdP 0", self.cfg["generated_cert_days"]))
            )
        if self.cfg.get("next_key") and self.cfg.get("next_cert"):
            self.keys.append(self._key_entry(self.cfg["next_key"], self.cfg["next_cert"]))
        self.active = 0
        self.published = [0]
        self.sps = {}  # entity_id -> {"xml", "source", "summary", "options"}
        self.pending = {}  # login form key -> request context
        self.sessions = []  # IdP sessions at SPs (for SLO)
        self.sso = {}  # browser SSO cookie -> username
        self.logout_pending = {}  # LogoutRequest ID this IdP sent -> context
        self.log = []
        self.seq = 0
        self.server = None
        for src in self.cfg.get("sp_metadata", []):
            self.add_sp(src, rebuild=False)
        self.rebuild()

    # ----- state

    @staticmethod
    def _key_entry(key_path, cert_path):
        with open(cert_path) as f:
            pem = f.read()
        body = cert_body(pem)
        return {"key": key_path, "cert": cert_path, "body": body, "sha256": fingerprint(body)}

    def key(self):
        return self.keys[self.active]

    def rebuild(self):
        """A fresh pysaml2 Server over the current signing key and SP metadata."""
        k = self.key()
        conf = {
            "entityid": self.entity_id,
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "key_file": k["key"],
            "cert_file": k["cert"],
            "accepted_time_diff": 60,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [
                            (self.base + "/idp/sso/redirect", BINDING_HTTP_REDIRECT),
                            (self.base + "/idp/sso/post", BINDING_HTTP_POST),
                        ],
                        "single_logout_service": [
                            (self.base + "/idp/slo/redirect", BINDING_HTTP_REDIRECT),
                            (self.base + "/idp/slo/post", BINDING_HTTP_POST),
                        ],
                    },
                    "want_authn_requests_signed": False,
                }
            },
            "metadata": {"inline": [sp["xml"] for sp in self.sps.values()]},
        }
        cfg = IdPConfig()
        cfg.load(conf)
        self.server = Server(config=cfg)

    def record(self, entry):
        entry["seq"] = self.seq
        self.seq += 1
        entry["time"] = time.time()
        self.log.append(entry)
        return entry

    def add_sp(self, source, rebuild=True):
        """Loads an SP's metadata from {"url"}, {"file"} or {"xml"}; optional per-SP "options"."""
        if "xml" in source:
            xml = source["xml"]
        elif "file" in source:
            with open(source["file"], encoding="utf-8") as f:
                xml = f.read()
        elif "url" in source:
            xml = fetch(source["url"])
        else:
            raise BadRequest("an SP source needs url, file or xml")
        summary = sp_summary(xml)
        with self.lock:
            old = self.sps.get(summary["entity_id"], {})
            options = source.get("options", old.get("options", {}))
            self.sps[summary["entity_id"]] = {
                "xml": xml,
                "source": {k: v for k, v in source.items() if k in ("url", "file")},
                "summary": summary,
                "options": options,
            }
            if rebuild:
                self.rebuild()
        return summary

    def sp(self, entity_id):
        sp = self.sps.get(entity_id)
        if sp is None:
            raise BadRequest(f"unknown service provider {entity_id!r}")
        return sp

    def options(self, entity_id):
        opts = copy.deepcopy(self.cfg["response"])
        if entity_id in self.sps:
            opts.update(self.sps[entity_id].get("options") or {})
        return opts

    def user(self, name):
        u = self.cfg["users"].get(name)
        if u is None:
            raise BadRequest(f"unknown user {name!r}")
        return u

    # ----- metadata

    def metadata_xml(self):
        md = self.cfg["metadata"]
        valid_until = (
            datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=md.get("valid_days", 7))
        ).strftime("%Y-%m-%dT%H:%M:%SZ")
        key_descriptors = ""
        if md.get("include_signing_cert", True):
            for i in self.published:
                key_descriptors += (
                    f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
                    f"{self.keys[i]['body']}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
                )
        bindings = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}
        slo = "".join(
            f'<md:SingleLogoutService Binding="{bindings[b]}" Location="{self.base}/idp/slo/{b}"/>'
            for b in md.get("slo_bindings", [])
        )
        formats = "".join(f"<md:NameIDFormat>{f}</md:NameIDFormat>" for f in NAMEID_FORMATS.values())
        sso = "".join(
            f'<md:SingleSignOnService Binding="{bindings[b]}" Location="{self.base}/idp/sso/{b}"/>'
            for b in md.get("sso_bindings", ["redirect", "post"])
        )
        want = "true" if md.get("want_authn_requests_signed", True) else "false"
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<md:EntityDescriptor xmlns:md="{NS_MD}" xmlns:ds="{NS_DS}" '
            f'entityID="{html.escape(self.entity_id)}" validUntil="{valid_until}">'
            f'<md:IDPSSODescriptor WantAuthnRequestsSigned="{want}" protocolSupportEnumeration="{PROTOCOL}">'
            f"{key_descriptors}{slo}{formats}{sso}</md:IDPSSODescriptor></md:EntityDescriptor>"
        )

    def rotate(self, stage="switch", only_new=False, days=None):
        """Key rollover: announce (publish next too), switch (sign with next), retire (drop old)."""
        with self.lock:
            if stage in ("announce", "switch") and len(self.keys) <= self.active + 1:
                n = len(self.keys)
                d = days or self.cfg["next_generated_cert_days"]
                self.keys.append(self._key_entry(*make_keypair(self.tmp, f"idp-{n}", f"Latchkey test IdP {n}", d)))
            if stage == "announce":
                self.published = [self.active, self.active + 1]
            elif stage == "switch":
                old = self.active
                self.active += 1
                self.published = [self.active] if only_new else [self.active, old]
            elif stage == "retire":
                self.published = [self.active]
            else:
                raise BadRequest(f"unknown rotation stage {stage!r}")
            self.rebuild()
            return self.key_state()

    def key_state(self):
        return {
            "active": {"sha256": self.key()["sha256"], "cert": self.key()["cert"], "body": self.key()["body"]},
            "published": [{"sha256": self.keys[i]["sha256"], "body": self.keys[i]["body"]} for i in self.published],
            "keys": len(self.keys),
        }

    # ----- single sign-on

    def receive_authn_request(self, binding, saml_request, relay_state, raw_query=None):
        """Parses and checks an AuthnRequest; returns the pending-login context."""
        if binding == "redirect":
            xml = inflate(saml_request)
        else:
            xml = base64.b64decode(saml_request).decode("utf-8")
        if "<!DOCTYPE" in xml:
            raise BadRequest("AuthnRequest carries a DOCTYPE")
        req = samlp.authn_request_from_string(xml)
        if req is None:
            raise BadRequest("not an AuthnRequest")
        issuer = req.issuer.text.strip() if req.issuer is not None and req.issuer.text else None
        entry = {
            "type": "AuthnRequest",
            "schema_error": schema_error(xml),
            "binding": binding,
            "id": req.id,
            "issuer": issuer,
            "destination": req.destination,
            "acs_url": req.assertion_consumer_service_url,
            "acs_index": req.assertion_consumer_service_index,
            "protocol_binding": req.protocol_binding,
            "name_id_policy_format": req.name_id_policy.format if req.name_id_policy is not None else None,
            "force_authn": req.force_authn,
            "is_passive": req.is_passive,
            "relay_state": relay_state,
            "signed": False,
            "signature_valid": None,
            "sig_alg": None,
            "error": None,
        }
        if self.cfg.get("log_messages"):
            entry["xml"] = xml
        with self.lock:
            self.record(entry)
            try:
                sp = self.sp(issuer)
                summary = sp["summary"]
                self._check_request_signature(entry, binding, xml, raw_query, summary, "AuthnRequest")
                required = self.cfg["require_signed_authn_requests"]
                if required == "metadata":
                    required = summary["authn_requests_signed"]
                if required and not entry["signed"]:
                    raise BadRequest("the AuthnRequest is not signed, and this SP's requests must be")
                if entry["signed"] and not entry["signature_valid"]:
                    raise BadRequest("the AuthnRequest signature does not verify")
                expected = f"{self.base}/idp/sso/{binding}"
                if req.destination and req.destination != expected:
                    raise BadRequest(f"AuthnRequest Destination {req.destination!r} is not {expected!r}")
                if req.protocol_binding and req.protocol_binding != BINDING_HTTP_POST:
                    raise BadRequest(f"unsupported ProtocolBinding {req.protocol_binding!r}")
                acs = self._acs(summary, req.assertion_consumer_service_url, req.assertion_consumer_service_index)
            except BadRequest as e:
                entry["error"] = str(e)
                raise
            return {"sp": issuer, "acs": acs, "in_response_to": req.id, "relay_state": relay_state}

    def _check_request_signature(self, entry, binding, xml, raw_query, summary, kind):
        if binding == "redirect":
            pairs = parse_raw_query(raw_query or "")
            raw = dict(pairs)
            if "Signature" not in raw:
                return
            entry["signed"] = True
            sig_alg = unq(raw.get("SigAlg", ""))
            entry["sig_alg"] = sig_alg
            if sig_alg not in VERIFY_SIG_ALGS:
                entry["signature_valid"] = False
                return
            param = "SAMLRequest" if "SAMLRequest" in raw else "SAMLResponse"
            signed = f"{param}={raw[param]}"
            if "RelayState" in raw:
                signed += f"&RelayState={raw['RelayState']}"
            signed += f"&SigAlg={raw['SigAlg']}"
            try:
                sig = base64.b64decode(unq(raw["Signature"]))
            except ValueError:
                entry["signature_valid"] = False
                return
            entry["signature_valid"] = verify_bytes(summary["signing_certs"], sig_alg, signed.encode("ascii"), sig)
        else:
            alg = signature_algorithm_of(xml)
            if alg is None:
                return
            entry["signed"] = True
            entry["sig_alg"] = alg
            if not summary["signing_certs"]:
                # pysaml2 would fall back to the certificate inside the message: trust none.
                entry["signature_valid"] = False
                return
            check = {
                "AuthnRequest": self.server.sec.correctly_signed_authn_request,
                "LogoutRequest": self.server.sec.correctly_signed_logout_request,
                "LogoutResponse": self.server.sec.correctly_signed_logout_response,
            }[kind]
            try:
                entry["signature_valid"] = bool(check(xml, must=True, origdoc=xml))
            except Exception as e:  # noqa: BLE001 - pysaml2 raises many kinds on a bad signature
                entry["signature_valid"] = False
                entry["signature_error"] = f"{type(e).__name__}: {e}"

    @staticmethod
    def _acs(summary, url, index):
        post_acs = [a for a in summary["acs"] if a["binding"] == BINDING_HTTP_POST]
        if url:
            if not any(a["location"] == url for a in post_acs):
                raise BadRequest(f"AssertionConsumerServiceURL {url!r} is not in the SP's metadata")
            return url
        if index is not None:
            for a in post_acs:
                if a["index"] == str(index):
                    return a["location"]
            raise BadRequest(f"AssertionConsumerServiceIndex {index!r} is not in the SP's metadata")
        if not post_acs:
            raise BadRequest("the SP's metadata has no HTTP-POST AssertionConsumerService")
        default = [a for a in post_acs if a["is_default"] in ("true", "1")]
        return (default or post_acs)[0]["location"]

    def pending_login(self, ctx):
        key = secrets.token_urlsafe(16)
        with self.lock:
            self.pending[key] = ctx
        return key

    def name_id_for(self, username, sp_entity, fmt_name):
        u = self.user(username)
        attrs = u.get("attributes", {})
        fmt = NAMEID_FORMATS.get(fmt_name, fmt_name)
        if u.get("name_id"):
            value = u["name_id"]
        elif fmt == NAMEID_FORMATS["emailAddress"]:
            value = attrs.get("email") or username
        elif fmt == NAMEID_FORMATS["persistent"]:
            value = u.get("persistent_id") or hashlib.sha256(f"{sp_entity}!{username}".encode()).hexdigest()[:32]
        elif fmt == NAMEID_FORMATS["transient"]:
            value = "_" + secrets.token_hex(16)
        else:
            value = username
        nid = {"value": value, "format": fmt, "name_qualifier": None, "sp_name_qualifier": None}
        if fmt == NAMEID_FORMATS["persistent"]:
            nid["name_qualifier"] = self.entity_id
            nid["sp_name_qualifier"] = sp_entity
        return nid

    def attributes_for(self, username, opts):
        fmt, names = ATTRIBUTE_PROFILES[opts.get("attribute_profile") or "oid"]
        overrides = opts.get("attribute_names") or {}
        out = []
        for logical, values in self.user(username).get("attributes", {}).items():
            if values is None:
                continue
            if not isinstance(values, list):
                values = [values]
            if logical in overrides:
                name, friendly = overrides[logical], None
            else:
                name, friendly = names.get(logical, (logical, None))
            out.append(
                saml.Attribute(
                    name=name,
                    name_format=fmt,
                    friendly_name=friendly,
                    attribute_value=[saml.AttributeValue(text=str(v)) for v in values],
                )
            )
        return out

    def build_response(self, sp_entity, acs, in_response_to, username):
        """The SAML Response for a signed-in user, signed/encrypted as the options say (XML text)."""
        opts = self.options(sp_entity)
        u = self.user(username)
        fmt = u.get("name_id_format") or opts["name_id_format"]
        nid = self.name_id_for(username, sp_entity, fmt)
        sign_uri, default_digest = SIGN_ALGS[opts["sign_alg"]]
        digest_uri = DIGEST_ALGS[opts.get("digest_alg") or default_digest]
        now = time.time()
        lifetime = int(opts.get("assertion_lifetime", 300))
        issue = instant()
        not_before = instant(time_stamp=int(now) - 30)
        not_after = instant(time_stamp=int(now) + lifetime)
        session_index = "_s" + secrets.token_hex(16)
        issuer = saml.Issuer(text=self.entity_id, format=saml.NAMEID_FORMAT_ENTITY)
        name_id = saml.NameID(
            text=nid["value"],
            format=nid["format"],
            name_qualifier=nid["name_qualifier"],
            sp_name_qualifier=nid["sp_name_qualifier"],
        )
        assertion = saml.Assertion(
            id="_a" + secrets.token_hex(20),
            version="2.0",
            issue_instant=issue,
            issuer=issuer,
            subject=saml.Subject(
                name_id=name_id,
                subject_confirmation=[
                    saml.SubjectConfirmation(
                        method=saml.SCM_BEARER,
                        subject_confirmation_data=saml.SubjectConfirmationData(
                            recipient=acs, not_on_or_after=not_after, in_response_to=in_response_to
                        ),
                    )
                ],
            ),
            conditions=saml.Conditions(
                not_before=not_before,
                not_on_or_after=not_after,
                audience_restriction=[saml.AudienceRestriction(audience=[saml.Audience(text=sp_entity)])],
            ),
            authn_statement=[
                saml.AuthnStatement(
                    authn_instant=issue,
                    session_index=session_index,
                    session_not_on_or_after=instant(time_stamp=int(now) + int(opts.get("session_lifetime", 28800))),
                    authn_context=saml.AuthnContext(
                        authn_context_class_ref=saml.AuthnContextClassRef(
                            text="urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
                        )
                    ),
                )
            ],
        )
        attrs = self.attributes_for(username, opts)
        if attrs:
            assertion.attribute_statement = [saml.AttributeStatement(attribute=attrs)]
        status = success_status_factory()
        if opts.get("status"):
            status = samlp.Status(status_code=samlp.StatusCode(value=opts["status"]))
        response = samlp.Response(
            id="_r" + secrets.token_hex(20),
            version="2.0",
            issue_instant=issue,
            destination=acs,
            in_response_to=in_response_to,
            issuer=saml.Issuer(text=self.entity_id, format=saml.NAMEID_FORMAT_ENTITY),
            status=status,
        )
        sec = self.server.sec
        cert = self.key()["body"]
        if opts.get("sign_response"):
            response.signature = pre_signature_part(response.id, cert, 1, sign_alg=sign_uri, digest_alg=digest_uri)
        if opts.get("sign_assertion"):
            assertion.signature = pre_signature_part(assertion.id, cert, 2, sign_alg=sign_uri, digest_alg=digest_uri)
        response.assertion = assertion
        to_sign = []
        if opts.get("sign_assertion"):
            to_sign.append(("urn:oasis:names:tc:SAML:2.0:assertion:Assertion", assertion.id))
        if opts.get("encrypt_assertion"):
            enc_certs = self.sp(sp_entity)["summary"]["encryption_certs"]
            if not enc_certs:
                raise BadRequest("the SP's metadata has no encryption certificate")
            # The assertion must declare its own namespaces: once decrypted it stands alone.
            assertion_tag = response.assertion._to_element_tree().tag
            response = pre_encrypt_assertion(response)
            xml = response.get_xml_string_with_self_contained_assertion_within_encrypted_assertion(assertion_tag)
            if to_sign:
                xml = signed_instance_factory(xml, sec, to_sign)
            data_uri, session_key = ENCRYPTION_ALGS[opts.get("encryption_alg") or "aes256-gcm"]
            template = pre_encryption_part(
                msg_enc=data_uri,
                key_enc=KEY_TRANSPORTS[opts.get("key_transport") or "rsa-oaep-mgf1p"],
                encrypt_cert=enc_certs[0],
            )
            cert_path = os.path.join(self.tmp, f"sp-enc-{fingerprint(enc_certs[0])[:16]}.crt")
            with open(cert_path, "w") as f:
                f.write("-----BEGIN CERTIFICATE-----\n" + enc_certs[0] + "\n-----END CERTIFICATE-----\n")
            xml = sec.encrypt_assertion(xml, cert_path, template, key_type=session_key)
            if opts.get("sign_response"):
                xml = signed_instance_factory(
                    xml, sec, [("urn:oasis:names:tc:SAML:2.0:protocol:Response", response.id)]
                )
        else:
            if opts.get("sign_response"):
                to_sign.append(("urn:oasis:names:tc:SAML:2.0:protocol:Response", response.id))
            xml = signed_instance_factory(response, sec, to_sign) if to_sign else str(response)
        if not isinstance(xml, str):
            xml = str(xml)
        session = {
            "user": username,
            "sp": sp_entity,
            "name_id": nid,
            "session_index": session_index,
            "assertion_id": assertion.id,
            "response_id": response.id,
            "active": True,
            "created": now,
        }
        return xml, session

    def respond(self, ctx, username):
        """(status, html) auto-posting the Response for ctx to the SP's ACS."""
        with self.lock:
            xml, session = self.build_response(ctx["sp"], ctx["acs"], ctx.get("in_response_to"), username)
            self.sessions.append(session)
            opts = self.options(ctx["sp"])
            b64 = base64.b64encode(xml.encode("utf-8")).decode()
            entry = {
                "type": "Response",
                "sp": ctx["sp"],
                "acs": ctx["acs"],
                "in_response_to": ctx.get("in_response_to"),
                "user": username,
                "name_id": session["name_id"],
                "session_index": session["session_index"],
                "assertion_id": session["assertion_id"],
                "response_id": session["response_id"],
                "relay_state": ctx.get("relay_state"),
                "options": opts,
                "saml_response": b64,
            }
            self.record(entry)
        fields = [("SAMLResponse", b64), ("RelayState", ctx.get("relay_state") or "")]
        return 200, post_form(ctx["acs"], fields, auto_submit=opts.get("auto_submit", True))

    # ----- single logout

    def _slo_endpoint(self, sp_entity, preferred):
        summary = self.sp(sp_entity)["summary"]
        by_binding = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}
        order = [preferred] + [b for b in ("redirect", "post") if b != preferred]
        for b in order:
            for s in summary["slo"]:
                if s["binding"] == by_binding[b]:
                    return b, s
        raise BadRequest(f"the SP {sp_entity!r} advertises no SingleLogoutService")

    def _send(self, binding, location, param, xml_obj, relay_state):
        """(status, body, headers) delivering a SAML message by Redirect (query-signed) or POST."""
        sign_alg = self.cfg["response"]["sign_alg"]
        if binding == "redirect":
            url = redirect_url(location, param, str(xml_obj), relay_state, self.key()["key"], sign_alg)
            return 303, "", {"Location": url}
        sign_uri, default_digest = SIGN_ALGS[sign_alg]
        xml_obj.signature = pre_signature_part(
            xml_obj.id, self.key()["body"], 1, sign_alg=sign_uri, digest_alg=DIGEST_ALGS[default_digest]
        )
        node = {"LogoutRequest": "LogoutRequest", "LogoutResponse": "LogoutResponse"}[type(xml_obj).__name__]
        xml = signed_instance_factory(xml_obj, self.server.sec, [(f"urn:oasis:names:tc:SAML:2.0:protocol:{node}", xml_obj.id)])
        b64 = base64.b64encode(xml.encode("utf-8")).decode()
        return 200, post_form(location, [(param, b64), ("RelayState", relay_state or "")]), {}

    def receive_slo(self, binding, params, raw_query):
        """A LogoutRequest (SP-initiated) or a LogoutResponse (to an IdP-initiated logout)."""
        if "SAMLRequest" in params:
            return self._receive_logout_request(binding, params, raw_query)
        if "SAMLResponse" in params:
            return self._receive_logout_response(binding, params, raw_query)
        raise BadRequest("neither SAMLRequest nor SAMLResponse")

    def _decode(self, binding, value):
        xml = inflate(value) if binding == "redirect" else base64.b64decode(value).decode("utf-8")
        if "<!DOCTYPE" in xml:
            raise BadRequest("message carries a DOCTYPE")
        return xml

    def _receive_logout_request(self, binding, params, raw_query):
        xml = self._decode(binding, params["SAMLRequest"])
        req = samlp.logout_request_from_string(xml)
        if req is None:
            raise BadRequest("not a LogoutRequest")
        issuer = req.issuer.text.strip() if req.issuer is not None and req.issuer.text else None
        entry = {
            "type": "LogoutRequest",
            "schema_error": schema_error(xml),
            "binding": binding,
            "id": req.id,
            "issuer": issuer,
            "destination": req.destination,
            "name_id": req.name_id.text if req.name_id is not None else None,
            "name_id_format": req.name_id.format if req.name_id is not None else None,
            "session_indexes": [s.text for s in (req.session_index or [])],
            "relay_state": params.get("RelayState"),
            "signed": False,
            "signature_valid": None,
            "sig_alg": None,
            "error": None,
            "ended_sessions": 0,
        }
        if self.cfg.get("log_messages"):
            entry["xml"] = xml
        with self.lock:
            self.record(entry)
            try:
                summary = self.sp(issuer)["summary"]
                self._check_request_signature(entry, binding, xml, raw_query, summary, "LogoutRequest")
                if self.cfg["require_signed_logout"] and not entry["signed"]:
                    raise BadRequest("the LogoutRequest is not signed")
                if entry["signed"] and not entry["signature_valid"]:
                    raise BadRequest("the LogoutRequest signature does not verify")
                expected = f"{self.base}/idp/slo/{binding}"
                if req.destination and req.destination != expected:
                    raise BadRequest(f"LogoutRequest Destination {req.destination!r} is not {expected!r}")
                ended = 0
                for s in self.sessions:
                    if (
                        s["active"]
                        and s["sp"] == issuer
                        and s["name_id"]["value"] == entry["name_id"]
                        and (not entry["session_indexes"] or s["session_index"] in entry["session_indexes"])
                    ):
                        s["active"] = False
                        ended += 1
                entry["ended_sessions"] = ended
                out_binding, endpoint = self._slo_endpoint(issuer, self.cfg["slo_response_binding"])
            except BadRequest as e:
                entry["error"] = str(e)
                raise
            location = endpoint["response_location"] or endpoint["location"]
            resp = samlp.LogoutResponse(
                id="_lr" + secrets.token_hex(20),
                version="2.0",
                issue_instant=instant(),
                destination=location,
                in_response_to=req.id,
                issuer=saml.Issuer(text=self.entity_id, format=saml.NAMEID_FORMAT_ENTITY),
                status=success_status_factory(),
            )
            self.record({"type": "LogoutResponseSent", "binding": out_binding, "in_response_to": req.id, "to": location})
            return self._send(out_binding, location, "SAMLResponse", resp, params.get("RelayState"))

    def _receive_logout_response(self, binding, params, raw_query):
        xml = self._decode(binding, params["SAMLResponse"])
        resp = samlp.logout_response_from_string(xml)
        if resp is None:
            raise BadRequest("not a LogoutResponse")
        issuer = resp.issuer.text.strip() if resp.issuer is not None and resp.issuer.text else None
        status = resp.status.status_code.value if resp.status is not None and resp.status.status_code is not None else None
        entry = {
            "type": "LogoutResponse",
            "schema_error": schema_error(xml),
            "binding": binding,
            "id": resp.id,
            "issuer": issuer,
            "destination": resp.destination,
            "in_response_to": resp.in_response_to,
            "status": status,
            "relay_state": params.get("RelayState"),
            "signed": False,
            "signature_valid": None,
            "sig_alg": None,
            "matched": False,
            "error": None,
        }
        if self.cfg.get("log_messages"):
            entry["xml"] = xml
        with self.lock:
            self.record(entry)
            try:
                summary = self.sp(issuer)["summary"]
                self._check_request_signature(entry, binding, xml, raw_query, summary, "LogoutResponse")
                if self.cfg["require_signed_logout"] and not entry["signed"]:
                    raise BadRequest("the LogoutResponse is not signed")
                if entry["signed"] and not entry["signature_valid"]:
                    raise BadRequest("the LogoutResponse signature does not verify")
                entry["matched"] = self.logout_pending.pop(resp.in_response_to, None) is not None
            except BadRequest as e:
                entry["error"] = str(e)
                raise
        ok = status == "urn:oasis:names:tc:SAML:2.0:status:Success" and entry["matched"]
        body = (
            f'<p id="slo-result" data-status="{html.escape(status or "")}">'
            f'{"Signed out" if ok else "Logout failed"}: {html.escape(status or "no status")}</p>'
            f'<p id="slo-issuer">{html.escape(issuer or "")}</p>'
        )
        return page("Single logout", body)

    def start_logout(self, username, sp_entity=None, binding=None, relay_state=None, session_index=None):
        """IdP-initiated logout of the user's latest active session (at sp_entity, with
        session_index, when given)."""
        with self.lock:
            candidates = [
                s
                for s in self.sessions
                if s["active"]
                and s["user"] == username
                and (sp_entity is None or s["sp"] == sp_entity)
                and (session_index is None or s["session_index"] == session_index)
            ]
            if not candidates:
                raise BadRequest(f"no active session for {username!r}")
            s = candidates[-1]
            out_binding, endpoint = self._slo_endpoint(s["sp"], binding or self.cfg["slo_request_binding"])
            nid = s["name_id"]
            req = samlp.LogoutRequest(
                id="_lq" + secrets.token_hex(20),
                version="2.0",
                issue_instant=instant(),
                destination=endpoint["location"],
                issuer=saml.Issuer(text=self.entity_id, format=saml.NAMEID_FORMAT_ENTITY),
                name_id=saml.NameID(
                    text=nid["value"],
                    format=nid["format"],
                    name_qualifier=nid["name_qualifier"],
                    sp_name_qualifier=nid["sp_name_qualifier"],
                ),
                session_index=[samlp.SessionIndex(text=s["session_index"])],
                not_on_or_after=instant(time_stamp=int(time.time()) + 300),
                reason="urn:oasis:names:tc:SAML:2.0:logout:user",
            )
            s["active"] = False
            self.logout_pending[req.id] = {"user": username, "sp": s["sp"]}
            self.record(
                {
                    "type": "LogoutRequestSent",
                    "binding": out_binding,
                    "id": req.id,
                    "to": endpoint["location"],
                    "sp": s["sp"],
                    "user": username,
                    "name_id": nid["value"],
                    "session_index": s["session_index"],
                }
            )
            return self._send(out_binding, endpoint["location"], "SAMLRequest", req, relay_state)

    # ----- control

    def public_config(self):
        cfg = copy.deepcopy(self.cfg)
        cfg["entity_id"] = self.entity_id
        cfg["base_url"] = self.base
        cfg["metadata_url"] = self.base + "/idp/metadata"
        cfg["keys"] = self.key_state()
        cfg["sps"] = {e: {"source": s["source"], "options": s["options"], "summary": s["summary"]} for e, s in self.sps.items()}
        return cfg

    def update_config(self, patch):
        with self.lock:
            users = patch.pop("users", None)
            self.cfg = deep_merge(self.cfg, patch)
            if users is not None:
                for name, u in users.items():
                    if u is None:
                        self.cfg["users"].pop(name, None)
                    else:
                        self.cfg["users"][name] = u
            for name in ("sign_alg",):
                if self.cfg["response"][name] not in SIGN_ALGS:
                    raise BadRequest(f"unknown {name} {self.cfg['response'][name]!r}")
            if self.cfg["response"]["attribute_profile"] not in ATTRIBUTE_PROFILES:
                raise BadRequest("unknown attribute_profile")
            if self.cfg["response"]["encryption_alg"] not in ENCRYPTION_ALGS:
                raise BadRequest("unknown encryption_alg")
            return self.public_config()


# --------------------------------------------------------------------------- HTTP


def login_form(key, error=None, sp=None):
    err = f'<p id="error" role="alert">{html.escape(error)}</p>' if error else ""
    target = f'<p id="sp">Signing in to {html.escape(sp)}</p>' if sp else ""
    return (
        f"{err}{target}<form method=\"post\" action=\"/idp/login\">"
        f'<input type="hidden" name="req" value="{html.escape(key)}">'
        '<label for="username">Username</label> <input id="username" name="username" autocomplete="username">'
        '<label for="password">Password</label> <input id="password" name="password" type="password">'
        '<button type="submit">Sign in</button></form>'
    )


class Handler(BaseHTTPRequestHandler):
    idp = None  # set by main
    server_version = "LatchkeyTestIdP/1"

    def log_message(self, fmt, *args):  # requests go to stderr only when asked
        if os.environ.get("IDP_VERBOSE"):
            sys.stderr.write("idp: " + (fmt % args) + "\n")

    def _send_response(self, status, body, headers=None, content_type="text/html; charset=utf-8"):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        headers = dict(headers or {})
        if data or "Location" not in headers:
            headers.setdefault("Content-Type", content_type)
        headers.setdefault("Cache-Control", "no-store")
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, obj, status=200):
        self._send_response(status, json.dumps(obj, indent=1, default=str), content_type="application/json")

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 4 * 1024 * 1024:
            raise BadRequest("body too large")
        return self.rfile.read(n).decode("utf-8") if n else ""

    def _form(self):
        body = self._body()
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            return json.loads(body or "{}")
        return {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}

    def _cookie(self, name):
        for part in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return v
        return None

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        try:
            route = ROUTES.get((method, url.path))
            if route is None:
                self._send_response(*page("Not found", f"<p>{html.escape(url.path)}</p>", 404))
                return
            route(self, query, url.query)
        except BadRequest as e:
            self._send_response(*page("Request refused", f'<p id="error">{html.escape(str(e))}</p>', 400))
        except Exception as e:  # noqa: BLE001 - the test should see the trace, the IdP should live on
            traceback.print_exc()
            self._send_response(*page("Internal error", f"<pre>{html.escape(repr(e))}</pre>", 500))

    # ----- SSO

    def sso(self, binding, params, raw_query):
        if "SAMLRequest" not in params:
            raise BadRequest("no SAMLRequest")
        ctx = self.idp.receive_authn_request(binding, params["SAMLRequest"], params.get("RelayState"), raw_query)
        self._login_or_respond(ctx)

    def _login_or_respond(self, ctx):
        if self.idp.cfg.get("sso_session"):
            user = self.idp.sso.get(self._cookie("idp_sso") or "")
            if user and user in self.idp.cfg["users"]:
                self._send_response(*self.idp.respond(ctx, user))
                return
        key = self.idp.pending_login(ctx)
        self._send_response(*page("Sign in", login_form(key, sp=ctx["sp"])))

    def route_sso_redirect(self, query, raw):
        self.sso("redirect", query, raw)

    def route_sso_post(self, query, raw):
        self.sso("post", self._form(), None)

    def route_login(self, query, raw):
        form = self._form()
        key = form.get("req", "")
        with self.idp.lock:
            ctx = self.idp.pending.get(key)
        if ctx is None:
            raise BadRequest("unknown or used login request")
        user = self.idp.cfg["users"].get(form.get("username", ""))
        if user is None or not secrets.compare_digest(str(user.get("password", "")), form.get("password", "")):
            self.idp.record({"type": "LoginFailed", "username": form.get("username")})
            self._send_response(*page("Sign in", login_form(key, "Wrong username or password", ctx["sp"]), 200))
            return
        with self.idp.lock:
            self.idp.pending.pop(key, None)
        status, body = self.idp.respond(ctx, form["username"])
        headers = {}
        if self.idp.cfg.get("sso_session"):
            token = secrets.token_urlsafe(16)
            self.idp.sso[token] = form["username"]
            headers["Set-Cookie"] = f"idp_sso={token}; Path=/; HttpOnly; SameSite=Lax"
        self._send_response(status, body, headers)

    def route_initiate(self, query, raw):
        sp_entity = query.get("sp")
        if not sp_entity:
            if len(self.idp.sps) != 1:
                raise BadRequest("sp= is required when several SPs are known")
            sp_entity = next(iter(self.idp.sps))
        summary = self.idp.sp(sp_entity)["summary"]
        acs = self.idp._acs(summary, query.get("acs"), None)
        ctx = {"sp": sp_entity, "acs": acs, "in_response_to": query.get("in_response_to"), "relay_state": query.get("relay_state")}
        self.idp.record({"type": "IdpInitiated", "sp": sp_entity, "user": query.get("user"), "relay_state": ctx["relay_state"]})
        if query.get("user"):
            self.idp.user(query["user"])
            self._send_response(*self.idp.respond(ctx, query["user"]))
        else:
            key = self.idp.pending_login(ctx)
            self._send_response(*page("Sign in", login_form(key, sp=sp_entity)))

    # ----- SLO

    def route_slo_redirect(self, query, raw):
        self._slo_result(self.idp.receive_slo("redirect", query, raw))

    def route_slo_post(self, query, raw):
        self._slo_result(self.idp.receive_slo("post", self._form(), None))

    def _slo_result(self, result):
        if len(result) == 2:
            self._send_response(*result)
            return
        status, body, headers = result
        if self.idp.cfg.get("sso_session"):
            token = self._cookie("idp_sso")
            if token:
                self.idp.sso.pop(token, None)
            headers["Set-Cookie"] = "idp_sso=; Path=/; Max-Age=0"
        self._send_response(status, body, headers)

    def route_logout_user(self, query, raw):
        if not query.get("user"):
            raise BadRequest("user= is required")
        status, body, headers = self.idp.start_logout(
            query["user"], query.get("sp"), query.get("binding"), query.get("relay_state"), query.get("session_index")
        )
        self._send_response(status, body, headers)

    def route_metadata(self, query, raw):
        self._send_response(200, self.idp.metadata_xml(), content_type="application/samlmetadata+xml")

    # ----- control

    def route_get_config(self, query, raw):
        self._json(self.idp.public_config())

    def route_post_config(self, query, raw):
        self._json(self.idp.update_config(self._form()))

    def route_get_sp(self, query, raw):
        self._json({e: s["summary"] | {"options": s["options"], "source": s["source"]} for e, s in self.idp.sps.items()})

    def route_post_sp(self, query, raw):
        self._json(self.idp.add_sp(self._form()))

    def route_rotate(self, query, raw):
        body = self._form() if self.headers.get("Content-Length") not in (None, "0") else {}
        self._json(self.idp.rotate(body.get("stage", "switch"), bool(body.get("only_new")), body.get("cert_days")))

    def route_log(self, query, raw):
        with self.idp.lock:
            entries = list(self.idp.log)
        since = int(query.get("since", 0))
        kind = query.get("type")
        self._json([e for e in entries if e["seq"] >= since and (not kind or e["type"] == kind)])

    def route_log_clear(self, query, raw):
        with self.idp.lock:
            self.idp.log.clear()
            n = self.idp.seq
        self._json({"next_seq": n})

    def route_sessions(self, query, raw):
        with self.idp.lock:
            self._json(list(self.idp.sessions))

    def route_shutdown(self, query, raw):
        self._json({"ok": True})
        threading.Thread(target=self.server.shutdown, daemon=True).start()


ROUTES = {
    ("GET", "/idp/sso/redirect"): Handler.route_sso_redirect,
    ("POST", "/idp/sso/post"): Handler.route_sso_post,
    ("POST", "/idp/login"): Handler.route_login,
    ("GET", "/idp/initiate"): Handler.route_initiate,
    ("GET", "/idp/slo/redirect"): Handler.route_slo_redirect,
    ("POST", "/idp/slo/post"): Handler.route_slo_post,
    ("GET", "/idp/logout-user"): Handler.route_logout_user,
    ("GET", "/idp/metadata"): Handler.route_metadata,
    ("GET", "/control/config"): Handler.route_get_config,
    ("POST", "/control/config"): Handler.route_post_config,
    ("GET", "/control/sp"): Handler.route_get_sp,
    ("POST", "/control/sp"): Handler.route_post_sp,
    ("POST", "/control/rotate-key"): Handler.route_rotate,
    ("GET", "/control/log"): Handler.route_log,
    ("POST", "/control/log/clear"): Handler.route_log_clear,
    ("GET", "/control/sessions"): Handler.route_sessions,
    ("POST", "/control/shutdown"): Handler.route_shutdown,
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="JSON configuration file (see README.md)")
    ap.add_argument("--port", type=int, help="overrides the config's port")
    args = ap.parse_args(argv)
    config = {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            config = json.load(f)
    if args.port is not None:
        config["port"] = args.port
    host = config.get("host", "127.0.0.1")
    httpd = ThreadingHTTPServer((host, int(config.get("port", 0))), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    base = config.get("base_url") or f"http://{host}:{port}"
    Handler.idp = Idp(config, base)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    print(f"READY {base}", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        shutil.rmtree(Handler.idp.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
